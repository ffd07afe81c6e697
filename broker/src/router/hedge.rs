//! Hedged calls: a retry-safe call that has run its function's `hedge_ms` without an
//! answer gets a second attempt (the *hedge*, a call of its own with its own ticket) on
//! another free worker. The first answer wins; the other copy is cancelled and its reply
//! dropped. Hedges are throttled to about three in ten accepted calls (plus a burst of
//! ten): hedging adds at most about 30 % to the work.

use std::sync::Arc;
use std::time::Instant;

use switchboard_protocol::worker::Ticket;
use switchboard_protocol::Frame;

use super::calls::{Call, Origin, Place};
use super::{start, Action, Router, WorkerId};

/// Hedge budget earned per accepted call: at most about three calls in ten are hedged,
/// so hedging adds at most 30 % to the work (plus a burst).
pub(super) const HEDGE_SHARE: f64 = 0.3;
/// Most hedges that may be sent in a burst.
pub(super) const HEDGE_BURST: f64 = 10.0;

impl Router {
    /// A call's hedge time came: if it still waits for its answer, a second attempt goes
    /// to another worker with a free place (none free, or the budget spent: no hedge).
    pub(super) fn hedge_due(&mut self, ticket: Ticket, now: Instant, out: &mut Vec<Action>) {
        let Some(call) = self.calls.get(ticket) else {
            return;
        };
        if call.origin.is_none() || call.hedge.is_some() || call.parent.is_some() {
            return;
        }
        let Place::Running {
            worker: primary, ..
        } = &call.place
        else {
            return;
        };
        // The copy kept because the holding worker said the function is retry-safe.
        let Some(body) = call.body.as_ref().map(|b| Frame::from(&b[..])) else {
            return;
        };
        let Some(entry) = self.functions.get(&call.function) else {
            return;
        };
        let others: Vec<WorkerId> = entry
            .hosts
            .iter()
            .filter(|h| *h != primary)
            .cloned()
            .collect();
        let Some(worker) = self.workers.pick(&others, &call.function) else {
            return;
        };
        if self.hedge_budget < 1.0 {
            self.stats.hedges_throttled += 1;
            return;
        }
        self.hedge_budget -= 1.0;
        let mut hedge = Box::new(Call {
            origin: None,
            id: call.id,
            function: Arc::clone(&call.function),
            body: Some(body),
            deadline: call.deadline,
            place: Place::Queued,
            attempts: call.attempts,
            received: now,
            caller_key: None,
            hung_at: None,
            traceparent: call.traceparent.clone(),
            parent: Some(ticket),
            hedge: None,
            timings: false,
            wait: false,
            identified: call.identified,
        });
        let hedge_ticket = self.calls.next_ticket();
        let Router {
            workers, functions, ..
        } = self;
        start(
            workers,
            functions,
            hedge_ticket,
            &mut hedge,
            worker,
            now,
            out,
        );
        self.calls.insert(hedge_ticket, hedge);
        if let Some(caller) = self.calls.caller_of(ticket) {
            self.calls.identify(hedge_ticket, caller);
        }
        if let Some(call) = self.calls.get_mut(ticket) {
            call.hedge = Some(hedge_ticket);
        }
        self.stats.hedges += 1;
    }

    /// The hedge of `parent` answered first: it takes the parent's caller (returned with
    /// when the broker received the call and whether its caller asked for timings), and
    /// the parent's copy is released. `None` when the parent was answered already.
    pub(super) fn hedge_won(
        &mut self,
        parent: Ticket,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Option<(Origin, Instant, bool)> {
        let call = self.calls.get_mut(parent)?;
        call.hedge = None;
        let origin = call.origin.take()?;
        let (received, timings) = (call.received, call.timings);
        self.stats.hedges_won += 1;
        self.release_copy(parent, now, out);
        Some((origin, received, timings))
    }

    /// The call a hedge belongs to was answered: the hedge is released (its reply, if it
    /// comes, is dropped as late).
    pub(super) fn drop_hedge(&mut self, hedge: Ticket, now: Instant, out: &mut Vec<Action>) {
        if let Some(call) = self.calls.get_mut(hedge) {
            call.parent = None;
        }
        self.release_copy(hedge, now, out);
    }

    /// A call whose worker was lost, if hedging is involved: a lost hedge simply ends (its
    /// call goes on); a lost hedged call hands its caller to its hedge, which goes on.
    /// Returns whether it handled the call.
    pub(super) fn lost_with_hedge(&mut self, ticket: Ticket) -> bool {
        let Some(call) = self.calls.get(ticket) else {
            return false;
        };
        match (call.parent, call.hedge) {
            (Some(parent), _) => {
                self.calls.remove(ticket);
                if let Some(parent) = self.calls.get_mut(parent) {
                    parent.hedge = None;
                }
                true
            }
            (None, Some(hedge)) if call.origin.is_some() => {
                let mut call = self.calls.remove(ticket).expect("present");
                match self.calls.get_mut(hedge) {
                    Some(twin) => {
                        twin.parent = None;
                        twin.origin = call.origin.take();
                        twin.received = call.received;
                        twin.timings = call.timings;
                        // Its deadline entry was made when it was sent: same deadline.
                    }
                    None => return false,
                }
                true
            }
            _ => false,
        }
    }

    /// Earns hedge budget for one accepted call.
    pub(super) fn earn_hedge_budget(&mut self) {
        self.hedge_budget = (self.hedge_budget + HEDGE_SHARE).min(HEDGE_BURST);
    }
}
