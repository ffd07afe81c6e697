//! The workers table: each connected worker's budgets, the calls it holds, its
//! heartbeats, and which worker takes the next call.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::worker::Ticket;
use switchboard_protocol::{FunctionInfo, WorkerListing};

use super::health::Health;
use super::ready::Registration;
use super::{hex, worker_label, Action, Map, Set, WorkerId};

/// One connected worker.
#[derive(Debug)]
pub(crate) struct Worker {
    /// The name it announced (control characters removed), possibly empty.
    pub(crate) name: String,
    /// Its registration number, shown by `system.workers` in place of its routing
    /// identity (which must stay secret: see `libzmq_seed`).
    pub(crate) number: u64,
    /// Under CURVE, the public key its READY came with: only that key speaks for it.
    pub(crate) key: Option<String>,
    /// Calls of ordinary functions it holds at once (its executor slots).
    pub(crate) capacity: u32,
    /// Calls of its inline functions it holds at once, beyond `capacity`.
    pub(crate) inline_capacity: u32,
    /// Tickets of every call it holds.
    pub(crate) held: Set<Ticket>,
    /// How many of those run on its inline budget.
    pub(crate) held_inline: u32,
    /// Each function it hosts: what it announced (the broker retries a call after losing
    /// this worker only if this worker said the function is retry-safe) and how its calls
    /// have gone lately (see `health`).
    pub(crate) functions: Map<Arc<str>, Hosted>,
    heartbeat: Duration,
    expires: Instant,
    next_heartbeat: Instant,
    /// The dispatch count when it last took a call: ties go to the least recently used.
    last_dispatch: u64,
    /// It said it is leaving: no new calls.
    pub(crate) draining: bool,
    /// It understands CANCEL (announced in its READY).
    pub(crate) cancels: bool,
    /// It understands DRAIN (announced in its READY).
    pub(crate) drains: bool,
    /// It takes REQUESTs with context (announced in its READY).
    pub(crate) context: bool,
    /// It takes REQUESTs with caller (announced in its READY).
    pub(crate) caller: bool,
    /// It ran a call long past the call's deadline: no new calls for it.
    pub(crate) hung: bool,
    /// It moves its capacity between brokers: it gets LOAD in place of HEARTBEAT and
    /// may change its budgets with CAPACITY (announced in its READY).
    pub(crate) credit: bool,
}

/// One function as one worker hosts it.
#[derive(Debug)]
pub(crate) struct Hosted {
    /// What the worker announced about it.
    pub(crate) info: FunctionInfo,
    /// How its calls have gone on this worker.
    pub(crate) health: Health,
}

impl Worker {
    /// Its name for logs (see `worker_label`).
    pub(crate) fn label(&self, id: &[u8]) -> String {
        worker_label(&self.name, id)
    }

    /// What it announced about `function`, if it hosts it.
    pub(crate) fn announced(&self, function: &str) -> Option<&FunctionInfo> {
        self.functions.get(function).map(|hosted| &hosted.info)
    }

    /// How its calls of `function` have gone lately, if it hosts it.
    pub(crate) fn health(&self, function: &str) -> Option<&Health> {
        self.functions.get(function).map(|hosted| &hosted.health)
    }

    /// Whether calls of `function` use its inline budget.
    pub(crate) fn runs_inline(&self, function: &str) -> bool {
        self.inline_capacity > 0 && self.announced(function).is_some_and(|f| f.inline)
    }

    /// Free room for one more call of `function`.
    pub(crate) fn free_for(&self, function: &str) -> u32 {
        let Some(hosted) = self.functions.get(function) else {
            return 0;
        };
        if self.draining || self.hung || hosted.health.is_ejected() {
            0
        } else if self.inline_capacity > 0 && hosted.info.inline {
            self.inline_capacity.saturating_sub(self.held_inline)
        } else {
            let ordinary = self.held.len() as u32 - self.held_inline;
            self.capacity.saturating_sub(ordinary)
        }
    }

    /// How many calls it holds.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }
}

/// What the worker that takes a call says about it.
pub(crate) struct Started {
    /// The call runs on its inline budget.
    pub(crate) inline: bool,
    /// Running it twice is harmless.
    pub(crate) retry_safe: bool,
    /// It takes the call context.
    pub(crate) context: bool,
    /// It takes the caller and flags too.
    pub(crate) caller: bool,
    /// Hedge the call after this long without an answer (retry-safe functions only).
    pub(crate) hedge_after: Option<Duration>,
}

/// Every connected worker, by routing identity.
#[derive(Default)]
pub(crate) struct Workers {
    by_id: Map<WorkerId, Worker>,
    /// Registrations so far: the last one's number.
    registrations: u64,
    /// Calls dispatched so far.
    dispatches: u64,
    /// (worker, function) pairs ejected, with when each comes back.
    ejected: Vec<(Instant, WorkerId, Arc<str>)>,
}

impl Workers {
    /// The worker with this identity.
    pub(crate) fn get(&self, id: &[u8]) -> Option<&Worker> {
        self.by_id.get(id)
    }

    /// The worker with this identity, to change.
    pub(crate) fn get_mut(&mut self, id: &[u8]) -> Option<&mut Worker> {
        self.by_id.get_mut(id)
    }

    /// Whether a worker with this identity is connected.
    pub(crate) fn contains(&self, id: &[u8]) -> bool {
        self.by_id.contains_key(id)
    }

    /// How many workers are connected.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every connected worker, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&WorkerId, &Worker)> {
        self.by_id.iter()
    }

    /// A worker's name for logs, connected or not.
    pub(crate) fn label(&self, id: &[u8]) -> String {
        match self.by_id.get(id) {
            Some(worker) => worker.label(id),
            None => hex(id),
        }
    }

    /// Registers a worker from its checked READY, holding no call; returns the worker it
    /// replaces under the same identity, if any.
    pub(crate) fn insert(
        &mut self,
        id: WorkerId,
        registration: Registration,
        now: Instant,
        liveness: u32,
    ) -> Option<Worker> {
        self.registrations += 1;
        let heartbeat = registration.heartbeat;
        let worker = Worker {
            name: registration.name,
            number: self.registrations,
            key: None,
            capacity: registration.capacity,
            inline_capacity: registration.inline_capacity,
            held: Set::default(),
            held_inline: 0,
            functions: registration
                .functions
                .into_iter()
                .map(|info| {
                    let name = Arc::from(info.name.as_str());
                    let health = Health::default();
                    (name, Hosted { info, health })
                })
                .collect(),
            heartbeat,
            expires: now + heartbeat * liveness,
            next_heartbeat: now + heartbeat,
            last_dispatch: 0,
            draining: false,
            cancels: registration.cancel,
            drains: registration.drain,
            context: registration.context,
            caller: registration.caller,
            credit: registration.credit,
            hung: false,
        };
        self.by_id.insert(id, worker)
    }

    /// Unregisters a worker.
    pub(crate) fn remove(&mut self, id: &[u8]) -> Option<Worker> {
        self.by_id.remove(id)
    }

    /// Heard from a worker: it is alive for `liveness` more heartbeats.
    pub(crate) fn heard_from(&mut self, id: &[u8], now: Instant, liveness: u32) {
        if let Some(worker) = self.by_id.get_mut(id) {
            worker.expires = now + worker.heartbeat * liveness;
        }
    }

    /// Among `hosts`, the worker with the most free room for `function`; ties go to the
    /// least recently used.
    pub(crate) fn pick(&self, hosts: &[WorkerId], function: &str) -> Option<WorkerId> {
        hosts
            .iter()
            .filter_map(|id| self.by_id.get(id).map(|w| (id, w)))
            .map(|(id, w)| (id, w, w.free_for(function)))
            .filter(|(_, _, free)| *free > 0)
            .max_by_key(|(_, w, free)| (*free, Reverse(w.last_dispatch)))
            .map(|(id, _, _)| id.clone())
    }

    /// Records that `id` takes a call of `function`: returns whether it runs inline,
    /// whether the worker said the function is retry-safe, and whether it takes the call
    /// context.
    pub(crate) fn start(&mut self, id: &[u8], ticket: Ticket, function: &str) -> Started {
        self.dispatches += 1;
        let worker = self
            .by_id
            .get_mut(id)
            .expect("picked from connected workers");
        worker.last_dispatch = self.dispatches;
        let inline = worker.runs_inline(function);
        worker.held.insert(ticket);
        if inline {
            worker.held_inline += 1;
        }
        let announced = worker.announced(function);
        let retry_safe = announced.is_some_and(|f| f.retry_safe);
        let hedge_ms = announced.map_or(0, |f| f.hedge_ms);
        Started {
            inline,
            retry_safe,
            context: worker.context,
            caller: worker.caller,
            hedge_after: (retry_safe && hedge_ms > 0).then(|| Duration::from_millis(hedge_ms)),
        }
    }

    /// Records that `id` no longer holds a call; returns whether it is draining and now
    /// holds none (it may be removed).
    pub(crate) fn release(&mut self, id: &[u8], ticket: Ticket, inline: bool) -> bool {
        let Some(worker) = self.by_id.get_mut(id) else {
            return false;
        };
        if worker.held.remove(&ticket) && inline {
            worker.held_inline -= 1;
        }
        worker.draining && worker.held.is_empty()
    }

    /// Records that `id` answered a call of `function`: it no longer holds it, and the
    /// outcome (`Some(failed)`; `None`: not the host's doing) counts toward its health.
    /// Returns whether it is draining and now idle (it may be removed), and the pair's
    /// failure rate when a failure leaves it with enough calls to be judged.
    pub(crate) fn answered(
        &mut self,
        id: &[u8],
        ticket: Ticket,
        inline: bool,
        function: &str,
        failed: Option<bool>,
    ) -> (bool, Option<f64>) {
        let Some(worker) = self.by_id.get_mut(id) else {
            return (false, None);
        };
        if worker.held.remove(&ticket) && inline {
            worker.held_inline -= 1;
        }
        let leaving = worker.draining && worker.held.is_empty();
        let Some(failed) = failed else {
            return (leaving, None);
        };
        let Some(hosted) = worker.functions.get_mut(function) else {
            return (leaving, None);
        };
        if hosted.health.is_ejected() {
            return (leaving, None);
        }
        hosted.health.record(failed);
        // Only a failure can make a host an outlier: a success is judged by nobody.
        let rate = if failed {
            hosted.health.failure_rate(super::health::MIN_SAMPLES)
        } else {
            None
        };
        (leaving, rate)
    }

    /// Takes worker `id` out of `function`'s rotation from `now`; returns for how long.
    pub(crate) fn eject(
        &mut self,
        id: &WorkerId,
        function: &Arc<str>,
        now: Instant,
    ) -> Option<Duration> {
        let hosted = self.by_id.get_mut(&**id)?.functions.get_mut(&**function)?;
        let length = hosted.health.eject(now);
        self.ejected
            .push((now + length, id.clone(), Arc::clone(function)));
        Some(length)
    }

    /// Ends the ejections whose time is up; returns the workers that may take calls again.
    pub(crate) fn readmit(&mut self, now: Instant) -> Vec<WorkerId> {
        if self.ejected.iter().all(|(until, _, _)| *until > now) {
            return Vec::new();
        }
        let (due, later) = std::mem::take(&mut self.ejected)
            .into_iter()
            .partition(|(until, _, _)| *until <= now);
        self.ejected = later;
        let mut back = Vec::new();
        for (_, id, function) in due {
            let hosted = self
                .by_id
                .get_mut(&id)
                .and_then(|w| w.functions.get_mut(&*function));
            if hosted.is_some_and(|h| h.health.readmit(now)) {
                back.push(id);
            }
        }
        back
    }

    /// Forgets every call every worker holds.
    pub(crate) fn clear_calls(&mut self) {
        for worker in self.by_id.values_mut() {
            worker.held.clear();
            worker.held_inline = 0;
        }
    }

    /// Workers whose heartbeats stopped.
    pub(crate) fn silent(&self, now: Instant) -> Vec<WorkerId> {
        self.by_id
            .iter()
            .filter(|(_, w)| w.expires <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Queues a HEARTBEAT for each worker whose interval has passed — a LOAD for a
    /// worker that moves its capacity between brokers, with the calls waiting here that
    /// it could take (`backlog`) and whether this broker is `stopping`.
    pub(crate) fn send_heartbeats(
        &mut self,
        now: Instant,
        backlog: impl Fn(&Worker) -> u32,
        stopping: bool,
        out: &mut Vec<Action>,
    ) {
        for (id, worker) in &mut self.by_id {
            if worker.next_heartbeat <= now {
                worker.next_heartbeat = now + worker.heartbeat;
                let worker_id = id.clone();
                out.push(if worker.credit {
                    Action::Load {
                        worker: worker_id,
                        backlog: backlog(worker),
                        stopping,
                    }
                } else {
                    Action::Heartbeat { worker: worker_id }
                });
            }
        }
    }

    /// Makes every worker that moves its capacity between brokers due a LOAD now (the
    /// broker began stopping: they should hear it at once).
    pub(crate) fn hurry_loads(&mut self, now: Instant) {
        for worker in self.by_id.values_mut().filter(|w| w.credit) {
            worker.next_heartbeat = now;
        }
    }

    /// A worker's new budgets (CAPACITY). Returns false when it did not announce that it
    /// moves its capacity (the message is ignored).
    pub(crate) fn set_budgets(&mut self, id: &[u8], capacity: u32, inline_capacity: u32) -> bool {
        match self.by_id.get_mut(id) {
            Some(worker) if worker.credit => {
                worker.capacity = capacity;
                worker.inline_capacity = inline_capacity;
                true
            }
            _ => false,
        }
    }

    /// The earliest instant a worker expires, is due a heartbeat, or comes back from an
    /// ejection.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let ejection = self.ejected.iter().map(|(until, _, _)| *until).min();
        self.by_id
            .values()
            .map(|w| w.expires.min(w.next_heartbeat))
            .chain(ejection)
            .min()
    }

    /// The connected workers as `system.workers` lists them, by name then number.
    pub(crate) fn listing(&self) -> Vec<WorkerListing> {
        let mut list: Vec<(u64, WorkerListing)> = self
            .by_id
            .values()
            .map(|w| {
                let listing = WorkerListing {
                    name: w.name.clone(),
                    id: w.number.to_string(),
                    capacity: w.capacity,
                    running: w.held() as u32,
                    functions: w.functions.len() as u32,
                    draining: w.draining || w.hung,
                    ejected: {
                        let mut names: Vec<String> = w
                            .functions
                            .iter()
                            .filter(|(_, h)| h.health.is_ejected())
                            .map(|(name, _)| name.to_string())
                            .collect();
                        names.sort();
                        names
                    },
                };
                (w.number, listing)
            })
            .collect();
        list.sort_by(|a, b| a.1.name.cmp(&b.1.name).then(a.0.cmp(&b.0)));
        list.into_iter().map(|(_, listing)| listing).collect()
    }
}
