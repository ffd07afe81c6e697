//! The call table: every call the broker holds, where it is, and when it is due.
//!
//! It is the one source of where a call is ([`Place`]): the function queues and the
//! workers' held sets are indexes over it, checked against it by `check_invariants`.
//! A call stays in the table from admission until it ends, whatever it goes through
//! (queued, sent, lost, re-queued), so its deadline entry stays valid all along.

use std::sync::Arc;
use std::time::Instant;

use crate::route::ReplyRoute;
use switchboard_protocol::worker::Ticket;
use switchboard_protocol::Frame;

use super::deadlines::Deadlines;
use super::{Map, WorkerId};

/// Where a call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// In its function's queue, waiting for a free worker.
    Queued,
    /// Sent to `worker` at `since`; it holds it on its inline budget or on its slots.
    Running {
        worker: WorkerId,
        inline: bool,
        since: Instant,
    },
}

/// Where a call's reply goes.
#[derive(Debug)]
pub(crate) enum Origin {
    /// Straight back to a caller.
    Caller(ReplyRoute),
    /// Into slot `index` of a pending batch.
    Batch { batch: u64, index: usize },
}

/// One call the broker holds.
#[derive(Debug)]
pub(crate) struct Call {
    /// Where the reply goes; `None` once the caller was answered (a timed-out call still
    /// holds its worker's slot until the worker answers or is lost).
    pub(crate) origin: Option<Origin>,
    /// The caller's call id.
    pub(crate) id: u64,
    /// Shared with the function's entry: no allocation per call.
    pub(crate) function: Arc<str>,
    /// The request body: there while queued; after dispatch, a copy only when the worker
    /// said the function is retry-safe (so a lost worker's call can be sent again).
    pub(crate) body: Option<Frame>,
    pub(crate) deadline: Instant,
    pub(crate) place: Place,
    /// How many times the call has been dispatched.
    pub(crate) attempts: u32,
    /// When the broker received it.
    pub(crate) received: Instant,
    /// Its key in the table's index by caller and call id, when it has one.
    pub(crate) caller_key: Option<(u64, u64)>,
    /// Answered while running: if its worker still holds it at this instant, the worker
    /// is hung.
    pub(crate) hung_at: Option<Instant>,
    /// The caller's W3C trace context, when it sent a valid one.
    pub(crate) traceparent: Option<Arc<str>>,
    /// For a hedge (a second attempt of a running call): the call it hedges.
    pub(crate) parent: Option<Ticket>,
    /// For a hedged call: its hedge, running on another worker.
    pub(crate) hedge: Option<Ticket>,
    /// The caller asked for the call's timings in the reply.
    pub(crate) timings: bool,
    /// Its caller asked to wait for a worker when none hosts the function (`wait_for_ready`).
    pub(crate) wait: bool,
    /// The broker knows who called (CURVE): the table keeps the identity aside
    /// ([`CallTable::caller_of`]), so that calls of unknown callers stay small.
    pub(crate) identified: bool,
}

/// Every call held, by ticket, with their deadlines.
pub(crate) struct CallTable {
    /// Boxed: a table of 100 000 queued calls then grows by pointers, not by whole calls.
    calls: Map<Ticket, Box<Call>>,
    deadlines: Deadlines,
    next_ticket: u64,
    /// Calls answered straight to a caller, by (hash of the caller's envelope, call id):
    /// how `system.cancel` finds a call. A second call with the same key while the first
    /// is held is not indexed (a caller reusing an id in flight cannot cancel it).
    by_caller: Map<(u64, u64), Ticket>,
    /// Seeded at random per broker: callers cannot aim collisions at each other.
    caller_hasher: ahash::RandomState,
    /// Who made each identified call (CURVE): `curve:<public key>`.
    identities: Map<Ticket, Arc<str>>,
}

impl CallTable {
    /// An empty table whose tickets start at `first_ticket`.
    pub(crate) fn new(first_ticket: u64) -> CallTable {
        CallTable {
            calls: Map::default(),
            deadlines: Deadlines::default(),
            next_ticket: first_ticket,
            by_caller: Map::default(),
            caller_hasher: ahash::RandomState::new(),
            identities: Map::default(),
        }
    }

    /// A ticket for a new call, never handed out before by this table.
    pub(crate) fn next_ticket(&mut self) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        ticket
    }

    /// Takes in a new call under the ticket [`CallTable::next_ticket`] gave it, already in
    /// its place, and records its deadline.
    pub(crate) fn insert(&mut self, ticket: Ticket, mut call: Box<Call>) {
        if let Some(Origin::Caller(route)) = &call.origin {
            let key = (self.caller_hash(route), call.id);
            if let std::collections::hash_map::Entry::Vacant(entry) = self.by_caller.entry(key) {
                entry.insert(ticket);
                call.caller_key = Some(key);
            }
        }
        let deadline = call.deadline;
        self.calls.insert(ticket, call);
        let calls = &self.calls;
        self.deadlines
            .insert(deadline, ticket, calls.len(), |t| calls.contains_key(&t));
    }

    /// The call with this ticket.
    pub(crate) fn get(&self, ticket: Ticket) -> Option<&Call> {
        self.calls.get(&ticket).map(|call| &**call)
    }

    /// The call with this ticket, to change.
    pub(crate) fn get_mut(&mut self, ticket: Ticket) -> Option<&mut Call> {
        self.calls.get_mut(&ticket).map(|call| &mut **call)
    }

    /// Removes a call that ended. Its deadline entry stays behind and is skipped when it
    /// comes due (see `Deadlines`).
    pub(crate) fn remove(&mut self, ticket: Ticket) -> Option<Box<Call>> {
        let call = self.calls.remove(&ticket)?;
        if let Some(key) = call.caller_key {
            self.by_caller.remove(&key);
        }
        if call.identified {
            self.identities.remove(&ticket);
        }
        Some(call)
    }

    /// Records who made the call with this ticket (its `identified` is set).
    pub(crate) fn identify(&mut self, ticket: Ticket, caller: Arc<str>) {
        self.identities.insert(ticket, caller);
    }

    /// Who made the call with this ticket, when the broker knows.
    pub(crate) fn caller_of(&self, ticket: Ticket) -> Option<Arc<str>> {
        self.identities.get(&ticket).cloned()
    }

    /// The held call `call_id` that `caller` made and that waits for its answer.
    pub(crate) fn find_by_caller(&self, caller: &ReplyRoute, call_id: u64) -> Option<Ticket> {
        let ticket = *self.by_caller.get(&(self.caller_hash(caller), call_id))?;
        let call = self.calls.get(&ticket)?;
        match &call.origin {
            Some(Origin::Caller(route)) if route.caller() == caller.caller() => Some(ticket),
            _ => None,
        }
    }

    fn caller_hash(&self, route: &ReplyRoute) -> u64 {
        self.caller_hasher.hash_one(route.caller())
    }

    /// The index by caller, for checks: each entry names a held call with that key.
    pub(crate) fn caller_index(&self) -> impl Iterator<Item = ((u64, u64), Ticket)> + '_ {
        self.by_caller.iter().map(|(key, ticket)| (*key, *ticket))
    }

    /// Whether this ticket's call waits in a queue.
    pub(crate) fn is_queued(&self, ticket: Ticket) -> bool {
        matches!(self.calls.get(&ticket), Some(call) if call.place == Place::Queued)
    }

    /// Whether `worker` holds this ticket's call.
    pub(crate) fn is_held_by(&self, ticket: Ticket, worker: &[u8]) -> bool {
        matches!(
            self.calls.get(&ticket).map(|call| &call.place),
            Some(Place::Running { worker: w, .. }) if **w == *worker
        )
    }

    /// Adds a deadline entry for a held call: it comes due again at `at`.
    pub(crate) fn watch(&mut self, ticket: Ticket, at: Instant) {
        let calls = &self.calls;
        self.deadlines
            .insert(at, ticket, calls.len(), |t| calls.contains_key(&t));
    }

    /// The ticket of the next held call whose deadline is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Ticket> {
        while let Some((_, ticket)) = self.deadlines.pop_due(now) {
            if self.calls.contains_key(&ticket) {
                return Some(ticket);
            }
        }
        None
    }

    /// The earliest deadline kept (possibly of a call that has already ended).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first()
    }

    /// How many calls are held.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// Takes every call out, forgetting every deadline.
    pub(crate) fn take_all(&mut self) -> Vec<(Ticket, Box<Call>)> {
        self.deadlines.clear();
        self.by_caller.clear();
        self.calls.drain().collect()
    }

    /// Every call held, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Ticket, &Call)> {
        self.calls.iter().map(|(ticket, call)| (*ticket, &**call))
    }

    /// The tickets that have a deadline entry, stale ones included (for checks).
    pub(crate) fn deadline_tickets(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.deadlines.tickets()
    }

    /// After a flood drains, gives back the memory the table and the heap kept.
    pub(crate) fn shrink_after_flood(&mut self, floor: usize) {
        let calls = &self.calls;
        self.deadlines
            .sweep(calls.len(), |t| calls.contains_key(&t));
        self.deadlines.shrink(floor);
        if self.calls.capacity() > floor && self.calls.len() < self.calls.capacity() / 8 {
            self.calls.shrink_to(floor.max(self.calls.len() * 2));
        }
    }
}
