//! The broker's outgoing side: what the router decided becomes messages. Calls for one
//! worker travel together in coalesced REQUEST messages, replies to a pipelining caller
//! in grouped messages; a reply a slow client cannot take yet waits in its backlog. No
//! send ever blocks the loop.

use std::time::Instant;

use switchboard_protocol::client::{notice_body, Notice};
use switchboard_protocol::worker::{
    BrokerMessage, CallRecord, RequestMessage, FLAG_REPORT_RUN_TIME, LOAD_STOPPING,
};
use switchboard_protocol::{owned_frame, Frame};
use switchboard_transport::socket::try_send_frames;
use tracing::debug;

use super::Broker;
use crate::backlog::Held;
use crate::metrics::Socket;
use crate::route::{PipelinedReplies, ReplyRoute};
use crate::router::{Action, Dispatch, WorkerId};

/// Sends a reply message to a client without blocking: `Err(Some(frames))` when its queue
/// in libzmq is full (the client is not reading right now: try again later), `Err(None)`
/// when it can never go (the client is gone).
fn offer(frontend: &zmq::Socket, frames: Vec<Frame>) -> Result<(), Option<Vec<Frame>>> {
    match try_send_frames(frontend, frames) {
        Ok(()) => Ok(()),
        Err((zmq::Error::EAGAIN, frames)) if !frames.is_empty() => Err(Some(frames)),
        Err(_) => Err(None),
    }
}

impl Broker {
    /// Sends everything the router decided, including every call gathered for workers
    /// and every reply gathered for callers.
    pub(super) fn flush_all(&mut self, now: Instant) {
        self.drain_backlogs();
        loop {
            self.flush(now);
            for group in std::mem::take(&mut self.replies) {
                let replies = group.len();
                self.send_to_client(group.into_frames(), replies);
            }
            if self.requests.is_empty() {
                return;
            }
            for (worker, request) in std::mem::take(&mut self.requests) {
                self.send_to_worker(worker, BrokerMessage::Request(request), now);
            }
        }
    }

    /// Sends what the router decided, except calls for workers: those are added to
    /// the worker's pending REQUEST (sent at once when it is full). Never blocks: a
    /// peer that cannot take a message right now loses that message (and a worker
    /// is then declared lost).
    pub(super) fn flush(&mut self, now: Instant) {
        for ended in self.router.take_ended() {
            self.metrics.call_ended(&ended);
        }
        while !self.outbox.is_empty() {
            // Swapped with a spare vector, so both keep their capacity from flush to flush.
            let spare = std::mem::take(&mut self.spare_outbox);
            let mut actions = std::mem::replace(&mut self.outbox, spare);
            for action in actions.drain(..) {
                match action {
                    Action::Reply { route, body } if route.accepts_grouped_replies() => {
                        self.gather_reply(route, body)
                    }
                    Action::Reply { route, body } => {
                        self.send_to_client(route.into_frames(body), 1)
                    }
                    Action::Run { worker, call } => self.gather(worker, call, now),
                    Action::Notice { route } => {
                        let body = notice_body(&Notice::Stopping);
                        // Not an answer to any request: counted as none.
                        self.send_to_client(route.into_frames(owned_frame(body)), 0);
                    }
                    Action::Heartbeat { worker } => {
                        self.send_pending(&worker, now);
                        self.send_to_worker(worker, BrokerMessage::Heartbeat, now);
                    }
                    Action::Load {
                        worker,
                        backlog,
                        stopping,
                    } => {
                        self.send_pending(&worker, now);
                        let flags = if stopping { LOAD_STOPPING } else { 0 };
                        self.send_to_worker(worker, BrokerMessage::Load { backlog, flags }, now);
                    }
                    Action::Disconnect { worker } => {
                        self.send_pending(&worker, now);
                        self.send_to_worker(worker, BrokerMessage::Disconnect, now);
                    }
                    Action::Drain { worker } => {
                        self.send_pending(&worker, now);
                        self.send_to_worker(worker, BrokerMessage::Drain, now);
                    }
                    Action::Cancel { worker, ticket } => {
                        // After the REQUEST that carries the call, if it is still gathered.
                        self.send_pending(&worker, now);
                        self.send_to_worker(worker, BrokerMessage::Cancel(vec![ticket]), now);
                    }
                }
            }
            self.spare_outbox = actions;
        }
    }

    /// Sends a message of `replies` replies to a client; a client gone or not reading
    /// loses it.
    fn send_to_client(&mut self, frames: Vec<Frame>, replies: usize) {
        let size = frames.iter().map(|f| f.len()).sum();
        self.metrics.sent(Socket::Frontend, size);
        // Behind replies already waiting for this client, if any.
        if !self.backlogs.is_empty() && self.backlogs.has(&frames) {
            return self.hold(frames, replies);
        }
        match offer(&self.frontend, frames) {
            Ok(()) => {}
            Err(Some(frames)) => self.hold(frames, replies),
            Err(None) => {
                self.router.replies_dropped(replies);
                debug!("dropping reply: client gone");
            }
        }
    }

    /// Keeps a reply for a client that is not reading, within the byte budgets.
    fn hold(&mut self, frames: Vec<Frame>, replies: usize) {
        if let Held::Dropped(lost) = self.backlogs.hold(frames, replies) {
            self.router.replies_dropped(lost);
            debug!(
                replies = lost,
                "dropping reply: the client's backlog is full"
            );
        }
    }

    /// Offers the replies waiting for slow clients to the socket again.
    pub(super) fn drain_backlogs(&mut self) {
        if self.backlogs.is_empty() {
            return;
        }
        let frontend = &self.frontend;
        let dropped = self.backlogs.drain(|frames| offer(frontend, frames));
        if dropped > 0 {
            self.router.replies_dropped(dropped);
        }
    }

    /// Adds a reply to its caller's pending group; sends that when it is full.
    fn gather_reply(&mut self, route: ReplyRoute, body: Frame) {
        match self.replies.iter().position(|g| g.is_for(&route)) {
            Some(index) => {
                let group = &mut self.replies[index];
                group.push(route, body);
                if group.is_full() {
                    let group = self.replies.swap_remove(index);
                    let replies = group.len();
                    self.send_to_client(group.into_frames(), replies);
                }
            }
            None => self.replies.push(PipelinedReplies::new(route, body)),
        }
    }

    /// Adds a call to its worker's pending REQUEST; sends that when it is full.
    fn gather(&mut self, worker: WorkerId, call: Dispatch, now: Instant) {
        let shape = call.shape;
        let traceparent = if shape.traced() && shape.context() {
            self.router.traceparent(call.ticket)
        } else {
            None
        };
        let caller = if shape.caller() && shape.identified() {
            self.router.caller(call.ticket)
        } else {
            None
        };
        let record = CallRecord {
            ticket: call.ticket,
            call_id: call.call_id,
            time_left_ms: call.time_left_ms,
            function: &call.function,
            attempt: call.attempt,
            traceparent: traceparent.as_deref().unwrap_or_default(),
            caller: caller.as_deref().unwrap_or_default(),
            flags: if shape.timings() {
                FLAG_REPORT_RUN_TIME
            } else {
                0
            },
        };
        let index = match self.requests.iter().position(|(id, _)| *id == worker) {
            Some(index) => index,
            None => {
                let request = if shape.caller() {
                    RequestMessage::with_caller()
                } else if shape.context() {
                    RequestMessage::with_context()
                } else {
                    RequestMessage::new()
                };
                self.requests.push((worker, request));
                self.requests.len() - 1
            }
        };
        let request = &mut self.requests[index].1;
        request.push(record, call.body);
        if request.is_full() {
            let (worker, request) = self.requests.swap_remove(index);
            self.send_to_worker(worker, BrokerMessage::Request(request), now);
        }
    }

    /// Sends the calls gathered for one worker, if any, so that what follows keeps its order.
    fn send_pending(&mut self, worker: &WorkerId, now: Instant) {
        if let Some(index) = self.requests.iter().position(|(id, _)| id == worker) {
            let (worker, request) = self.requests.swap_remove(index);
            self.send_to_worker(worker, BrokerMessage::Request(request), now);
        }
    }

    /// Sends one message to a worker; a worker that cannot take it is declared lost
    /// (which may decide more sends, picked up by the caller's loop). The calls of a
    /// REQUEST it refused, and of any REQUEST still gathered for it, never reached it:
    /// they go back to the router to be dispatched elsewhere.
    fn send_to_worker(&mut self, worker: WorkerId, message: BrokerMessage, now: Instant) {
        let frames = message.into_frames(&worker);
        let size = frames.iter().map(|f| f.len()).sum();
        self.metrics.sent(Socket::Backend, size);
        // ZeroMQ refuses a message on its first frame (unknown peer, or its queue is full),
        // and then hands every frame back: nothing of it left.
        let Err((error, frames)) = try_send_frames(&self.backend, frames) else {
            return;
        };
        debug!(%error, "send to worker failed");
        let mut undelivered = Vec::new();
        let mut frames = frames.into_iter();
        frames.next(); // the identity
        if let Ok(BrokerMessage::Request(mut request)) = BrokerMessage::parse(frames) {
            undelivered.extend(request.calls().map(|(record, body)| (record.ticket, body)));
        }
        if let Some(index) = self.requests.iter().position(|(id, _)| *id == worker) {
            let (_, mut request) = self.requests.swap_remove(index);
            undelivered.extend(request.calls().map(|(record, body)| (record.ticket, body)));
        }
        self.router
            .worker_unreachable(&worker, undelivered, now, &mut self.outbox);
    }
}
