//! The functions table: for each hosted function, its hosts, its queue of waiting calls
//! and how many of its calls run. A function exists while a connected worker hosts it, or
//! while calls that asked to wait for a worker (`wait_for_ready`) wait in its queue with no
//! host yet (an *unhosted* function: how its queue depth shows before any worker exists).

use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::worker::Ticket;

use super::queue::CallQueue;
use super::{Map, Set, WorkerId};

/// One hosted function.
#[derive(Debug)]
pub(crate) struct Function {
    /// The name, shared by every call of the function.
    pub(crate) name: Arc<str>,
    /// Connected workers hosting it, in the order they registered; what each said about
    /// it lives with the worker.
    pub(crate) hosts: Vec<WorkerId>,
    pub(crate) queue: CallQueue,
    /// Calls of it that workers hold.
    pub(crate) running: usize,
    /// How long its calls take on a worker, from dispatch to reply.
    pub(crate) run_time: RunTime,
}

/// A moving average of a function's run time (dispatch to reply, as the broker sees it).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RunTime {
    average_us: f64,
    samples: u32,
}

/// Samples needed before the average is trusted.
const TRUSTED_SAMPLES: u32 = 8;
/// Weight of the newest sample.
const NEWEST_WEIGHT: f64 = 0.2;

impl RunTime {
    /// Adds one call's run time.
    pub(crate) fn record(&mut self, took: Duration) {
        let us = took.as_secs_f64() * 1e6;
        self.average_us = if self.samples == 0 {
            us
        } else {
            self.average_us + NEWEST_WEIGHT * (us - self.average_us)
        };
        self.samples = self.samples.saturating_add(1);
    }

    /// The average, once enough calls were measured.
    pub(crate) fn average(&self) -> Option<Duration> {
        (self.samples >= TRUSTED_SAMPLES).then(|| Duration::from_secs_f64(self.average_us / 1e6))
    }
}

impl Function {
    /// How long a call queued now would take to be answered: the calls ahead, shared
    /// among the calls of it running at once, each taking the average run time, then its
    /// own run. `None` while that cannot be told (too few measurements, or none running).
    pub(crate) fn expected_finish(&self) -> Option<Duration> {
        let average = self.run_time.average()?;
        if self.running == 0 {
            return None;
        }
        let ahead = self.queue.len() as f64 / self.running as f64;
        Some(average.mul_f64(ahead + 1.0))
    }
}

/// Every hosted function, by name, and which of them have calls waiting.
#[derive(Default)]
pub(crate) struct Functions {
    by_name: Map<Arc<str>, Function>,
    /// Functions whose queue is not empty.
    waiting: Set<Arc<str>>,
    /// Functions with no host whose queue holds calls waiting for one.
    unhosted: Set<Arc<str>>,
}

impl Functions {
    /// The function called `name`, if a worker hosts it.
    pub(crate) fn get(&self, name: &str) -> Option<&Function> {
        self.by_name.get(name)
    }

    /// Whether a worker hosts `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// How many functions are hosted.
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Every hosted function, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Function> {
        self.by_name.values()
    }

    /// How many functions have calls waiting for a first host.
    pub(crate) fn unhosted_len(&self) -> usize {
        self.unhosted.len()
    }

    /// The function called `name`; created with no host (for calls that wait for one) when
    /// it does not exist.
    pub(crate) fn ensure(&mut self, name: &str) -> &Function {
        if !self.by_name.contains_key(name) {
            let name: Arc<str> = Arc::from(name);
            let function = Function {
                name: Arc::clone(&name),
                hosts: Vec::new(),
                queue: CallQueue::default(),
                running: 0,
                run_time: RunTime::default(),
            };
            self.unhosted.insert(Arc::clone(&name));
            self.by_name.insert(name, function);
        }
        self.by_name.get(name).expect("inserted above")
    }

    /// Adds `worker` to the hosts of `name` (creating the function); returns the hosts
    /// it had before.
    pub(crate) fn host(&mut self, name: &str, worker: &WorkerId) -> &[WorkerId] {
        self.ensure(name);
        self.unhosted.remove(name);
        let function = self.by_name.get_mut(name).expect("ensured above");
        if !function.hosts.contains(worker) {
            function.hosts.push(worker.clone());
        }
        let others = function.hosts.len() - 1;
        &function.hosts[..others]
    }

    /// Removes `worker` from the hosts of `name`. When no host is left the function is
    /// removed, and the tickets that were in its queue are returned (dead entries too).
    pub(crate) fn unhost(&mut self, name: &str, worker: &[u8]) -> Option<Vec<Ticket>> {
        let function = self.by_name.get_mut(name)?;
        function.hosts.retain(|h| **h != *worker);
        if !function.hosts.is_empty() {
            return None;
        }
        let mut function = self.by_name.remove(name).expect("present");
        self.waiting.remove(name);
        self.unhosted.remove(name);
        Some(function.queue.take_all().into())
    }

    /// Puts a call in `name`'s queue: at the back, or at the front when it is retried.
    pub(crate) fn enqueue(&mut self, name: &str, ticket: Ticket, front: bool) {
        let function = self
            .by_name
            .get_mut(name)
            .expect("a queued call's function exists (hosted, or ensured)");
        function.queue.push(ticket, front);
        if function.queue.len() == 1 {
            self.waiting.insert(Arc::clone(&function.name));
        }
    }

    /// Counts out a queued call of `name` that left its queue without being popped.
    /// A function with no host whose last waiting call left is forgotten.
    pub(crate) fn forget_queued(&mut self, name: &str, is_queued: impl Fn(Ticket) -> bool) {
        if let Some(function) = self.by_name.get_mut(name) {
            function.queue.forget(is_queued);
            if function.queue.len() == 0 {
                self.waiting.remove(name);
                if function.hosts.is_empty() {
                    self.by_name.remove(name);
                    self.unhosted.remove(name);
                }
            }
        }
    }

    /// The oldest waiting call among the functions `accepts` lets through, with its
    /// function's name (dropping dead queue entries on the way).
    pub(crate) fn oldest_waiting(
        &mut self,
        accepts: impl Fn(&str) -> bool,
        is_queued: impl Fn(Ticket) -> bool,
    ) -> Option<(Ticket, Arc<str>)> {
        let mut oldest: Option<(Ticket, &Arc<str>)> = None;
        for name in &self.waiting {
            if !accepts(name) {
                continue;
            }
            let Some(function) = self.by_name.get_mut(&**name) else {
                continue;
            };
            if let Some(head) = function.queue.head(&is_queued) {
                if oldest.is_none_or(|(t, _)| head < t) {
                    oldest = Some((head, name));
                }
            }
        }
        oldest.map(|(ticket, name)| (ticket, Arc::clone(name)))
    }

    /// Removes the head of `name`'s queue, found by [`Functions::oldest_waiting`].
    pub(crate) fn pop_head(&mut self, name: &str) -> Option<Ticket> {
        let function = self.by_name.get_mut(name)?;
        let ticket = function.queue.pop_head();
        if function.queue.len() == 0 {
            self.waiting.remove(name);
        }
        ticket
    }

    /// Whether any call waits.
    pub(crate) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The functions with calls waiting (for checks).
    pub(crate) fn waiting(&self) -> &Set<Arc<str>> {
        &self.waiting
    }

    /// Counts a call of `name` that a worker took.
    pub(crate) fn started(&mut self, name: &str) {
        if let Some(function) = self.by_name.get_mut(name) {
            function.running += 1;
        }
    }

    /// Counts a call of `name` that a worker no longer holds, and records how long it
    /// took when it ran to its end.
    pub(crate) fn stopped(&mut self, name: &str, took: Option<Duration>) {
        if let Some(function) = self.by_name.get_mut(name) {
            function.running = function.running.saturating_sub(1);
            if let Some(took) = took {
                function.run_time.record(took);
            }
        }
    }

    /// Empties every queue and forgets every running call.
    pub(crate) fn clear_calls(&mut self) {
        for function in self.by_name.values_mut() {
            function.queue.take_all();
            function.running = 0;
        }
        self.waiting.clear();
        // With no call left, a function nobody hosts has no reason to exist.
        for name in std::mem::take(&mut self.unhosted) {
            self.by_name.remove(&name);
        }
    }

    /// Gives back the memory queues kept after a flood drained.
    pub(crate) fn shrink_after_flood(&mut self, floor: usize) {
        for function in self.by_name.values_mut() {
            function.queue.shrink(floor);
        }
    }
}
