//! Frames between a worker (`DEALER`) and the broker backend (`ROUTER`).
//!
//! Every message is `["SBW1"][command][...]`; the broker's ROUTER socket
//! prepends the worker's identity on receipt and consumes it on send.
//!
//! | command | byte | direction | frames after the command |
//! |---|---|---|---|
//! | READY | `0x01` | worker → broker | ready body |
//! | REQUEST | `0x02` | broker → worker | ticket, function, header, body |
//! | REPLY | `0x03` | worker → broker | ticket, reply body |
//! | HEARTBEAT | `0x04` | both | none |
//! | DISCONNECT | `0x05` | both | none |

use crate::codec::{decode, encode};
use crate::error::ProtocolError;
use crate::message::{CallHeader, ReadyInfo};
use crate::{client::function_name, owned_frame, Frame, WORKER_SIGNATURE};

const READY: u8 = 0x01;
const REQUEST: u8 = 0x02;
const REPLY: u8 = 0x03;
const HEARTBEAT: u8 = 0x04;
const DISCONNECT: u8 = 0x05;

/// The broker's handle for one dispatched call: 8 bytes, big-endian. Workers echo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

impl Ticket {
    /// Encodes the ticket frame.
    pub fn to_frame(self) -> Frame {
        Frame::from(&self.0.to_be_bytes()[..])
    }

    /// Decodes a ticket frame.
    pub fn from_frame(frame: &[u8]) -> Result<Ticket, ProtocolError> {
        let bytes: [u8; 8] = frame
            .try_into()
            .map_err(|_| ProtocolError::Ticket(frame.len()))?;
        Ok(Ticket(u64::from_be_bytes(bytes)))
    }
}

/// A message from a worker to the broker.
#[derive(Debug)]
pub enum WorkerMessage {
    /// Register (or re-register) with the functions hosted and the capacity.
    Ready(ReadyInfo),
    /// The outcome of a call: a reply body for the client, forwarded verbatim.
    Reply {
        /// The ticket from the REQUEST this answers.
        ticket: Ticket,
        /// `{"result": ...}` or `{"error": {...}}`.
        body: Frame,
    },
    /// I am alive.
    Heartbeat,
    /// I am leaving: send me no new calls (I finish those I hold).
    Disconnect,
}

/// A message from the broker to a worker.
#[derive(Debug)]
pub enum BrokerMessage {
    /// Run a call and REPLY with the same ticket.
    Request {
        /// Echo this in the REPLY.
        ticket: Ticket,
        /// The function to run.
        function: String,
        /// The call id and the time left before its deadline.
        header: CallHeader,
        /// The request body as the client wrote it.
        body: Frame,
    },
    /// I am alive.
    Heartbeat,
    /// I do not know you (send READY again), or: your DISCONNECT is acknowledged.
    Disconnect,
}

fn command(frames: &[Frame]) -> Result<u8, ProtocolError> {
    if frames.len() < 2 {
        return Err(ProtocolError::FrameCount {
            expected: "at least 2 (signature, command)",
            got: frames.len(),
        });
    }
    if &frames[0][..] != WORKER_SIGNATURE {
        return Err(ProtocolError::Signature { expected: "SBW1" });
    }
    match &frames[1][..] {
        [byte] => Ok(*byte),
        other => Err(ProtocolError::CommandLength(other.len())),
    }
}

fn expect_len(frames: &[Frame], expected: &'static str, len: usize) -> Result<(), ProtocolError> {
    if frames.len() == len {
        Ok(())
    } else {
        Err(ProtocolError::FrameCount {
            expected,
            got: frames.len().saturating_sub(2),
        })
    }
}

fn head(command: u8) -> [Frame; 2] {
    [Frame::from(WORKER_SIGNATURE), Frame::from(&[command][..])]
}

impl WorkerMessage {
    /// Parses a worker message (identity frame already removed).
    pub fn parse(mut frames: Vec<Frame>) -> Result<WorkerMessage, ProtocolError> {
        match command(&frames)? {
            READY => {
                expect_len(&frames, "1 (ready body)", 3)?;
                let info = decode(&frames[2]).map_err(|source| ProtocolError::Body {
                    frame: "ready",
                    source,
                })?;
                Ok(WorkerMessage::Ready(info))
            }
            REPLY => {
                expect_len(&frames, "2 (ticket, body)", 4)?;
                let body = frames.pop().expect("four frames");
                let ticket = Ticket::from_frame(&frames[2])?;
                Ok(WorkerMessage::Reply { ticket, body })
            }
            HEARTBEAT => expect_len(&frames, "0", 2).map(|()| WorkerMessage::Heartbeat),
            DISCONNECT => expect_len(&frames, "0", 2).map(|()| WorkerMessage::Disconnect),
            other => Err(ProtocolError::UnknownCommand(other)),
        }
    }

    /// Encodes the message as the frames a worker's DEALER sends.
    pub fn into_frames(self) -> Vec<Frame> {
        match self {
            WorkerMessage::Ready(info) => {
                let body = encode(&info).expect("ready info always encodes");
                let [sig, cmd] = head(READY);
                vec![sig, cmd, Frame::from(body)]
            }
            WorkerMessage::Reply { ticket, body } => {
                let [sig, cmd] = head(REPLY);
                vec![sig, cmd, ticket.to_frame(), body]
            }
            WorkerMessage::Heartbeat => Vec::from(head(HEARTBEAT)),
            WorkerMessage::Disconnect => Vec::from(head(DISCONNECT)),
        }
    }
}

impl BrokerMessage {
    /// Parses a message a worker received from the broker.
    pub fn parse(mut frames: Vec<Frame>) -> Result<BrokerMessage, ProtocolError> {
        match command(&frames)? {
            REQUEST => {
                expect_len(&frames, "4 (ticket, function, header, body)", 6)?;
                let body = frames.pop().expect("six frames");
                let header =
                    CallHeader::decode(&frames[4]).map_err(|source| ProtocolError::Body {
                        frame: "header",
                        source,
                    })?;
                let function = function_name(&frames[3])?.to_owned();
                let ticket = Ticket::from_frame(&frames[2])?;
                Ok(BrokerMessage::Request {
                    ticket,
                    function,
                    header,
                    body,
                })
            }
            HEARTBEAT => expect_len(&frames, "0", 2).map(|()| BrokerMessage::Heartbeat),
            DISCONNECT => expect_len(&frames, "0", 2).map(|()| BrokerMessage::Disconnect),
            other => Err(ProtocolError::UnknownCommand(other)),
        }
    }

    /// Encodes the message, prefixed with the worker's identity for a ROUTER socket.
    pub fn into_frames(self, worker: &[u8]) -> Vec<Frame> {
        let identity = Frame::from(worker);
        match self {
            BrokerMessage::Request {
                ticket,
                function,
                header,
                body,
            } => {
                let [sig, cmd] = head(REQUEST);
                vec![
                    identity,
                    sig,
                    cmd,
                    ticket.to_frame(),
                    Frame::from(function.as_bytes()),
                    owned_frame(header.encode()),
                    body,
                ]
            }
            BrokerMessage::Heartbeat => {
                let [sig, cmd] = head(HEARTBEAT);
                vec![identity, sig, cmd]
            }
            BrokerMessage::Disconnect => {
                let [sig, cmd] = head(DISCONNECT);
                vec![identity, sig, cmd]
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
            }],
            name: "w1".into(),
        };
        let parsed =
            WorkerMessage::parse(WorkerMessage::Ready(info.clone()).into_frames()).unwrap();
        assert!(matches!(parsed, WorkerMessage::Ready(got) if got == info));
    }

    #[test]
    fn request_round_trips_without_the_identity() {
        let header = CallHeader {
            id: 5,
            timeout_ms: Some(10),
        };
        let mut out = BrokerMessage::Request {
            ticket: Ticket(77),
            function: "echo".into(),
            header: header.clone(),
            body: Frame::from(&b"\x80"[..]),
        }
        .into_frames(b"w1");
        assert_eq!(&out.remove(0)[..], b"w1");
        match BrokerMessage::parse(out).unwrap() {
            BrokerMessage::Request {
                ticket,
                function,
                header: got,
                body,
            } => {
                assert_eq!(
                    (ticket, function.as_str(), got),
                    (Ticket(77), "echo", header)
                );
                assert_eq!(&body[..], b"\x80");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_worker_messages_are_typed_errors() {
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![],
            vec![b"SBW1"],
            vec![b"SBC1", b"\x04"],
            vec![b"SBW1", b"\x09"],
            vec![b"SBW1", b"\x04\x04"],
            vec![b"SBW1", b"\x04", b"extra"],
            vec![b"SBW1", b"\x03", b"short", b"body"],
            vec![b"SBW1", b"\x01", b"\xc1"],
        ];
        for parts in cases {
            assert!(WorkerMessage::parse(frames(&parts)).is_err(), "{parts:?}");
        }
    }
}
