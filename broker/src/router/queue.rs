//! One function's queue of waiting calls, oldest first.
//!
//! Deletion is lazy: a call that leaves from the middle (its deadline passed) is only
//! counted out, and its entry is dropped when it reaches the head or when dead entries
//! outnumber live ones. Callers see `push`, `head`, `pop_head` and `len`; they pass
//! `is_queued` (from the call table) to tell live entries from dead ones.

use std::collections::VecDeque;

use switchboard_protocol::worker::Ticket;

/// Dead entries tolerated beyond twice the live ones before a compaction.
const SLACK: usize = 16;

/// Tickets of one function's waiting calls.
#[derive(Debug, Default)]
pub(crate) struct CallQueue {
    tickets: VecDeque<Ticket>,
    /// Entries whose call still waits here.
    live: usize,
}

impl CallQueue {
    /// Adds a call at the back, or at the front when it is being retried.
    pub(crate) fn push(&mut self, ticket: Ticket, front: bool) {
        if front {
            self.tickets.push_front(ticket);
        } else {
            self.tickets.push_back(ticket);
        }
        self.live += 1;
    }

    /// How many calls wait.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The oldest waiting call, dropping dead entries before it.
    pub(crate) fn head(&mut self, is_queued: impl Fn(Ticket) -> bool) -> Option<Ticket> {
        if self.live == 0 {
            self.tickets.clear();
            return None;
        }
        while let Some(&head) = self.tickets.front() {
            if is_queued(head) {
                return Some(head);
            }
            self.tickets.pop_front();
        }
        None
    }

    /// Removes the call [`CallQueue::head`] returned.
    pub(crate) fn pop_head(&mut self) -> Option<Ticket> {
        let ticket = self.tickets.pop_front()?;
        self.live -= 1;
        Some(ticket)
    }

    /// Counts out a call that left from anywhere in the queue; its entry becomes dead.
    pub(crate) fn forget(&mut self, is_queued: impl Fn(Ticket) -> bool) {
        self.live -= 1;
        if self.tickets.len() > 2 * self.live + SLACK {
            self.tickets.retain(|t| is_queued(*t));
        }
    }

    /// Empties the queue, returning every entry (dead ones included).
    pub(crate) fn take_all(&mut self) -> VecDeque<Ticket> {
        self.live = 0;
        std::mem::take(&mut self.tickets)
    }

    /// Every entry, dead ones included (for checks).
    pub(crate) fn entries(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.tickets.iter().copied()
    }

    /// Gives back memory after a flood drained.
    pub(crate) fn shrink(&mut self, floor: usize) {
        let tickets = &mut self.tickets;
        if tickets.capacity() > floor && tickets.len() < tickets.capacity() / 8 {
            tickets.shrink_to(floor.max(tickets.len() * 2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_entries_are_skipped_at_the_head_and_compacted_when_many() {
        let mut queue = CallQueue::default();
        for t in 0..100 {
            queue.push(Ticket(t), false);
        }
        // Every call but the last left from the middle.
        let alive = |t: Ticket| t.0 == 99;
        for _ in 0..99 {
            queue.forget(alive);
        }
        assert_eq!(queue.len(), 1);
        assert!(queue.entries().count() <= 2 + SLACK);
        assert_eq!(queue.head(alive), Some(Ticket(99)));
        assert_eq!(queue.pop_head(), Some(Ticket(99)));
        assert_eq!((queue.len(), queue.head(alive)), (0, None));
    }

    #[test]
    fn retried_calls_go_first() {
        let mut queue = CallQueue::default();
        queue.push(Ticket(1), false);
        queue.push(Ticket(2), true);
        assert_eq!(queue.head(|_| true), Some(Ticket(2)));
    }
}
