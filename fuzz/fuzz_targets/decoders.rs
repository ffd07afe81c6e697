//! Feeds arbitrary input to every decoder of the protocol crate, as one body and
//! as a multipart message (frames separated by byte 0x1e). Any panic, abort,
//! stack overflow or oversized allocation is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::args::{decode_args, struct_fields, ArgsShape};
use switchboard_protocol::client::{parse_replies, parse_reply, parse_request, Envelope};
use switchboard_protocol::codec::{decode, decode_batch_reply, decode_reply, reply_outcome};
use switchboard_protocol::worker::{BrokerMessage, WorkerMessage};
use switchboard_protocol::{CallHeader, Frame, ReadyInfo, Timestamp, Value};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Keywords {
    name: String,
    count: Option<u32>,
}

fuzz_target!(|data: &[u8]| {
    let _ = CallHeader::decode(data);
    let _ = decode::<Value>(data);
    let _ = decode::<ReadyInfo>(data);
    let _ = decode::<Timestamp>(data);
    let _ = decode_reply::<Value>(data);
    let _ = decode_batch_reply(data);
    let _ = reply_outcome(data);
    let _ = decode_args::<(Value, Value)>(data, ArgsShape::Positional { arity: 2 });
    let fields = struct_fields::<Keywords>();
    let _ = decode_args::<Keywords>(data, ArgsShape::Keyword { fields });
    let frames = || data.split(|b| *b == 0x1e).map(Frame::from).collect::<Vec<_>>();
    let _ = parse_request::<Envelope>(frames());
    let _ = parse_reply(frames());
    let _ = parse_replies(frames());
    if let Ok(WorkerMessage::Reply(replies)) = WorkerMessage::parse(frames()) {
        replies.into_replies().for_each(drop);
    }
    if let Ok(BrokerMessage::Request(mut requests)) = BrokerMessage::parse(frames()) {
        requests.calls().for_each(drop);
    }
});
