//! The router's invariants: the call table says where each call is, and every other
//! view (queues, running counts, workers' held sets, hosts, batches, deadlines) agrees
//! with it. Checked by the router tests after every step, and by debug builds of the
//! broker after every message it handles.

use std::sync::Arc;

use switchboard_protocol::worker::Ticket;

use super::calls::{Origin, Place};
use super::{Map, Router, Set};

impl Router {
    /// Panics, naming the first disagreement, unless every view of the router agrees
    /// with its call table. Linear in the state held: for tests and debug builds.
    pub(crate) fn check_invariants(&self) {
        let mut queued: Map<Arc<str>, Set<Ticket>> = Map::default();
        let mut running: Map<Arc<str>, usize> = Map::default();
        let mut held: Map<&[u8], (Set<Ticket>, u32)> = Map::default();
        let mut awaited_slots: Map<u64, usize> = Map::default();
        let deadlines: Set<Ticket> = self.calls.deadline_tickets().collect();
        for (ticket, call) in self.calls.iter() {
            let function = self.functions.get(&call.function);
            assert!(
                function.is_some(),
                "call {ticket:?} of '{}' whose function no worker hosts",
                call.function
            );
            match &call.place {
                Place::Queued => {
                    assert!(
                        call.body.is_some(),
                        "queued call {ticket:?} without its body"
                    );
                    assert!(
                        call.origin.is_some(),
                        "queued call {ticket:?} already answered"
                    );
                    queued
                        .entry(Arc::clone(&call.function))
                        .or_default()
                        .insert(ticket);
                }
                Place::Running { worker, inline, .. } => {
                    let state = self.workers.get(worker);
                    assert!(
                        state.is_some(),
                        "call {ticket:?} running on a worker that is not connected"
                    );
                    assert_eq!(
                        state.is_some_and(|w| w.runs_inline(&call.function)),
                        *inline,
                        "call {ticket:?} counted on the wrong budget"
                    );
                    *running.entry(Arc::clone(&call.function)).or_default() += 1;
                    let entry = held.entry(&worker[..]).or_default();
                    entry.0.insert(ticket);
                    entry.1 += u32::from(*inline);
                }
            }
            if call.origin.is_some() {
                assert!(
                    deadlines.contains(&ticket),
                    "call {ticket:?} waits for an answer but has no deadline entry"
                );
            }
            if let Some(Origin::Batch { batch, index }) = &call.origin {
                *awaited_slots.entry(*batch).or_default() += 1;
                let slot = self
                    .batches
                    .get(*batch)
                    .map(|b| b.replies[*index].is_none());
                assert_eq!(
                    slot,
                    Some(true),
                    "call {ticket:?} answers a batch slot that is gone or filled"
                );
            }
        }
        for (key, ticket) in self.calls.caller_index() {
            let call = self.calls.get(ticket);
            assert!(call.is_some(), "the caller index names a call that is gone");
            assert_eq!(
                call.and_then(|c| c.caller_key),
                Some(key),
                "the caller index and call {ticket:?} disagree"
            );
        }
        for (ticket, call) in self.calls.iter() {
            if let Some(parent) = call.parent {
                assert!(call.origin.is_none(), "hedge {ticket:?} has its own caller");
                assert_eq!(
                    self.calls.get(parent).and_then(|p| p.hedge),
                    Some(ticket),
                    "hedge {ticket:?} and its call disagree"
                );
            }
            if let Some(hedge) = call.hedge {
                assert_eq!(
                    self.calls.get(hedge).and_then(|h| h.parent),
                    Some(ticket),
                    "call {ticket:?} and its hedge disagree"
                );
            }
        }
        let index: Map<(u64, u64), Ticket> = self.calls.caller_index().collect();
        for (ticket, call) in self.calls.iter() {
            if let Some(key) = call.caller_key {
                assert_eq!(
                    index.get(&key).copied(),
                    Some(ticket),
                    "call {ticket:?} has a caller key the index does not hold"
                );
            }
        }
        for function in self.functions.iter() {
            let expected = queued.remove(&function.name).unwrap_or_default();
            assert_eq!(
                function.queue.len(),
                expected.len(),
                "queue length of '{}' disagrees with the call table",
                function.name
            );
            let live: Set<Ticket> = function
                .queue
                .entries()
                .filter(|t| expected.contains(t))
                .collect();
            assert_eq!(
                live, expected,
                "queue of '{}' misses a queued call",
                function.name
            );
            assert_eq!(
                function
                    .queue
                    .entries()
                    .filter(|t| expected.contains(t))
                    .count(),
                expected.len(),
                "a call is twice in the queue of '{}'",
                function.name
            );
            assert_eq!(
                self.functions.waiting().contains(&function.name),
                !expected.is_empty(),
                "waiting set disagrees about '{}'",
                function.name
            );
            assert_eq!(
                function.running,
                running.remove(&function.name).unwrap_or(0),
                "running count of '{}' disagrees with the call table",
                function.name
            );
            if function.hosts.is_empty() {
                // Only calls that wait for a first host keep a function with none.
                assert!(
                    !expected.is_empty() && function.running == 0,
                    "'{}' has no host and no call waiting for one",
                    function.name
                );
                assert!(
                    expected
                        .iter()
                        .all(|t| self.calls.get(*t).is_some_and(|c| c.wait)),
                    "'{}' has no host but holds a call that did not ask to wait",
                    function.name
                );
            }
            for host in &function.hosts {
                let announced = self
                    .workers
                    .get(host)
                    .and_then(|w| w.announced(&function.name));
                assert!(
                    announced.is_some(),
                    "a host of '{}' is gone or does not announce it",
                    function.name
                );
            }
        }
        assert!(queued.is_empty(), "queued calls of unknown functions");
        assert!(
            self.functions
                .waiting()
                .iter()
                .all(|name| self.functions.contains(name)),
            "the waiting set names a function that is gone"
        );
        for (id, worker) in self.workers.iter() {
            let (expected, inline) = held.remove(&id[..]).unwrap_or_default();
            assert_eq!(
                worker.held, expected,
                "held set of worker {} disagrees with the call table",
                worker.number
            );
            assert_eq!(
                worker.held_inline, inline,
                "inline count of worker {}",
                worker.number
            );
            for name in worker.functions.keys() {
                let hosted = self.functions.get(name).map(|f| f.hosts.contains(id));
                assert_eq!(
                    hosted,
                    Some(true),
                    "worker {} announces '{name}' but is not among its hosts",
                    worker.number
                );
            }
        }
        assert!(held.is_empty(), "calls held by workers that are gone");
        for (number, batch) in self.batches.iter() {
            let empty = batch.replies.iter().filter(|r| r.is_none()).count();
            assert_eq!(
                batch.missing, empty,
                "batch {number} miscounts its missing replies"
            );
            assert!(
                batch.missing > 0,
                "batch {number} is complete but not answered"
            );
            assert_eq!(
                awaited_slots.get(&number).copied().unwrap_or(0),
                batch.missing,
                "batch {number} waits for slots no call will fill"
            );
        }
    }
}
