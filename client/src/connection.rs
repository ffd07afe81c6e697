//! The client's socket thread: one DEALER socket multiplexing every call by id.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use switchboard_protocol::client::parse_reply;
use switchboard_protocol::socket::{recv_frames, send_frames};
use switchboard_protocol::wake::WakeReceiver;
use switchboard_protocol::Frame;
use tracing::{debug, warn};

use crate::error::CallError;

/// Where a call's outcome is delivered: the raw reply body, or why there is none.
pub type ReplySender = Sender<Result<Frame, CallError>>;

/// What caller threads ask of the socket thread.
pub enum Command {
    /// Send a request and deliver its reply to `reply`.
    Call {
        /// The call id in the header.
        id: u64,
        /// The request frames, ready to send.
        frames: Vec<Frame>,
        /// Where the outcome goes.
        reply: ReplySender,
        /// After this the caller has given up; the entry may be forgotten.
        forget_after: Instant,
    },
    /// The caller stopped waiting for this call.
    Cancel(u64),
}

/// How often forgotten calls are swept even when nothing else happens.
const SWEEP: Duration = Duration::from_millis(500);

/// Runs the socket thread until every client handle is dropped.
pub fn run(socket: zmq::Socket, commands: Receiver<Command>, wake: WakeReceiver) {
    let mut pending: HashMap<u64, (ReplySender, Instant)> = HashMap::new();
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        let wait = next_sweep.saturating_duration_since(Instant::now());
        let mut items = [socket.as_poll_item(zmq::POLLIN), wake.poll_item()];
        if let Err(e) = zmq::poll(&mut items, wait.as_millis() as i64 + 1) {
            if e != zmq::Error::EINTR {
                warn!(error = %e, "client poll failed; closing");
                return;
            }
        }
        if items[1].is_readable() {
            wake.drain();
        }
        // Commands first, then replies: a reply never arrives before its call is known.
        loop {
            match commands.try_recv() {
                Ok(Command::Call {
                    id,
                    frames,
                    reply,
                    forget_after,
                }) => match send_frames(&socket, frames, zmq::DONTWAIT) {
                    Ok(()) => {
                        pending.insert(id, (reply, forget_after));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(CallError::Transport(e.to_string())));
                    }
                },
                Ok(Command::Cancel(id)) => {
                    pending.remove(&id);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if items[0].is_readable() {
            loop {
                let frames = match recv_frames(&socket, zmq::DONTWAIT) {
                    Ok(frames) => frames,
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => break,
                    Err(e) => {
                        warn!(error = %e, "client receive failed; closing");
                        return;
                    }
                };
                match parse_reply(frames) {
                    Ok(reply) => match pending.remove(&reply.header.id) {
                        Some((caller, _)) => {
                            let _ = caller.send(Ok(reply.body));
                        }
                        None => debug!(
                            call_id = reply.header.id,
                            "reply for a call nobody waits for"
                        ),
                    },
                    Err(error) => warn!(%error, "dropping malformed reply"),
                }
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            pending.retain(|_, (_, forget_after)| *forget_after > now);
            next_sweep = now + SWEEP;
        }
    }
}
