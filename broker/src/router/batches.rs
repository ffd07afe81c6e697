//! `system.batch` assembly: which slots are refused before routing, and the batches
//! whose replies are still coming in, answered whole when the last slot is filled.

use crate::route::ReplyRoute;
use switchboard_protocol::client::BATCH_FUNCTION;
use switchboard_protocol::codec::{batch_reply_body, encode_error};
use switchboard_protocol::limits::MAX_SYSTEM_CALLS_PER_BATCH;
use switchboard_protocol::{ErrorCode, Frame, RemoteError, RESERVED_PREFIX};

use super::Map;

/// A batch's reply keeps every slot at most this large, whatever its budget says.
const SMALL_REPLY_BYTES: usize = 256;

/// Why a batch slot naming `function` is refused before routing, if it is. `system_calls`
/// counts the batch's `system.*` slots so far: each is answered from the broker's whole
/// state, so one small request may not ask for many.
pub(crate) fn refusal(function: &str, system_calls: &mut usize) -> Option<String> {
    if function == BATCH_FUNCTION {
        Some("batches cannot be nested".to_owned())
    } else if function.starts_with(RESERVED_PREFIX) {
        *system_calls += 1;
        (*system_calls > MAX_SYSTEM_CALLS_PER_BATCH)
            .then(|| format!("at most {MAX_SYSTEM_CALLS_PER_BATCH} system.* calls per batch"))
    } else {
        None
    }
}

/// A batch whose calls are not all answered yet.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    route: ReplyRoute,
    pub(crate) replies: Vec<Option<Frame>>,
    pub(crate) missing: usize,
    /// Bytes of the replies so far: the whole reply stays within the reply limit.
    bytes: usize,
}

/// The batches being assembled, by number.
pub(crate) struct Batches {
    pending: Map<u64, OpenBatch>,
    next: u64,
}

impl Default for Batches {
    fn default() -> Self {
        Batches {
            pending: Map::default(),
            next: 1,
        }
    }
}

impl Batches {
    /// Starts a batch of `slots` calls answered to `route`; returns its number.
    pub(crate) fn open(&mut self, route: ReplyRoute, slots: usize) -> u64 {
        let number = self.next;
        self.next += 1;
        let batch = OpenBatch {
            route,
            replies: (0..slots).map(|_| None).collect(),
            missing: slots,
            bytes: 0,
        };
        self.pending.insert(number, batch);
        number
    }

    /// Puts a reply in slot `index` of batch `number`. A reply that would make the whole
    /// larger than `max_reply_bytes` is replaced by PAYLOAD_TOO_LARGE (small replies, errors
    /// among them, always fit: at most 1 000 × 256 bytes). Returns the batch's reply once
    /// every slot is filled.
    pub(crate) fn fill(
        &mut self,
        number: u64,
        index: usize,
        body: Frame,
        max_reply_bytes: usize,
    ) -> Option<(ReplyRoute, Frame)> {
        let pending = self.pending.get_mut(&number)?;
        let over = pending.bytes + body.len() > max_reply_bytes;
        let body = if over && body.len() > SMALL_REPLY_BYTES {
            let error = RemoteError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "this result would make the batch's reply larger than {max_reply_bytes} bytes"
                ),
            );
            Frame::from(encode_error(&error))
        } else {
            body
        };
        pending.bytes += body.len();
        if pending.replies[index].replace(body).is_none() {
            pending.missing -= 1;
        }
        if pending.missing > 0 {
            return None;
        }
        let pending = self.pending.remove(&number).expect("present");
        let replies: Vec<&[u8]> = pending.replies.iter().flatten().map(|f| &f[..]).collect();
        Some((pending.route, Frame::from(batch_reply_body(&replies))))
    }

    /// The batch with this number, if it is still being assembled (for checks).
    pub(crate) fn get(&self, number: u64) -> Option<&OpenBatch> {
        self.pending.get(&number)
    }

    /// Every batch being assembled (for checks).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &OpenBatch)> {
        self.pending.iter().map(|(n, b)| (*n, b))
    }
}
