//! The deadlines of the calls the broker holds, earliest first.
//!
//! A min-heap with lazy deletion: a call that ends before its deadline leaves its entry
//! behind (removing it from a heap would cost a search), and the router skips entries
//! whose call is gone when they come due. Stale entries are swept out whenever they
//! outnumber the live calls, so the heap stays within twice the calls held.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use switchboard_protocol::worker::Ticket;

/// Entries kept beyond twice the live calls before a sweep.
const SLACK: usize = 1024;

/// Deadlines of calls, by ticket.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, Ticket)>>,
}

impl Deadlines {
    /// Records a call's deadline. `live` tells which tickets are still held, for the
    /// occasional sweep; `held` is how many there are.
    pub(crate) fn insert(
        &mut self,
        at: Instant,
        ticket: Ticket,
        held: usize,
        live: impl Fn(Ticket) -> bool,
    ) {
        self.heap.push(Reverse((at, ticket)));
        self.sweep(held, live);
    }

    /// Drops the entries of calls no longer held once they outnumber the held ones.
    pub(crate) fn sweep(&mut self, held: usize, live: impl Fn(Ticket) -> bool) {
        if self.heap.len() > 2 * held + SLACK {
            self.heap.retain(|Reverse((_, ticket))| live(*ticket));
        }
    }

    /// The earliest deadline (possibly of a call that has already ended).
    pub(crate) fn first(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the next entry due at `now`, if any (its call may have ended).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Ticket)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// The tickets of every entry kept, in no order (for checks).
    pub(crate) fn tickets(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.heap.iter().map(|Reverse((_, ticket))| *ticket)
    }

    /// Forgets every deadline.
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }

    /// How many entries are kept, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Gives back memory after a flood drained.
    pub(crate) fn shrink(&mut self, floor: usize) {
        if self.heap.capacity() > floor && self.heap.len() < self.heap.capacity() / 8 {
            self.heap.shrink_to(floor.max(self.heap.len() * 2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_entries_come_out_earliest_first_and_not_before_time() {
        let now = Instant::now();
        let mut deadlines = Deadlines::default();
        for (ms, ticket) in [(30, 3), (10, 1), (20, 2)] {
            deadlines.insert(now + Duration::from_millis(ms), Ticket(ticket), 3, |_| true);
        }
        assert_eq!(deadlines.first(), Some(now + Duration::from_millis(10)));
        assert_eq!(deadlines.pop_due(now), None);
        let later = now + Duration::from_millis(25);
        let due: Vec<u64> = std::iter::from_fn(|| deadlines.pop_due(later))
            .map(|(_, t)| t.0)
            .collect();
        assert_eq!(due, [1, 2]);
        assert_eq!(deadlines.len(), 1);
    }

    #[test]
    fn stale_entries_are_swept_once_they_outnumber_the_live_calls() {
        let now = Instant::now();
        let mut deadlines = Deadlines::default();
        // Only even tickets are still held.
        for ticket in 0..(2 * SLACK as u64) {
            deadlines.insert(now, Ticket(ticket), 1, |t| t.0 % 2 == 0);
        }
        assert!(deadlines.len() <= 2 + SLACK + 1, "{}", deadlines.len());
        let left: Vec<u64> = std::iter::from_fn(|| deadlines.pop_due(now))
            .map(|(_, t)| t.0)
            .collect();
        assert!(left.iter().filter(|t| *t % 2 == 1).count() < SLACK);
        assert!(!left.is_empty());
    }
}
