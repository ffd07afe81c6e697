//! Frames between a worker (`DEALER`) and the broker backend (`ROUTER`), protocol SBW2.
//!
//! Every message starts with one **control frame**: the signature `SBW2`, a command
//! byte, then the command's fixed-layout fields. The broker's ROUTER socket prepends
//! the worker's identity on receipt and consumes it on send.
//!
//! | command | byte | direction | control frame after the command | frames after it |
//! |---|---|---|---|---|
//! | READY | `0x01` | worker → broker | nothing | ready body |
//! | REQUEST | `0x02` | broker → worker | one record per call | one body per call |
//! | REPLY | `0x03` | worker → broker | one 8-byte ticket per call | one reply body per call |
//! | HEARTBEAT | `0x04` | both | nothing | none |
//! | DISCONNECT | `0x05` | both | nothing | none |
//! | CANCEL | `0x06` | broker → worker (that announced `cancel`) | one 8-byte ticket per call | none |
//! | DRAIN | `0x07` | broker → worker (that announced `drain`) | nothing | none |
//! | REQUEST with context | `0x08` | broker → worker (that announced `context`) | one record per call, with attempt and traceparent | one body per call |
//! | REQUEST with caller | `0x09` | broker → worker (that announced `caller`) | one record per call, with attempt, traceparent, caller and flags | one body per call |
//!
//! REQUEST and REPLY carry 1 to [`MAX_COALESCED_CALLS`] calls, so that under load a
//! busy broker and worker pay the per-message cost once for many calls; their bodies
//! stay separate frames and are never copied.

use crate::codec::{decode, encode};
use crate::error::ProtocolError;
use crate::limits::{COALESCE_BYTES, MAX_COALESCED_CALLS};
use crate::message::ReadyInfo;
use std::marker::PhantomData;

use crate::{client::function_name, owned_frame, Frame, WORKER_SIGNATURE};

const READY: u8 = 0x01;
const REQUEST: u8 = 0x02;
const REPLY: u8 = 0x03;
const HEARTBEAT: u8 = 0x04;
const DISCONNECT: u8 = 0x05;
const CANCEL: u8 = 0x06;
const DRAIN: u8 = 0x07;
const REQUEST_CONTEXT: u8 = 0x08;
const REQUEST_CALLER: u8 = 0x09;
const LOAD: u8 = 0x0a;
const CAPACITY: u8 = 0x0b;
/// LOAD flag: the broker is stopping (it takes no new calls; its queue still drains).
pub const LOAD_STOPPING: u8 = 0x01;

/// Flag of a REQUEST-with-caller record: the caller asked for timings, so the worker adds
/// its own run time to the reply body (`"run_us"`).
pub const FLAG_REPORT_RUN_TIME: u8 = 0x01;

/// Bytes of the control frame before the command's fields: signature and command.
const HEAD_LEN: usize = WORKER_SIGNATURE.len() + 1;
/// Bytes of a REQUEST record before the function name: ticket, call id, time left, name length.
const RECORD_FIXED_LEN: usize = 8 + 8 + 4 + 1;

/// The broker's handle for one dispatched call: 8 bytes, big-endian. Workers echo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

fn control_head(command: u8) -> Vec<u8> {
    let mut control = Vec::with_capacity(64);
    control.extend_from_slice(WORKER_SIGNATURE);
    control.push(command);
    control
}

/// Reads `N` bytes at `at`, if there are that many.
fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

/// Calls for one worker (REQUEST) or replies from one worker (REPLY), coalesced into one
/// message: the control frame with one entry per call, and the body frames in the same
/// order.
#[derive(Debug)]
pub struct CallMessage<K> {
    control: Vec<u8>,
    bodies: Vec<Frame>,
    body_bytes: usize,
    kind: PhantomData<K>,
}

/// Which command a [`CallMessage`] is.
pub trait CallMessageKind {
    /// The command byte.
    const COMMAND: u8;
}

/// Marks calls for a worker: a REQUEST.
#[derive(Debug)]
pub enum Requests {}

/// Marks replies from a worker: a REPLY.
#[derive(Debug)]
pub enum Replies {}

impl CallMessageKind for Requests {
    const COMMAND: u8 = REQUEST;
}

impl CallMessageKind for Replies {
    const COMMAND: u8 = REPLY;
}

/// Calls for one worker, as the broker builds them and the worker reads them.
pub type RequestMessage = CallMessage<Requests>;

/// Replies from one worker, as the worker builds them and the broker reads them.
pub type ReplyMessage = CallMessage<Replies>;

impl<K: CallMessageKind> Default for CallMessage<K> {
    fn default() -> Self {
        CallMessage::new()
    }
}

impl<K: CallMessageKind> CallMessage<K> {
    /// An empty message.
    pub fn new() -> CallMessage<K> {
        CallMessage {
            control: control_head(K::COMMAND),
            bodies: Vec::new(),
            body_bytes: 0,
            kind: PhantomData,
        }
    }

    /// How many calls (or replies) the message holds.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// Whether the message holds none.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Whether the message should be sent before another entry is added.
    pub fn is_full(&self) -> bool {
        self.bodies.len() >= MAX_COALESCED_CALLS || self.body_bytes >= COALESCE_BYTES
    }

    fn push_body(&mut self, body: Frame) {
        self.body_bytes += body.len();
        self.bodies.push(body);
    }

    /// A received message whose control frame was checked against its bodies.
    fn received(control: &[u8], entries: usize, bodies: Vec<Frame>) -> Result<Self, ProtocolError> {
        check_count(entries, bodies.len())?;
        Ok(CallMessage {
            control: control.to_vec(),
            body_bytes: bodies.iter().map(|b| b.len()).sum(),
            bodies,
            kind: PhantomData,
        })
    }

    /// The frames of the message: the control frame, then the bodies.
    fn push_frames(self, frames: &mut Vec<Frame>) {
        frames.push(owned_frame(self.control));
        frames.extend(self.bodies);
    }
}

/// One call of a [`RequestMessage`], as a worker reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord<'a> {
    /// Echo this in the REPLY.
    pub ticket: Ticket,
    /// The caller's call id (for logs).
    pub call_id: u64,
    /// Milliseconds left before the caller stops waiting.
    pub time_left_ms: u32,
    /// The function to run.
    pub function: &'a str,
    /// Which dispatch of the call this is (1 for the first; 0: not told, a plain REQUEST).
    pub attempt: u8,
    /// The caller's W3C trace context, or "" (always "" in a plain REQUEST).
    pub traceparent: &'a str,
    /// Who called, as the broker authenticated it (`curve:<Z85 public key>` under CURVE),
    /// or "" (unknown, and always "" unless the REQUEST is one with caller).
    pub caller: &'a str,
    /// [`FLAG_REPORT_RUN_TIME`] and future flags (always 0 unless with caller).
    pub flags: u8,
}

impl CallMessage<Requests> {
    /// An empty REQUEST with context (command `0x08`): its records also carry each call's
    /// attempt and trace context. Only for workers that announced `"context": true`.
    pub fn with_context() -> RequestMessage {
        let mut message = RequestMessage::new();
        message.control[HEAD_LEN - 1] = REQUEST_CONTEXT;
        message
    }

    /// An empty REQUEST with caller (command `0x09`): its records carry the call context,
    /// the caller's identity and flags. Only for workers that announced `"caller": true`.
    pub fn with_caller() -> RequestMessage {
        let mut message = RequestMessage::new();
        message.control[HEAD_LEN - 1] = REQUEST_CALLER;
        message
    }

    /// Whether the records carry the call context (see [`RequestMessage::with_context`]).
    pub fn has_context(&self) -> bool {
        matches!(self.control[HEAD_LEN - 1], REQUEST_CONTEXT | REQUEST_CALLER)
    }

    /// Whether the records also carry the caller and flags ([`RequestMessage::with_caller`]).
    pub fn has_caller(&self) -> bool {
        self.control[HEAD_LEN - 1] == REQUEST_CALLER
    }

    /// Adds one call. `function` must be a valid function name (1 to 255 bytes); the
    /// traceparent, at most 255 bytes, is sent only in a REQUEST with context.
    pub fn push(&mut self, record: CallRecord<'_>, body: Frame) {
        let name = record.function.as_bytes();
        debug_assert!(!name.is_empty() && name.len() <= 255, "checked on receipt");
        self.control
            .extend_from_slice(&record.ticket.0.to_be_bytes());
        self.control
            .extend_from_slice(&record.call_id.to_be_bytes());
        self.control
            .extend_from_slice(&record.time_left_ms.to_be_bytes());
        self.control.push(name.len() as u8);
        self.control.extend_from_slice(name);
        if self.has_context() {
            let trace = record.traceparent.as_bytes();
            let trace = &trace[..trace.len().min(255)];
            self.control.push(record.attempt);
            self.control.push(trace.len() as u8);
            self.control.extend_from_slice(trace);
        }
        if self.has_caller() {
            let caller = record.caller.as_bytes();
            let caller = &caller[..caller.len().min(255)];
            self.control.push(caller.len() as u8);
            self.control.extend_from_slice(caller);
            self.control.push(record.flags);
        }
        self.push_body(body);
    }

    /// The records, in order.
    pub fn records(&self) -> impl Iterator<Item = CallRecord<'_>> + '_ {
        let mut at = HEAD_LEN;
        std::iter::from_fn(move || {
            let (record, next) = read_record(&self.control, at).ok()??;
            at = next;
            Some(record)
        })
    }

    /// Each call's record with its body, in order; the message is left without bodies.
    pub fn calls(&mut self) -> impl Iterator<Item = (CallRecord<'_>, Frame)> + '_ {
        let bodies = std::mem::take(&mut self.bodies);
        self.body_bytes = 0;
        self.records().zip(bodies)
    }

    fn parse(control: &[u8], bodies: Vec<Frame>) -> Result<RequestMessage, ProtocolError> {
        let mut at = HEAD_LEN;
        let mut count = 0;
        while let Some((_, next)) = read_record(control, at)? {
            at = next;
            count += 1;
        }
        CallMessage::received(control, count, bodies)
    }
}

impl CallMessage<Replies> {
    /// A REPLY of one reply.
    pub fn single(ticket: Ticket, body: Frame) -> ReplyMessage {
        let mut message = ReplyMessage::new();
        message.push(ticket, body);
        message
    }

    /// Adds one reply.
    pub fn push(&mut self, ticket: Ticket, body: Frame) {
        self.control.extend_from_slice(&ticket.0.to_be_bytes());
        self.push_body(body);
    }

    /// Each reply's ticket with its body, in order.
    pub fn into_replies(self) -> impl Iterator<Item = (Ticket, Frame)> {
        let tickets: Vec<Ticket> = self.control[HEAD_LEN..]
            .chunks_exact(8)
            .map(|t| Ticket(u64::from_be_bytes(t.try_into().expect("8-byte chunk"))))
            .collect();
        tickets.into_iter().zip(self.bodies)
    }

    fn parse(control: &[u8], bodies: Vec<Frame>) -> Result<ReplyMessage, ProtocolError> {
        let tickets = &control[HEAD_LEN..];
        if tickets.len() % 8 != 0 {
            return Err(ProtocolError::Control("REPLY tickets must be 8 bytes each"));
        }
        CallMessage::received(control, tickets.len() / 8, bodies)
    }
}

/// Reads the record at `at`: `None` at the end of the frame.
fn read_record(
    control: &[u8],
    at: usize,
) -> Result<Option<(CallRecord<'_>, usize)>, ProtocolError> {
    if at == control.len() {
        return Ok(None);
    }
    let truncated = ProtocolError::Control("REQUEST record cut short");
    let ticket = array::<8>(control, at).ok_or(truncated.clone())?;
    let call_id = array::<8>(control, at + 8).ok_or(truncated.clone())?;
    let time_left = array::<4>(control, at + 16).ok_or(truncated.clone())?;
    let name_len = *control.get(at + 20).ok_or(truncated.clone())? as usize;
    let name_at = at + RECORD_FIXED_LEN;
    let name = control
        .get(name_at..name_at + name_len)
        .ok_or(truncated.clone())?;
    let mut record = CallRecord {
        ticket: Ticket(u64::from_be_bytes(ticket)),
        call_id: u64::from_be_bytes(call_id),
        time_left_ms: u32::from_be_bytes(time_left),
        function: function_name(name)?,
        attempt: 0,
        traceparent: "",
        caller: "",
        flags: 0,
    };
    let mut next = name_at + name_len;
    let command = control.get(HEAD_LEN - 1).copied();
    if matches!(command, Some(REQUEST_CONTEXT | REQUEST_CALLER)) {
        record.attempt = *control.get(next).ok_or(truncated.clone())?;
        let trace_len = *control.get(next + 1).ok_or(truncated.clone())? as usize;
        let trace = control
            .get(next + 2..next + 2 + trace_len)
            .ok_or(truncated.clone())?;
        record.traceparent = std::str::from_utf8(trace)
            .map_err(|_| ProtocolError::Control("traceparent is not UTF-8"))?;
        next += 2 + trace_len;
    }
    if command == Some(REQUEST_CALLER) {
        let caller_len = *control.get(next).ok_or(truncated.clone())? as usize;
        let caller = control
            .get(next + 1..next + 1 + caller_len)
            .ok_or(truncated.clone())?;
        record.caller = std::str::from_utf8(caller)
            .map_err(|_| ProtocolError::Control("caller is not UTF-8"))?;
        record.flags = *control.get(next + 1 + caller_len).ok_or(truncated)?;
        next += 2 + caller_len;
    }
    Ok(Some((record, next)))
}

fn check_count(records: usize, bodies: usize) -> Result<(), ProtocolError> {
    if records == 0 || records > MAX_COALESCED_CALLS {
        return Err(ProtocolError::Control("1 to 256 calls per message"));
    }
    if records != bodies {
        return Err(ProtocolError::FrameCount {
            expected: "one body frame per call",
            got: bodies,
        });
    }
    Ok(())
}

/// A message from a worker to the broker.
#[derive(Debug)]
pub enum WorkerMessage {
    /// Register (or re-register) with the functions hosted and the capacity.
    Ready(ReadyInfo),
    /// Outcomes of calls: reply bodies for the clients, forwarded verbatim.
    Reply(ReplyMessage),
    /// I am alive.
    Heartbeat,
    /// I am leaving: send me no new calls (I finish those I hold).
    Disconnect,
    /// My budgets with you are now these (only to a broker that sent LOAD).
    Capacity {
        /// Calls of ordinary functions held at once.
        capacity: u32,
        /// Calls of inline functions held at once, beyond `capacity`.
        inline_capacity: u32,
    },
}

/// A message from the broker to a worker.
#[derive(Debug)]
pub enum BrokerMessage {
    /// Run these calls and REPLY to each with its ticket.
    Request(RequestMessage),
    /// I am alive.
    Heartbeat,
    /// I do not know you (send READY again), or: your DISCONNECT is acknowledged.
    Disconnect,
    /// Nobody waits for these calls any more (their deadline passed): stop them if you
    /// can, and REPLY to each as usual (the reply frees its place).
    Cancel(Vec<Ticket>),
    /// Leave as if stopped (DISCONNECT, finish or abandon your calls, exit): calls you
    /// hold ran long past their deadlines, so your capacity is stuck.
    Drain,
    /// I am alive, and this many calls wait here for functions you host (only to a
    /// worker whose READY said `"credit": true`, in place of HEARTBEAT).
    Load {
        /// Calls queued at the broker that the worker could take.
        backlog: u32,
        /// [`LOAD_STOPPING`] when the broker is stopping.
        flags: u8,
    },
}

/// The frames of a message: a `Vec`, or what is left of one after its first frames were
/// taken (the broker takes the worker's identity first). The rest is collected in place.
type Frames = std::vec::IntoIter<Frame>;

/// Splits off the control frame and reads its command byte.
fn split_control(mut frames: Frames) -> Result<(u8, Frame, Vec<Frame>), ProtocolError> {
    let Some(control) = frames.next() else {
        return Err(ProtocolError::FrameCount {
            expected: "at least 1 (control)",
            got: 0,
        });
    };
    let rest: Vec<Frame> = frames.collect();
    if control.len() < HEAD_LEN || &control[..WORKER_SIGNATURE.len()] != WORKER_SIGNATURE {
        return Err(ProtocolError::Signature { expected: "SBW2" });
    }
    Ok((control[WORKER_SIGNATURE.len()], control, rest))
}

/// Checks a command that has no fields and no frames after the control frame.
fn bare(control: &[u8], rest: &[Frame]) -> Result<(), ProtocolError> {
    fields::<0>(control, rest, "this command has no fields").map(|_| ())
}

/// The fixed `N` bytes of fields of a command with no frames after its control frame.
fn fields<'c, const N: usize>(
    control: &'c [u8],
    rest: &[Frame],
    layout: &'static str,
) -> Result<&'c [u8], ProtocolError> {
    if !rest.is_empty() {
        return Err(ProtocolError::FrameCount {
            expected: "0",
            got: rest.len(),
        });
    }
    if control.len() != HEAD_LEN + N {
        return Err(ProtocolError::Control(layout));
    }
    Ok(&control[HEAD_LEN..])
}

fn bare_frames(command: u8) -> Vec<Frame> {
    vec![Frame::from(&control_head(command)[..])]
}

impl WorkerMessage {
    /// Parses a worker message (identity frame already removed).
    pub fn parse(
        frames: impl IntoIterator<IntoIter = Frames>,
    ) -> Result<WorkerMessage, ProtocolError> {
        let (command, control, rest) = split_control(frames.into_iter())?;
        match command {
            READY => {
                if control.len() != HEAD_LEN || rest.len() != 1 {
                    return Err(ProtocolError::FrameCount {
                        expected: "1 (ready body)",
                        got: rest.len(),
                    });
                }
                let info = decode(&rest[0]).map_err(|source| ProtocolError::Body {
                    frame: "ready",
                    source,
                })?;
                Ok(WorkerMessage::Ready(info))
            }
            REPLY => ReplyMessage::parse(&control, rest).map(WorkerMessage::Reply),
            HEARTBEAT => bare(&control, &rest).map(|()| WorkerMessage::Heartbeat),
            DISCONNECT => bare(&control, &rest).map(|()| WorkerMessage::Disconnect),
            CAPACITY => {
                let fields = fields::<8>(&control, &rest, "CAPACITY carries two 4-byte counts")?;
                Ok(WorkerMessage::Capacity {
                    capacity: u32::from_be_bytes(fields[..4].try_into().expect("4 bytes")),
                    inline_capacity: u32::from_be_bytes(fields[4..].try_into().expect("4 bytes")),
                })
            }
            other => Err(ProtocolError::UnknownCommand(other)),
        }
    }

    /// Encodes the message as the frames a worker's DEALER sends.
    pub fn into_frames(self) -> Vec<Frame> {
        match self {
            WorkerMessage::Ready(info) => {
                let body = encode(&info).expect("ready info always encodes");
                vec![Frame::from(&control_head(READY)[..]), Frame::from(body)]
            }
            WorkerMessage::Reply(message) => {
                let mut frames = Vec::with_capacity(message.len() + 1);
                message.push_frames(&mut frames);
                frames
            }
            WorkerMessage::Heartbeat => bare_frames(HEARTBEAT),
            WorkerMessage::Disconnect => bare_frames(DISCONNECT),
            WorkerMessage::Capacity {
                capacity,
                inline_capacity,
            } => {
                let mut control = control_head(CAPACITY);
                control.extend_from_slice(&capacity.to_be_bytes());
                control.extend_from_slice(&inline_capacity.to_be_bytes());
                vec![owned_frame(control)]
            }
        }
    }
}

impl BrokerMessage {
    /// Parses a message a worker received from the broker.
    pub fn parse(
        frames: impl IntoIterator<IntoIter = Frames>,
    ) -> Result<BrokerMessage, ProtocolError> {
        let (command, control, rest) = split_control(frames.into_iter())?;
        match command {
            REQUEST | REQUEST_CONTEXT | REQUEST_CALLER => {
                RequestMessage::parse(&control, rest).map(BrokerMessage::Request)
            }
            HEARTBEAT => bare(&control, &rest).map(|()| BrokerMessage::Heartbeat),
            DISCONNECT => bare(&control, &rest).map(|()| BrokerMessage::Disconnect),
            DRAIN => bare(&control, &rest).map(|()| BrokerMessage::Drain),
            LOAD => {
                let fields = fields::<5>(
                    &control,
                    &rest,
                    "LOAD carries a 4-byte count and a flags byte",
                )?;
                Ok(BrokerMessage::Load {
                    backlog: u32::from_be_bytes(fields[..4].try_into().expect("4 bytes")),
                    flags: fields[4],
                })
            }
            CANCEL => {
                if !rest.is_empty() {
                    return Err(ProtocolError::FrameCount {
                        expected: "0",
                        got: rest.len(),
                    });
                }
                let tickets = &control[HEAD_LEN..];
                if tickets.len() % 8 != 0 {
                    return Err(ProtocolError::Control(
                        "CANCEL carries whole 8-byte tickets",
                    ));
                }
                check_count(tickets.len() / 8, tickets.len() / 8)?;
                let tickets = tickets
                    .chunks_exact(8)
                    .map(|t| Ticket(u64::from_be_bytes(t.try_into().expect("8 bytes"))))
                    .collect();
                Ok(BrokerMessage::Cancel(tickets))
            }
            other => Err(ProtocolError::UnknownCommand(other)),
        }
    }

    /// Encodes the message, prefixed with the worker's identity for a ROUTER socket.
    pub fn into_frames(self, worker: &[u8]) -> Vec<Frame> {
        let identity = Frame::from(worker);
        match self {
            BrokerMessage::Request(message) => {
                let mut frames = Vec::with_capacity(message.len() + 2);
                frames.push(identity);
                message.push_frames(&mut frames);
                frames
            }
            BrokerMessage::Heartbeat => vec![identity, Frame::from(&control_head(HEARTBEAT)[..])],
            BrokerMessage::Disconnect => {
                vec![identity, Frame::from(&control_head(DISCONNECT)[..])]
            }
            BrokerMessage::Drain => vec![identity, Frame::from(&control_head(DRAIN)[..])],
            BrokerMessage::Load { backlog, flags } => {
                let mut control = control_head(LOAD);
                control.extend_from_slice(&backlog.to_be_bytes());
                control.push(flags);
                vec![identity, owned_frame(control)]
            }
            BrokerMessage::Cancel(tickets) => {
                let mut control = control_head(CANCEL);
                for ticket in tickets {
                    control.extend_from_slice(&ticket.0.to_be_bytes());
                }
                vec![identity, owned_frame(control)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::FunctionInfo;

    fn frames(parts: &[&[u8]]) -> Vec<Frame> {
        parts.iter().map(|p| Frame::from(*p)).collect()
    }

    #[test]
    fn ready_round_trips() {
        let info = ReadyInfo {
            capacity: 4,
            heartbeat_ms: 1000,
            functions: vec![FunctionInfo {
                name: "add".into(),
                doc: "adds".into(),
                signature: "add(a: i64, b: i64) -> i64".into(),
                retry_safe: false,
                inline: true,
                hedge_ms: 0,
            }],
            inline_capacity: 64,
            name: "w1".into(),
            cancel: false,
            drain: false,
            context: false,
            caller: false,
            credit: false,
        };
        let parsed =
            WorkerMessage::parse(WorkerMessage::Ready(info.clone()).into_frames()).unwrap();
        assert!(matches!(parsed, WorkerMessage::Ready(got) if got == info));
    }

    #[test]
    fn load_and_capacity_round_trip_and_refuse_other_shapes() {
        let load = BrokerMessage::Load {
            backlog: 70_000,
            flags: LOAD_STOPPING,
        }
        .into_frames(b"id");
        assert_eq!(&load[1][..], b"SBW2\x0a\x00\x01\x11\x70\x01");
        match BrokerMessage::parse(load.into_iter().skip(1).collect::<Vec<_>>()) {
            Ok(BrokerMessage::Load { backlog, flags }) => {
                assert_eq!((backlog, flags), (70_000, LOAD_STOPPING))
            }
            other => panic!("{other:?}"),
        }
        let capacity = WorkerMessage::Capacity {
            capacity: 7,
            inline_capacity: 2,
        }
        .into_frames();
        assert_eq!(&capacity[0][..], b"SBW2\x0b\0\0\0\x07\0\0\0\x02");
        match WorkerMessage::parse(capacity) {
            Ok(WorkerMessage::Capacity {
                capacity,
                inline_capacity,
            }) => assert_eq!((capacity, inline_capacity), (7, 2)),
            other => panic!("{other:?}"),
        }
        // Cut short, too long, or with a frame after: refused.
        for bad in [&b"SBW2\x0a\0\0\0\x01"[..], &b"SBW2\x0a\0\0\0\x01\0\0"[..]] {
            assert!(BrokerMessage::parse(frames(&[bad])).is_err());
        }
        assert!(BrokerMessage::parse(frames(&[b"SBW2\x0a\0\0\0\x01\0", b"x"])).is_err());
        assert!(WorkerMessage::parse(frames(&[b"SBW2\x0b\0\0\0\x07"])).is_err());
    }

    #[test]
    fn requests_round_trip_in_order_without_the_identity() {
        let mut message = RequestMessage::new();
        let names = ["echo", "math.add", &"n".repeat(255)];
        for (i, name) in names.iter().enumerate() {
            let record = CallRecord {
                ticket: Ticket(77 + i as u64),
                call_id: 5 + i as u64,
                time_left_ms: 10 * i as u32,
                function: name,
                attempt: 0,
                traceparent: "",
                caller: "",
                flags: 0,
            };
            message.push(record, Frame::from(&[i as u8; 3][..]));
        }
        let mut out = BrokerMessage::Request(message).into_frames(b"w1");
        assert_eq!(out.len(), 2 + names.len());
        assert_eq!(&out.remove(0)[..], b"w1");
        assert_eq!(&out[0][..5], b"SBW2\x02");
        let BrokerMessage::Request(mut parsed) = BrokerMessage::parse(out).unwrap() else {
            panic!("not a request");
        };
        let got: Vec<(CallRecord, Vec<u8>)> =
            parsed.calls().map(|(r, body)| (r, body.to_vec())).collect();
        assert_eq!(got.len(), names.len());
        for (i, (record, body)) in got.iter().enumerate() {
            assert_eq!(record.ticket, Ticket(77 + i as u64));
            assert_eq!(record.call_id, 5 + i as u64);
            assert_eq!(record.time_left_ms, 10 * i as u32);
            assert_eq!(record.function, names[i]);
            assert_eq!(body, &vec![i as u8; 3]);
        }
    }

    #[test]
    fn replies_round_trip_in_order() {
        let mut message = ReplyMessage::new();
        for i in 0..3u64 {
            message.push(Ticket(i * 1000), Frame::from(&[i as u8][..]));
        }
        let out = WorkerMessage::Reply(message).into_frames();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].len(), 5 + 3 * 8);
        let WorkerMessage::Reply(parsed) = WorkerMessage::parse(out).unwrap() else {
            panic!("not a reply");
        };
        let got: Vec<(Ticket, Vec<u8>)> = parsed
            .into_replies()
            .map(|(t, b)| (t, b.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Ticket(0), vec![0]),
                (Ticket(1000), vec![1]),
                (Ticket(2000), vec![2])
            ]
        );
    }

    #[test]
    fn a_request_with_context_carries_attempt_and_traceparent() {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut message = RequestMessage::with_context();
        assert!(message.has_context());
        for (attempt, traceparent) in [(1u8, trace), (3, "")] {
            let record = CallRecord {
                ticket: Ticket(u64::from(attempt)),
                call_id: 9,
                time_left_ms: 100,
                function: "f",
                attempt,
                traceparent,
                caller: "",
                flags: 0,
            };
            message.push(record, Frame::from(&b"\x80"[..]));
        }
        let mut out = BrokerMessage::Request(message).into_frames(b"w");
        out.remove(0);
        assert_eq!(out[0][4], 0x08, "the command of a REQUEST with context");
        let BrokerMessage::Request(parsed) = BrokerMessage::parse(out).unwrap() else {
            panic!("a request")
        };
        let records: Vec<(u8, String)> = parsed
            .records()
            .map(|r| (r.attempt, r.traceparent.to_owned()))
            .collect();
        assert_eq!(records, [(1, trace.to_owned()), (3, String::new())]);
        // A record cut inside its context is refused.
        let mut cut = RequestMessage::with_context();
        let record = CallRecord {
            ticket: Ticket(1),
            call_id: 1,
            time_left_ms: 1,
            function: "f",
            attempt: 1,
            traceparent: trace,
            caller: "",
            flags: 0,
        };
        cut.push(record, Frame::new());
        let mut frames = BrokerMessage::Request(cut).into_frames(b"w");
        frames.remove(0);
        let control = frames[0].to_vec();
        frames[0] = Frame::from(&control[..control.len() - 5]);
        assert!(BrokerMessage::parse(frames).is_err());
    }

    #[test]
    fn a_request_with_caller_carries_context_caller_and_flags() {
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut message = RequestMessage::with_caller();
        assert!(message.has_context() && message.has_caller());
        let record = CallRecord {
            ticket: Ticket(1),
            call_id: 9,
            time_left_ms: 100,
            function: "f",
            attempt: 2,
            traceparent: trace,
            caller: "curve:abc",
            flags: FLAG_REPORT_RUN_TIME,
        };
        message.push(record, Frame::from(&b"\x80"[..]));
        let plain = CallRecord {
            caller: "",
            flags: 0,
            traceparent: "",
            ..record
        };
        message.push(plain, Frame::from(&b"\x80"[..]));
        let mut out = BrokerMessage::Request(message).into_frames(b"w");
        out.remove(0);
        assert_eq!(out[0][4], 0x09, "the command of a REQUEST with caller");
        // The first record's tail: attempt, traceparent, caller length, caller, flags.
        let control = out[0].to_vec();
        let tail = [
            &[2u8, trace.len() as u8][..],
            trace.as_bytes(),
            b"\x09curve:abc\x01",
        ]
        .concat();
        let first_end = 5 + 21 + 1 + tail.len();
        assert_eq!(&control[5 + 22..first_end], &tail[..]);
        let copy = |frames: &[Frame]| {
            frames
                .iter()
                .map(|f| Frame::from(&f[..]))
                .collect::<Vec<_>>()
        };
        let BrokerMessage::Request(parsed) = BrokerMessage::parse(copy(&out)).unwrap() else {
            panic!("a request")
        };
        let records: Vec<CallRecord> = parsed.records().collect();
        assert_eq!(records, [record, plain]);
        // Cut inside the caller field or before the flags: refused.
        for cut in [1, 2] {
            let mut frames = copy(&out);
            frames[0] = Frame::from(&control[..control.len() - cut]);
            assert!(BrokerMessage::parse(frames).is_err());
        }
    }

    #[test]
    fn cancel_names_tickets_and_a_malformed_one_is_refused() {
        let message = BrokerMessage::Cancel(vec![Ticket(1), Ticket(0x0102_0304_0506_0708)]);
        let mut out = message.into_frames(b"w");
        assert_eq!(&out.remove(0)[..], b"w");
        assert_eq!(
            &out[0][..],
            b"SBW2\x06\x00\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03\x04\x05\x06\x07\x08"
        );
        match BrokerMessage::parse(out).unwrap() {
            BrokerMessage::Cancel(tickets) => {
                assert_eq!(tickets, [Ticket(1), Ticket(0x0102_0304_0506_0708)])
            }
            other => panic!("{other:?}"),
        }
        let no_ticket = frames(&[b"SBW2\x06"]);
        let cut_ticket = frames(&[b"SBW2\x06\x00\x00\x00"]);
        let frame_after = frames(&[b"SBW2\x06\x00\x00\x00\x00\x00\x00\x00\x01", b"x"]);
        for bad in [no_ticket, cut_ticket, frame_after] {
            assert!(BrokerMessage::parse(bad).is_err());
        }
    }

    #[test]
    fn a_coalesced_message_is_full_at_its_call_or_byte_limit() {
        let mut message = ReplyMessage::new();
        for i in 0..MAX_COALESCED_CALLS as u64 {
            assert!(!message.is_full());
            message.push(Ticket(i), Frame::new());
        }
        assert!(message.is_full());
        let mut big = RequestMessage::new();
        let record = CallRecord {
            ticket: Ticket(1),
            call_id: 1,
            time_left_ms: 1,
            function: "f",
            attempt: 0,
            traceparent: "",
            caller: "",
            flags: 0,
        };
        big.push(record, Frame::from(vec![0u8; COALESCE_BYTES]));
        assert!(big.is_full() && big.len() == 1);
    }

    #[test]
    fn malformed_worker_messages_are_typed_errors() {
        let one_ticket = [&b"SBW2\x03"[..], &[0, 0, 0, 0, 0, 0, 0, 1]].concat();
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![],
            vec![b"SBW2"],
            vec![b"SBW1\x04"],
            vec![b"SBC1\x04"],
            vec![b"SBW2\x09"],
            vec![b"SBW2\x04\x04"],
            vec![b"SBW2\x04", b"extra"],
            vec![b"SBW2\x03"],
            vec![b"SBW2\x03short", b"body"],
            vec![b"SBW2\x03\0\0\0\0\0\0\0\x01", b"body", b"extra body"],
            vec![b"SBW2\x03\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02", b"one body"],
            vec![b"SBW2\x01", b"\xc1"],
            vec![b"SBW2\x01"],
            vec![b"SBW2\x01extra", b"\x80"],
            vec![&one_ticket, b"a", b"b"],
        ];
        for parts in cases {
            assert!(WorkerMessage::parse(frames(&parts)).is_err(), "{parts:?}");
        }
    }

    #[test]
    fn malformed_broker_messages_are_typed_errors() {
        let record = |name_len: u8, name: &[u8]| {
            let mut control = b"SBW2\x02".to_vec();
            control.extend_from_slice(&[0; 20]);
            control.push(name_len);
            control.extend_from_slice(name);
            control
        };
        let good = record(4, b"echo");
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![good.clone()],                            // no body
            vec![good.clone(), vec![], vec![]],            // two bodies, one record
            vec![b"SBW2\x02".to_vec()],                    // no record
            vec![record(5, b"echo"), vec![]],              // name cut short
            vec![record(0, b""), vec![]],                  // empty name
            vec![record(2, b"\xff\xfe"), vec![]],          // not UTF-8
            vec![good[..good.len() - 6].to_vec(), vec![]], // record cut short
            vec![[&good[..], &[1, 2]].concat(), vec![]],   // trailing bytes
            vec![b"SBW2\x03".to_vec(), vec![]],            // a REPLY is not for workers
        ];
        for parts in cases {
            let message: Vec<Frame> = parts.iter().map(|p| Frame::from(&p[..])).collect();
            assert!(BrokerMessage::parse(message).is_err(), "{parts:?}");
        }
        let fine = vec![Frame::from(&good[..]), Frame::new()];
        assert!(BrokerMessage::parse(fine).is_ok());
    }
}
