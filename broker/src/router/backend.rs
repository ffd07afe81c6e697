//! Workers: registration, their replies, their leaving and their loss; the calls they
//! hold are completed, re-queued or failed, and free workers take queued calls.

use std::sync::Arc;
use std::time::Instant;

use switchboard_protocol::codec::{append_timings, encode_error, reply_outcome};
use switchboard_protocol::limits::MAX_CAPACITY;
use switchboard_protocol::worker::{Ticket, WorkerMessage};
use switchboard_protocol::{CallTimings, ErrorCode, Frame, ReadyInfo, RemoteError};
use tracing::{debug, info, warn};

use super::calls::Place;
use super::{health, hex, ready, start, worker_label, Action, Router, Set, WorkerId};
use crate::view::CallEnded;

impl Router {
    /// Handles a parsed message from a worker.
    pub(crate) fn worker_message(
        &mut self,
        worker: WorkerId,
        message: WorkerMessage,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if let WorkerMessage::Ready(info) = message {
            return self.register(worker, info, now, out);
        }
        let Some(state) = self.workers.get_mut(&worker) else {
            if let WorkerMessage::Reply(replies) = &message {
                // Its calls were answered when it was declared lost (or it never had any).
                self.stats.late_replies += replies.len() as u64;
            }
            if !matches!(message, WorkerMessage::Disconnect) {
                debug!(worker = %hex(&worker), "message from unknown worker; asking it to register");
                out.push(Action::Disconnect { worker });
            }
            return;
        };
        let draining = state.draining;
        self.workers
            .heard_from(&worker, now, self.config.heartbeat_liveness);
        match message {
            WorkerMessage::Ready(_) => unreachable!("handled above"),
            WorkerMessage::Heartbeat => {}
            WorkerMessage::Capacity {
                capacity,
                inline_capacity,
            } => {
                let (capacity, inline_capacity) = (
                    capacity.min(MAX_CAPACITY),
                    inline_capacity.min(MAX_CAPACITY),
                );
                if self.workers.set_budgets(&worker, capacity, inline_capacity) {
                    debug!(worker = %self.workers.label(&worker), capacity, inline_capacity, "worker budgets changed");
                    // Room it just made takes calls that wait.
                    self.pull_queued(&worker, now, out);
                } else {
                    debug!(worker = %hex(&worker), "CAPACITY from a worker that did not announce credit; ignored");
                }
            }
            WorkerMessage::Reply(replies) => {
                for (ticket, body) in replies.into_replies() {
                    self.complete(&worker, ticket, body, now, out);
                }
            }
            WorkerMessage::Disconnect if draining => {
                // A second DISCONNECT: "gone now", without the calls it still held.
                let held = self.workers.get(&worker).map_or(0, |w| w.held());
                warn!(worker = %self.workers.label(&worker), abandoned = held, "worker left without finishing its calls");
                self.lose_worker(&worker, now, out);
            }
            WorkerMessage::Disconnect => {
                let state = self.workers.get_mut(&worker).expect("checked above");
                info!(worker = %state.label(&worker), running = state.held(), "worker leaving");
                state.draining = true;
                let idle = state.held() == 0;
                out.push(Action::Disconnect {
                    worker: worker.clone(),
                });
                if idle {
                    self.remove_worker(&worker, now, out);
                }
            }
        }
    }

    /// Under CURVE: whether a message from `worker`, authenticated as `key`, may speak for
    /// it. A registered worker is bound to the key of its READY; another key under the same
    /// routing identity means its connection was replaced by a stranger's, so the worker is
    /// declared lost (its calls re-dispatched or answered WORKER_LOST) and the message is
    /// dropped and counted in `impostor_messages` — unless it is a READY, which registers
    /// the newcomer afresh under its own key.
    pub(crate) fn authenticate_worker(
        &mut self,
        worker: &[u8],
        key: &str,
        is_ready: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(state) = self.workers.get(worker) else {
            return true;
        };
        if state.key.as_deref().is_none_or(|k| k == key) {
            return true;
        }
        warn!(worker = %state.label(worker), registered = state.key.as_deref().unwrap_or_default(), key, "another CURVE key speaks under a registered worker's identity; declaring the worker lost");
        self.stats.impostor_messages += 1;
        self.lose_worker(worker, now, out);
        is_ready
    }

    /// Under CURVE: binds a just-registered worker to the key its READY came with.
    pub(crate) fn bind_worker_key(&mut self, worker: &[u8], key: &str) {
        if let Some(state) = self.workers.get_mut(worker) {
            state.key = Some(key.to_owned());
        }
    }

    /// Counts a malformed message from a worker. The worker keeps its calls.
    pub(crate) fn worker_malformed(&mut self, worker: &[u8], error: &dyn std::error::Error) {
        self.stats.malformed_worker_messages += 1;
        let error = switchboard_protocol::error::with_causes(error);
        warn!(worker = %self.workers.label(worker), %error, "dropping malformed worker message");
    }

    /// A send to this worker failed: it is lost. The calls that were on their way to it
    /// (`undelivered`: ticket and body of each) certainly did not run, so they go back to
    /// the front of their queues, as if never dispatched, for another host to take; the
    /// calls it already held are handled as for any lost worker.
    pub(crate) fn worker_unreachable(
        &mut self,
        worker: &[u8],
        undelivered: Vec<(Ticket, Frame)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !self.workers.contains(worker) {
            return;
        }
        warn!(worker = %self.workers.label(worker), undelivered = undelivered.len(), "worker unreachable; declaring it lost");
        let mut requeued: Vec<Arc<str>> = Vec::new();
        // In reverse, so that pushing each to the front keeps their order.
        for (ticket, body) in undelivered.into_iter().rev() {
            if !self.calls.is_held_by(ticket, worker) {
                continue;
            }
            let call = self.calls.get_mut(ticket).expect("checked above");
            let Place::Running { inline, .. } = call.place else {
                unreachable!("held by the worker")
            };
            if call.parent.is_some() {
                // A hedge that never left: it ends, its call goes on.
                let function = Arc::clone(&call.function);
                self.workers.release(worker, ticket, inline);
                self.functions.stopped(&function, None);
                self.lost_with_hedge(ticket);
                continue;
            }
            call.body = Some(body);
            call.attempts -= 1;
            call.place = Place::Queued;
            let function = Arc::clone(&call.function);
            self.workers.release(worker, ticket, inline);
            self.functions.stopped(&function, None);
            self.functions.enqueue(&function, ticket, true);
            if !requeued.contains(&function) {
                requeued.push(function);
            }
        }
        self.lose_worker(worker, now, out);
        for function in requeued {
            self.offer_to_hosts(&function, now, out);
        }
    }

    /// Registers a worker (or starts a new session for a registered one) from its READY.
    ///
    /// Checked before anything changes (see `ready::check`): a refused READY leaves the
    /// worker unknown, and its next message is answered DISCONNECT.
    pub(super) fn register(
        &mut self,
        worker: WorkerId,
        info: ReadyInfo,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let functions = &self.functions;
        let checked = ready::check(
            &info,
            &worker,
            |name| functions.get(name).is_some_and(|f| !f.hosts.is_empty()),
            functions.len() - functions.unhosted_len(),
        );
        let registration = match checked {
            Ok(registration) => registration,
            Err(why) => {
                warn!(worker = %worker_label(&info.name, &worker), why, "refusing READY");
                self.stats.ready_refused += 1;
                return;
            }
        };
        if registration.corrected {
            self.stats.ready_corrected += 1;
        }
        // A READY from a registered worker starts a new session: it no longer answers
        // the calls it held (a worker sends READY when its broker does not know it).
        let mut orphans: Vec<Ticket> = Vec::new();
        if let Some(previous) = self.workers.remove(&worker) {
            orphans.extend(previous.held.iter().copied());
            for &ticket in &orphans {
                if let Some(call) = self.calls.get(ticket) {
                    self.functions.stopped(&call.function, None);
                }
            }
            let names: Set<&str> = registration
                .functions
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            for old in previous.functions.keys() {
                if !names.contains(&**old) {
                    self.unhost(&worker, old, now, out);
                }
            }
        }
        let who = worker_label(&registration.name, &worker);
        for function in &registration.functions {
            let hosts = self.functions.host(&function.name, &worker);
            let other = hosts
                .iter()
                .filter(|h| **h != worker)
                .find_map(|h| self.workers.get(h)?.announced(&function.name));
            if let Some(other) = other.filter(|other| ready::differ(other, function)) {
                warn!(worker = %who, function = %function.name, signature = %function.signature, other_signature = %other.signature, retry_safe = function.retry_safe, other_retry_safe = other.retry_safe, "hosts of one function announce it differently");
                self.stats.function_conflicts += 1;
            }
        }
        info!(worker = %who, capacity = registration.capacity, inline_capacity = registration.inline_capacity, functions = registration.functions.len(), "worker ready");
        self.workers.insert(
            worker.clone(),
            registration,
            now,
            self.config.heartbeat_liveness,
        );
        if !orphans.is_empty() {
            warn!(worker = %who, calls = orphans.len(), "worker registered again; the calls it held are lost");
        }
        for ticket in orphans {
            self.retry_or_fail(ticket, now, out);
        }
        self.pull_queued(&worker, now, out);
    }

    /// Fills a worker's free slots from the queues of the functions it hosts, oldest call first.
    pub(super) fn pull_queued(&mut self, worker: &WorkerId, now: Instant, out: &mut Vec<Action>) {
        while self.functions.any_waiting() {
            let Some(state) = self.workers.get(worker) else {
                return;
            };
            let calls = &self.calls;
            let found = self.functions.oldest_waiting(
                |name| state.announced(name).is_some() && state.free_for(name) > 0,
                |t| calls.is_queued(t),
            );
            let Some((ticket, name)) = found else { return };
            self.functions.pop_head(&name);
            if self.too_late_to_start(ticket, &name, now, out) {
                continue;
            }
            let Router {
                calls,
                workers,
                functions,
                ..
            } = self;
            let call = calls.get_mut(ticket).expect("queue heads are live calls");
            if let Some(at) = start(workers, functions, ticket, call, worker.clone(), now, out) {
                calls.watch(ticket, at);
            }
        }
    }

    /// Lets every host of `function` take queued calls.
    pub(super) fn offer_to_hosts(&mut self, function: &str, now: Instant, out: &mut Vec<Action>) {
        let Some(entry) = self.functions.get(function) else {
            return;
        };
        for host in entry.hosts.clone() {
            self.pull_queued(&host, now, out);
        }
    }

    /// Forwards a worker's reply to the call it answers.
    pub(super) fn complete(
        &mut self,
        worker: &WorkerId,
        ticket: Ticket,
        body: Frame,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !self.calls.is_held_by(ticket, worker) {
            self.stats.late_replies += 1;
            warn!(worker = %self.workers.label(worker), ticket = ticket.0, "dropping reply for a call this worker does not hold");
            return;
        }
        let call = self.calls.remove(ticket).expect("checked above");
        let Place::Running { inline, since, .. } = call.place else {
            unreachable!("held by the worker")
        };
        // Only calls that ran to their end measure the run time: a cancelled one stopped early.
        let took = call
            .origin
            .is_some()
            .then(|| now.saturating_duration_since(since));
        self.functions.stopped(&call.function, took);
        let code = reply_outcome(&body);
        // FUNCTION_ERROR counts against the host; other codes are the caller's doing.
        let failed = match code {
            None => Some(false),
            Some(ErrorCode::FunctionError) => Some(true),
            Some(_) => None,
        };
        let (leaving, rate) = self
            .workers
            .answered(worker, ticket, inline, &call.function, failed);
        if let Some(rate) = rate {
            self.judge(worker, &call.function, rate, now);
        }
        if call.hung_at.is_some_and(|at| at <= now) {
            self.unstuck(worker);
        }
        let oversized = body.len() > self.config.max_reply_bytes;
        let body = if oversized {
            warn!(worker = %self.workers.label(worker), bytes = body.len(), max = self.config.max_reply_bytes, "reply over the limit; the caller gets PAYLOAD_TOO_LARGE");
            let message = format!(
                "the result of '{}' is {} bytes; the limit is {}",
                call.function,
                body.len(),
                self.config.max_reply_bytes
            );
            Frame::from(encode_error(&RemoteError::new(
                ErrorCode::PayloadTooLarge,
                message,
            )))
        } else {
            body
        };
        // A hedged call and its hedge: the first answer takes the caller, the other copy
        // is released.
        let (origin, received, timings) = match (call.origin, call.parent) {
            (Some(origin), _) => {
                if let Some(hedge) = call.hedge {
                    self.drop_hedge(hedge, now, out);
                }
                (Some(origin), call.received, call.timings)
            }
            (None, Some(parent)) => match self.hedge_won(parent, now, out) {
                Some((origin, received, timings)) => (Some(origin), received, timings),
                None => (None, call.received, false),
            },
            (None, None) => (None, call.received, false),
        };
        let body = if timings && origin.is_some() {
            let timings = CallTimings {
                queued_us: micros(since.saturating_duration_since(received)),
                running_us: micros(now.saturating_duration_since(since)),
                attempts: call.attempts,
                worker: self
                    .workers
                    .get(worker)
                    .map(|w| w.name.clone())
                    .unwrap_or_default(),
                run_us: None,
            };
            append_timings(&body, &timings).map_or(body, Frame::from)
        } else {
            body
        };
        match origin {
            Some(origin) => {
                self.stats.calls_completed += 1;
                let outcome = match code {
                    _ if oversized => "PAYLOAD_TOO_LARGE",
                    None => "ok",
                    Some(code) => code.as_str(),
                };
                self.ended.push(CallEnded {
                    function: call.function,
                    outcome,
                    latency: now.saturating_duration_since(received),
                });
                debug!(call_id = call.id, "reply");
                self.deliver(origin, body, out);
            }
            None => {
                self.stats.late_replies += 1;
                debug!(
                    call_id = call.id,
                    "dropping reply to a call that already timed out"
                );
            }
        }
        if leaving {
            self.remove_worker(worker, now, out);
        } else {
            self.pull_queued(worker, now, out);
        }
    }

    /// Declares a worker lost: each call it held is re-dispatched when its function is
    /// retry-safe (within the attempt limit and the deadline), or answered WORKER_LOST.
    pub(super) fn lose_worker(&mut self, worker: &[u8], now: Instant, out: &mut Vec<Action>) {
        let Some(held) = self.workers.get(worker).map(|w| w.held.clone()) else {
            return;
        };
        self.stats.workers_lost += 1;
        for &ticket in &held {
            if let Some(call) = self.calls.get(ticket) {
                self.functions.stopped(&call.function, None);
            }
        }
        self.remove_worker(worker, now, out);
        for ticket in held {
            self.retry_or_fail(ticket, now, out);
        }
    }

    /// A call whose worker is gone: back to the front of its queue when it may run again
    /// (a retry-safe body kept, attempts and deadline left, a host left), else WORKER_LOST.
    pub(super) fn retry_or_fail(&mut self, ticket: Ticket, now: Instant, out: &mut Vec<Action>) {
        if self.lost_with_hedge(ticket) {
            return;
        }
        let Some(call) = self.calls.get_mut(ticket) else {
            return;
        };
        let retry = call.origin.is_some()
            && call.body.is_some()
            && call.attempts < self.config.max_attempts
            && call.deadline > now
            && self.functions.contains(&call.function);
        if !retry {
            let mut call = self.calls.remove(ticket).expect("present");
            let message = format!(
                "the worker running '{}' was lost (attempt {} of {})",
                call.function,
                call.attempts,
                if call.body.is_some() {
                    self.config.max_attempts
                } else {
                    1
                }
            );
            return self.finish(&mut call, ErrorCode::WorkerLost, message, now, out);
        }
        self.stats.retries += 1;
        debug!(call_id = call.id, function = %call.function, attempt = call.attempts + 1, "re-dispatching a lost call");
        call.place = Place::Queued;
        let function = Arc::clone(&call.function);
        self.functions.enqueue(&function, ticket, true);
        self.offer_to_hosts(&function, now, out);
    }

    /// Unregisters a worker and takes it off the hosts of its functions.
    pub(super) fn remove_worker(&mut self, worker: &[u8], now: Instant, out: &mut Vec<Action>) {
        let Some(state) = self.workers.remove(worker) else {
            return;
        };
        for name in state.functions.keys() {
            self.unhost(worker, name, now, out);
        }
        info!(worker = %state.label(worker), "worker removed");
    }

    /// Removes a worker from a function's hosts; with none left, fails its queued calls.
    pub(super) fn unhost(
        &mut self,
        worker: &[u8],
        name: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(queue) = self.functions.unhost(name, worker) else {
            return;
        };
        for ticket in queue {
            if !self.calls.is_queued(ticket) {
                continue;
            }
            if self.calls.get(ticket).is_some_and(|call| call.wait) {
                // Its caller asked to wait for a worker: it waits for the next host.
                self.functions.ensure(name);
                self.functions.enqueue(name, ticket, false);
                continue;
            }
            let mut call = self.calls.remove(ticket).expect("queued");
            let message = format!("the last worker hosting '{name}' left");
            self.finish(&mut call, ErrorCode::UnknownFunction, message, now, out);
        }
    }

    /// A queued call about to be sent whose time left is shorter than its function's
    /// average run time would finish after its caller gave up: it is answered TIMEOUT now
    /// (counted in `skipped_late`) and the place goes to the next call. `false` when the
    /// call may still make it, or when the function's run time is not known yet.
    fn too_late_to_start(
        &mut self,
        ticket: Ticket,
        function: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(average) = self
            .functions
            .get(function)
            .and_then(|f| f.run_time.average())
        else {
            return false;
        };
        let left = match self.calls.get(ticket) {
            Some(call) => call.deadline.saturating_duration_since(now),
            None => return false,
        };
        if left >= average {
            return false;
        }
        let mut call = self.calls.remove(ticket).expect("present");
        self.stats.skipped_late += 1;
        let message = format!(
            "call to '{function}' timed out waiting: {} ms were left, and it takes about {} ms",
            left.as_millis(),
            average.as_millis()
        );
        self.finish(&mut call, ErrorCode::Timeout, message, now, out);
        true
    }

    /// Ejects `worker` from `function`'s rotation when its failure `rate` is far above
    /// that of the function's other hosts (see `health`).
    fn judge(&mut self, worker: &WorkerId, function: &Arc<str>, rate: f64, now: Instant) {
        if rate < health::EJECT_RATE {
            return;
        }
        let Some(entry) = self.functions.get(function) else {
            return;
        };
        let mut peers = Vec::new();
        let mut ejected = 0usize;
        for host in entry.hosts.iter().filter(|h| *h != worker) {
            let Some(health) = self.workers.get(host).and_then(|w| w.health(function)) else {
                continue;
            };
            if health.is_ejected() {
                ejected += 1;
            } else if let Some(peer) = health.failure_rate(health::MIN_PEER_SAMPLES) {
                peers.push(peer);
            }
        }
        // At most half of a function's hosts are out at once.
        if !health::is_outlier(rate, &peers) || (ejected + 1) * 2 > entry.hosts.len() {
            return;
        }
        if let Some(length) = self.workers.eject(worker, function, now) {
            self.stats.ejections += 1;
            warn!(worker = %self.workers.label(worker), %function, failure_rate = rate, ?length, "worker fails this function far more than its peers; its calls go elsewhere for a while");
        }
    }

    /// A hung worker answered the call it was stuck on. A worker that understands DRAIN is
    /// leaving anyway; another one takes calls again (a call still stuck there makes it
    /// hung again when its own time comes).
    fn unstuck(&mut self, worker: &WorkerId) {
        if let Some(state) = self.workers.get_mut(worker) {
            if state.hung && !state.drains {
                state.hung = false;
                info!(worker = %state.label(worker), "hung worker answered its stuck call; it takes calls again");
            }
        }
    }
}

/// Whole microseconds of a duration, saturating.
fn micros(duration: std::time::Duration) -> u64 {
    duration.as_micros().try_into().unwrap_or(u64::MAX)
}
