//! Which broker a call goes to, when the client has several.
//!
//! [`Brokers`] holds one link per broker and makes the two decisions that span them:
//! a new call goes to a broker picked by power-of-two-choices on the calls each holds
//! ([`Brokers::choose`]), among the brokers that take calls (connected, not stopping);
//! and calls stranded on a broker that does not take calls — unsent while its connection
//! is down, or refused SHUTTING_DOWN by a broker that is stopping — move to one that does
//! ([`Brokers::move_stranded_calls`]). Calls a broker already holds stay there: their
//! fate is that session's (an idempotent call lost with its connection is queued again
//! there, and moves on from there). With one broker both decisions are trivial and cost
//! nothing.

use std::ops::{Index, IndexMut};

use crate::connection::BrokerLink;
use crate::session::Session;

/// Something that owns the session of one broker.
pub(crate) trait HasSession {
    /// The broker's session.
    fn session(&self) -> &Session;
    /// The broker's session, to change.
    fn session_mut(&mut self) -> &mut Session;
}

impl HasSession for BrokerLink {
    fn session(&self) -> &Session {
        &self.session
    }
    fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// The client's brokers, at least one.
pub(crate) struct Brokers<T> {
    links: Vec<T>,
    rng: fastrand::Rng,
}

impl<T: HasSession> Brokers<T> {
    /// Every broker's link (`links` must not be empty).
    pub(crate) fn new(links: Vec<T>) -> Brokers<T> {
        assert!(!links.is_empty(), "a client needs at least one broker");
        let mut brokers = Brokers {
            links,
            rng: fastrand::Rng::new(),
        };
        brokers.several_changed();
        brokers
    }

    /// How many brokers there are.
    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    /// The links, in the order they were given.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.links.iter()
    }

    /// The links, to change.
    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.links.iter_mut()
    }

    /// Adds a broker.
    pub(crate) fn push(&mut self, link: T) {
        self.links.push(link);
        self.several_changed();
    }

    /// Forgets the brokers that left the list and hold no call any more (at least one
    /// broker is always kept).
    pub(crate) fn drop_finished(&mut self) {
        let finished = |l: &T| l.session().is_retired() && l.session().load() == 0;
        if !self.links.iter().any(finished) || self.links.iter().all(finished) {
            return;
        }
        self.links.retain(|l| !finished(l));
        self.several_changed();
    }

    /// Whether the client has several brokers now: then every call keeps a copy of its
    /// request (a broker that refuses it unrun can be skipped) and asks for notices.
    pub(crate) fn several(&self) -> bool {
        self.links.len() > 1
    }

    fn several_changed(&mut self) {
        let brokers = self.links.len();
        for link in &mut self.links {
            link.session_mut().set_brokers(brokers);
        }
    }

    /// The first link whose session satisfies `found`.
    pub(crate) fn position(&self, found: impl Fn(&T) -> bool) -> Option<usize> {
        self.links.iter().position(found)
    }

    /// The broker a new call goes to: of two brokers picked at random among those that
    /// take calls, the one holding fewer calls. When none takes calls (every connection
    /// is down, or every broker is stopping), the least loaded of all: the call waits
    /// there and moves as soon as another broker takes calls.
    pub(crate) fn choose(&mut self) -> usize {
        if self.links.len() == 1 {
            return 0;
        }
        let load = |links: &[T], i: usize| links[i].session().load();
        let accepting: Vec<usize> = (0..self.links.len())
            .filter(|&i| self.links[i].session().accepting())
            .collect();
        match accepting.len() {
            0 => (0..self.links.len())
                .min_by_key(|&i| load(&self.links, i))
                .expect("at least one broker"),
            1 => accepting[0],
            n => {
                let first = self.rng.usize(..n);
                let second = (first + 1 + self.rng.usize(..n - 1)) % n;
                let (a, b) = (accepting[first], accepting[second]);
                if load(&self.links, b) < load(&self.links, a) {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// Moves every call waiting on a broker that does not take calls to one that does
    /// (chosen as for a new call). Nothing moves while no broker takes calls.
    pub(crate) fn move_stranded_calls(&mut self) {
        if self.links.len() == 1 || !self.links.iter().any(|l| l.session().accepting()) {
            return;
        }
        for from in 0..self.links.len() {
            let session = self.links[from].session();
            if session.accepting() || !session.has_movable() {
                continue;
            }
            for call in self.links[from].session_mut().take_movable() {
                let to = self.choose();
                self.links[to].session_mut().adopt(call);
            }
        }
    }
}

impl<T> Index<usize> for Brokers<T> {
    type Output = T;
    fn index(&self, index: usize) -> &T {
        &self.links[index]
    }
}

impl<T> IndexMut<usize> for Brokers<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        &mut self.links[index]
    }
}

#[cfg(test)]
mod tests;
