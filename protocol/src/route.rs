//! Where a reply to a client goes: the routing envelope and the header frame to echo.
//!
//! The broker holds one of these for every call it has accepted, possibly 100 000 of
//! them behind busy workers, so it is packed into one small buffer instead of a vector
//! of ZeroMQ messages (64 bytes each, plus a heap vector for the envelope). The usual
//! case, a five-byte ROUTER identity and a small header, fits inline with no allocation.

use crate::{Frame, CLIENT_SIGNATURE};

/// Bytes stored without a heap allocation.
const INLINE: usize = 38;

/// The envelope frames and the echoed header frame of one call, packed.
///
/// Layout: each envelope frame as a LEB128 length and its bytes, then the header's
/// bytes to the end. The envelope frame count comes first, as one byte.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplyRoute(Packed);

#[derive(Clone, PartialEq, Eq)]
enum Packed {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl ReplyRoute {
    /// Packs routing frames (at most 255 of them) and the header frame to echo.
    pub fn new(envelope: &[Frame], header: &[u8]) -> ReplyRoute {
        let frames = envelope.len().min(u8::MAX as usize);
        let size = 1
            + envelope[..frames]
                .iter()
                .map(|f| varint_len(f.len()) + f.len())
                .sum::<usize>()
            + header.len();
        let mut inline = [0u8; INLINE];
        let mut heap: Box<[u8]> = if size > INLINE {
            vec![0; size].into_boxed_slice()
        } else {
            Box::default()
        };
        let target: &mut [u8] = if size > INLINE {
            &mut heap
        } else {
            &mut inline[..size]
        };
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            target[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&[frames as u8]);
        for frame in &envelope[..frames] {
            let mut length = [0u8; 10];
            let n = write_varint(frame.len(), &mut length);
            put(&length[..n]);
            put(frame);
        }
        put(header);
        if size <= INLINE {
            ReplyRoute(Packed::Inline {
                len: size as u8,
                bytes: inline,
            })
        } else {
            ReplyRoute(Packed::Heap(heap))
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.0 {
            Packed::Inline { len, bytes } => &bytes[..*len as usize],
            Packed::Heap(bytes) => bytes,
        }
    }

    /// Whether there are no routing frames: nobody to send a reply to.
    pub fn is_unroutable(&self) -> bool {
        self.bytes().first().is_none_or(|&n| n == 0)
    }

    /// The routing frames and the header, unpacked.
    fn split(&self) -> (Vec<&[u8]>, &[u8]) {
        let bytes = self.bytes();
        let Some((&count, mut rest)) = bytes.split_first() else {
            return (Vec::new(), &[]);
        };
        let mut envelope = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (length, used) = read_varint(rest);
            let (frame, after) = rest[used..].split_at(length);
            envelope.push(frame);
            rest = after;
        }
        (envelope, rest)
    }

    /// The header frame echoed in the reply.
    pub fn header(&self) -> &[u8] {
        self.split().1
    }

    /// The routing frames, in order.
    pub fn envelope(&self) -> Vec<&[u8]> {
        self.split().0
    }

    /// Builds the frames of the reply: `[envelope…][""]["SBC1"][header][body]`.
    pub fn into_frames(self, body: Frame) -> Vec<Frame> {
        let (envelope, header) = self.split();
        let mut frames = Vec::with_capacity(envelope.len() + 4);
        frames.extend(envelope.into_iter().map(Frame::from));
        frames.push(Frame::new());
        frames.push(Frame::from(CLIENT_SIGNATURE));
        frames.push(Frame::from(header));
        frames.push(body);
        frames
    }
}

impl std::fmt::Debug for ReplyRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (envelope, header) = self.split();
        f.debug_struct("ReplyRoute")
            .field("envelope", &envelope)
            .field("header", &header)
            .finish()
    }
}

fn varint_len(mut value: usize) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

fn write_varint(mut value: usize, out: &mut [u8; 10]) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        out[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    out[n] = value as u8;
    n + 1
}

/// Reads a LEB128 length written by [`write_varint`]: (value, bytes used).
fn read_varint(bytes: &[u8]) -> (usize, usize) {
    let (mut value, mut shift) = (0usize, 0);
    for (i, &byte) in bytes.iter().enumerate() {
        value |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
        shift += 7;
    }
    (value, bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u8]]) -> Vec<Frame> {
        parts.iter().map(|p| Frame::from(*p)).collect()
    }

    fn reply(route: ReplyRoute) -> Vec<Vec<u8>> {
        route
            .into_frames(Frame::from(&b"body"[..]))
            .iter()
            .map(|f| f.to_vec())
            .collect()
    }

    #[test]
    fn a_usual_route_stays_inline_and_rebuilds_the_reply() {
        let header = [0x82, 0xa2, b'i', b'd', 0x07];
        let route = ReplyRoute::new(&frames(&[b"\x00\x80\x00\x00\x29"]), &header);
        assert!(matches!(route.0, Packed::Inline { .. }));
        assert!(!route.is_unroutable());
        assert_eq!(route.header(), header);
        assert_eq!(
            reply(route),
            [
                b"\x00\x80\x00\x00\x29".to_vec(),
                Vec::new(),
                b"SBC1".to_vec(),
                header.to_vec(),
                b"body".to_vec()
            ]
        );
    }

    #[test]
    fn long_and_many_frames_go_to_the_heap_unchanged() {
        let long = vec![0xab; 300];
        let envelope = frames(&[&long, b"", b"hop"]);
        let header = vec![0xcd; 200];
        let route = ReplyRoute::new(&envelope, &header);
        assert!(matches!(route.0, Packed::Heap(_)));
        let got = reply(route.clone());
        assert_eq!(got[..3], [long, Vec::new(), b"hop".to_vec()]);
        assert_eq!(got[5], header);
        assert_eq!(route.header(), &header[..]);
    }

    #[test]
    fn no_envelope_is_unroutable() {
        let route = ReplyRoute::new(&[], &[0xc0]);
        assert!(route.is_unroutable());
        assert_eq!(route.header(), [0xc0]);
    }

    #[test]
    fn the_route_is_small() {
        assert!(std::mem::size_of::<ReplyRoute>() <= 40);
    }
}
