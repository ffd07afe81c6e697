//! Where a reply to a client goes: the routing envelope and the header frame to echo.
//!
//! The broker holds one of these for every call it has accepted, possibly 100 000 of
//! them behind busy workers, so it is packed into one small buffer instead of a vector
//! of ZeroMQ messages (64 bytes each, plus a heap vector for the envelope). The usual
//! case, a five-byte ROUTER identity and a small header, fits inline with no allocation.

use std::ops::Deref;
use switchboard_protocol::limits::MAX_PIPELINED_REPLIES;

use switchboard_protocol::client::{push_reply_head, ReturnAddress};
use switchboard_protocol::Frame;

/// A frontend message as the broker holds it: answered to a [`ReplyRoute`].
pub(crate) type Incoming = switchboard_protocol::client::Incoming<ReplyRoute>;
/// One call from a client, answered to a [`ReplyRoute`].
pub(crate) type Request = switchboard_protocol::client::Request<ReplyRoute>;
/// A malformed frontend message, answered to a [`ReplyRoute`].
pub(crate) type Rejected = switchboard_protocol::client::Rejected<ReplyRoute>;
/// A `system.batch`, answered to a [`ReplyRoute`].
pub(crate) type BatchRequest = switchboard_protocol::client::BatchRequest<ReplyRoute>;

/// Bytes stored without a heap allocation.
const INLINE: usize = 38;
/// Most envelope frames kept (the count shares its byte with the grouping flag).
const MAX_PACKED_FRAMES: usize = 0x7f;
/// Flag bit in the first byte: the caller accepts several replies in one message.
const GROUPED: u8 = 0x80;
/// A group of replies is closed once its bodies reach this many bytes.
const GROUP_BYTES: usize = 1024 * 1024;

/// The envelope frames and the echoed header frame of one call, packed.
///
/// Layout: one byte with the envelope frame count (low 7 bits) and whether the
/// caller accepts grouped replies (high bit); each envelope frame as a LEB128
/// length and its bytes; then the header's bytes to the end.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ReplyRoute(Packed);

#[derive(Clone, PartialEq, Eq)]
enum Packed {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl ReplyRoute {
    /// Packs routing frames (at most 127 of them; frames or byte slices) and the
    /// header frame to echo.
    pub(crate) fn new<F: Deref<Target = [u8]>>(envelope: &[F], header: &[u8]) -> ReplyRoute {
        let frames = envelope.len().min(MAX_PACKED_FRAMES);
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

    /// Marks the caller as accepting several replies in one message (it sent several
    /// calls in one message, so it is a `DEALER`, not a `REQ`).
    pub(crate) fn accept_grouped_replies(&mut self) {
        let first = match &mut self.0 {
            Packed::Inline { bytes, .. } => &mut bytes[0],
            Packed::Heap(bytes) => &mut bytes[0],
        };
        *first |= GROUPED;
    }

    /// Whether the reply may travel in one message with other replies to the same caller.
    pub(crate) fn accepts_grouped_replies(&self) -> bool {
        self.bytes().first().is_some_and(|&b| b & GROUPED != 0)
    }

    /// Whether there are no routing frames: nobody to send a reply to.
    pub(crate) fn is_unroutable(&self) -> bool {
        self.bytes().first().is_none_or(|&n| n & !GROUPED == 0)
    }

    /// The caller's envelope, without the grouping flag and the header: equal for every
    /// call of one caller, whether it pipelined them or not.
    pub(crate) fn caller(&self) -> (u8, &[u8]) {
        let bytes = self.bytes();
        match bytes.split_first() {
            Some((&count, rest)) => (count & !GROUPED, &rest[..self.header_at() - 1]),
            None => (0, &[]),
        }
    }

    /// The packed envelope (count byte included) and the header: where they split.
    fn header_at(&self) -> usize {
        let bytes = self.bytes();
        let Some((&count, _)) = bytes.split_first() else {
            return 0;
        };
        let mut at = 1;
        for _ in 0..count & !GROUPED {
            let (length, used) = read_varint(&bytes[at..]);
            at += used + length;
        }
        at
    }

    /// The routing frames, as stored.
    fn envelope_frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let bytes = self.bytes();
        let count = bytes.first().map_or(0, |&b| b & !GROUPED);
        let mut rest = bytes.get(1..).unwrap_or_default();
        (0..count).map(move |_| {
            let (length, used) = read_varint(rest);
            let (frame, after) = rest[used..].split_at(length);
            rest = after;
            frame
        })
    }

    /// The header frame echoed in the reply.
    pub(crate) fn header(&self) -> &[u8] {
        &self.bytes()[self.header_at()..]
    }

    /// The routing frames, in order.
    pub(crate) fn envelope(&self) -> Vec<&[u8]> {
        self.envelope_frames().collect()
    }

    /// Builds the frames of the reply: `[envelope…][""]["SBC1"][header][body]`.
    pub(crate) fn into_frames(self, body: Frame) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(8);
        self.push_head(&mut frames);
        frames.push(Frame::from(self.header()));
        frames.push(body);
        frames
    }

    /// Pushes `[envelope…][""]["SBC1"]`.
    fn push_head(&self, frames: &mut Vec<Frame>) {
        push_reply_head(self.envelope_frames(), frames);
    }
}

/// Replies to one caller gathered into one message:
/// `[envelope…][""]["SBC1"]([header][body])…`, for callers that accept it.
#[derive(Debug)]
pub(crate) struct PipelinedReplies {
    /// The packed envelope of the caller, to recognise its other replies.
    key: Vec<u8>,
    frames: Vec<Frame>,
    replies: usize,
    bytes: usize,
}

impl ReturnAddress for ReplyRoute {
    fn new<F: Deref<Target = [u8]>>(envelope: &[F], header: &[u8]) -> ReplyRoute {
        ReplyRoute::new(envelope, header)
    }

    fn accept_grouped_replies(&mut self) {
        ReplyRoute::accept_grouped_replies(self)
    }
}

impl PipelinedReplies {
    /// A group holding its first reply.
    pub(crate) fn new(route: ReplyRoute, body: Frame) -> PipelinedReplies {
        let at = route.header_at();
        // Room for 32 replies before the vector has to grow.
        let mut frames = Vec::with_capacity(68);
        route.push_head(&mut frames);
        let mut group = PipelinedReplies {
            key: route.bytes()[..at].to_vec(),
            frames,
            replies: 0,
            bytes: 0,
        };
        group.push(route, body);
        group
    }

    /// Whether the reply on `route` goes to this group's caller.
    pub(crate) fn is_for(&self, route: &ReplyRoute) -> bool {
        route.bytes()[..route.header_at()] == self.key[..]
    }

    /// Adds a reply to the same caller (see [`PipelinedReplies::is_for`]).
    pub(crate) fn push(&mut self, route: ReplyRoute, body: Frame) {
        self.bytes += body.len();
        self.replies += 1;
        self.frames.push(Frame::from(route.header()));
        self.frames.push(body);
    }

    /// Whether the group should be sent before another reply is added.
    pub(crate) fn is_full(&self) -> bool {
        self.replies >= MAX_PIPELINED_REPLIES || self.bytes >= GROUP_BYTES
    }

    /// How many replies the group holds.
    pub(crate) fn len(&self) -> usize {
        self.replies
    }

    /// The frames of the message.
    pub(crate) fn into_frames(self) -> Vec<Frame> {
        self.frames
    }
}

impl std::fmt::Debug for ReplyRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyRoute")
            .field("envelope", &self.envelope())
            .field("header", &self.header())
            .field("grouped", &self.accepts_grouped_replies())
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
        let route = ReplyRoute::new::<Frame>(&[], &[0xc0]);
        assert!(route.is_unroutable());
        assert_eq!(route.header(), [0xc0]);
    }

    #[test]
    fn grouped_replies_share_one_head_and_keep_their_headers() {
        let mut first = ReplyRoute::new(&frames(&[b"\x00abcd"]), b"h1");
        assert!(!first.accepts_grouped_replies());
        first.accept_grouped_replies();
        assert!(first.accepts_grouped_replies() && !first.is_unroutable());
        assert_eq!(first.envelope(), [b"\x00abcd"]);
        assert_eq!(first.header(), b"h1");
        let mut second = ReplyRoute::new(&frames(&[b"\x00abcd"]), b"h2");
        second.accept_grouped_replies();
        let mut other = ReplyRoute::new(&frames(&[b"\x00wxyz"]), b"h1");
        other.accept_grouped_replies();
        let mut group = PipelinedReplies::new(first, Frame::from(&b"r1"[..]));
        assert!(group.is_for(&second) && !group.is_for(&other));
        group.push(second, Frame::from(&b"r2"[..]));
        assert_eq!(group.len(), 2);
        let got: Vec<Vec<u8>> = group.into_frames().iter().map(|f| f.to_vec()).collect();
        let want: Vec<&[u8]> = vec![b"\x00abcd", b"", b"SBC1", b"h1", b"r1", b"h2", b"r2"];
        assert_eq!(got, want);
    }

    #[test]
    fn the_route_is_small() {
        assert!(std::mem::size_of::<ReplyRoute>() <= 40);
    }
}
