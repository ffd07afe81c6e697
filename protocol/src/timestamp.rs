//! [`Timestamp`]: a point in time carried as the MessagePack timestamp extension (type -1).
//!
//! Encoded in the smallest of the three standard forms: 4 bytes (whole seconds
//! 0..2^32), 8 bytes (nanoseconds and seconds 0..2^34) or 12 bytes (any
//! `i64` seconds). All three decode. Python's `msgpack` maps it to
//! `msgpack.Timestamp` (or `datetime` with `timestamp=3`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

/// MessagePack extension type of timestamps.
pub const TIMESTAMP_EXT: i8 = -1;

/// Seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    seconds: i64,
    nanos: u32,
}

impl Timestamp {
    /// A timestamp; `None` if `nanos` is not below one billion.
    pub fn new(seconds: i64, nanos: u32) -> Option<Timestamp> {
        (nanos < 1_000_000_000).then_some(Timestamp { seconds, nanos })
    }

    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Whole seconds since the epoch (negative before 1970).
    pub fn seconds(self) -> i64 {
        self.seconds
    }

    /// Nanoseconds past [`Timestamp::seconds`].
    pub fn nanos(self) -> u32 {
        self.nanos
    }

    /// Encodes the extension payload (4, 8 or 12 bytes).
    pub fn to_ext_bytes(self) -> Vec<u8> {
        if self.seconds >= 0 && self.seconds >> 34 == 0 {
            if self.nanos == 0 && self.seconds <= u32::MAX as i64 {
                return (self.seconds as u32).to_be_bytes().to_vec();
            }
            let packed = (u64::from(self.nanos) << 34) | self.seconds as u64;
            return packed.to_be_bytes().to_vec();
        }
        let mut bytes = self.nanos.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.seconds.to_be_bytes());
        bytes
    }

    /// Decodes an extension payload of 4, 8 or 12 bytes.
    pub fn from_ext_bytes(bytes: &[u8]) -> Option<Timestamp> {
        match bytes.len() {
            4 => Timestamp::new(i64::from(u32::from_be_bytes(bytes.try_into().ok()?)), 0),
            8 => {
                let packed = u64::from_be_bytes(bytes.try_into().ok()?);
                Timestamp::new((packed & ((1 << 34) - 1)) as i64, (packed >> 34) as u32)
            }
            12 => {
                let nanos = u32::from_be_bytes(bytes[..4].try_into().ok()?);
                let seconds = i64::from_be_bytes(bytes[4..].try_into().ok()?);
                Timestamp::new(seconds, nanos)
            }
            _ => None,
        }
    }

    /// The same instant as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        if self.seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.seconds as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.seconds.unsigned_abs()) + nanos
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Timestamp {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp {
                seconds: after.as_secs() as i64,
                nanos: after.subsec_nanos(),
            },
            Err(e) => {
                let before = e.duration();
                let (mut seconds, mut nanos) = (-(before.as_secs() as i64), before.subsec_nanos());
                if nanos > 0 {
                    seconds -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Timestamp { seconds, nanos }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(timestamp: Timestamp) -> SystemTime {
        timestamp.to_system_time()
    }
}

/// The serde shape rmp_serde maps to a MessagePack extension.
#[derive(Serialize, Deserialize)]
#[serde(rename = "_ExtStruct")]
struct Ext((i8, ByteBuf));

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Ext((TIMESTAMP_EXT, ByteBuf::from(self.to_ext_bytes()))).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Ext((kind, bytes)) = Ext::deserialize(deserializer)?;
        if kind != TIMESTAMP_EXT {
            return Err(D::Error::custom(format!(
                "expected a timestamp (extension type -1), got extension type {kind}"
            )));
        }
        Timestamp::from_ext_bytes(&bytes)
            .ok_or_else(|| D::Error::custom("malformed timestamp extension"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn encodes_in_the_smallest_standard_form() {
        let whole = Timestamp::new(1_700_000_000, 0).unwrap();
        assert_eq!(
            encode(&whole).unwrap(),
            [0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00]
        );
        let fine = Timestamp::new(1_700_000_000, 500).unwrap();
        assert_eq!(encode(&fine).unwrap()[..2], [0xd7, 0xff]);
        let ancient = Timestamp::new(-1, 0).unwrap();
        assert_eq!(encode(&ancient).unwrap()[..3], [0xc7, 12, 0xff]);
    }

    #[test]
    fn every_form_round_trips() {
        for (s, n) in [
            (0, 0),
            (1_700_000_000, 0),
            (1_700_000_000, 999_999_999),
            (1 << 40, 7),
            (-5, 1),
        ] {
            let t = Timestamp::new(s, n).unwrap();
            assert_eq!(decode::<Timestamp>(&encode(&t).unwrap()).unwrap(), t);
            assert_eq!(Timestamp::from(t.to_system_time()), t);
        }
    }

    #[test]
    fn other_extensions_and_bad_lengths_are_errors() {
        assert!(decode::<Timestamp>(&[0xd4, 0x05, 0x00]).is_err());
        assert!(decode::<Timestamp>(&[0xd5, 0xff, 0x00, 0x00]).is_err());
        assert!(decode::<Timestamp>(&[0xa1, b'x']).is_err());
    }
}
