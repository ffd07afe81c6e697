//! Replies a client is not reading fast enough: held by the broker within a byte budget.
//!
//! libzmq queues at most `client_send_hwm` messages for one client and says nothing
//! when they drain; a refused send (`EAGAIN`) is the only sign that a client is not
//! reading. The replies refused that way wait here, counted in bytes, and are offered
//! to the socket again on every turn of the loop. A client over its budget, or all of
//! them over the broker's, loses the replies that do not fit (dropped and counted).

use std::collections::{HashMap, VecDeque};

use switchboard_protocol::Frame;

/// One reply message waiting: its frames (identity first) and how many replies it carries.
struct Waiting {
    frames: Vec<Frame>,
    replies: usize,
    bytes: usize,
}

/// The replies waiting for one client, and their bytes.
#[derive(Default)]
struct Client {
    queue: VecDeque<Waiting>,
    bytes: usize,
}

/// The replies waiting for each slow client, within per-client and total byte budgets.
pub(crate) struct Backlogs {
    clients: HashMap<Vec<u8>, Client, ahash::RandomState>,
    total: usize,
    per_client: usize,
    limit: usize,
}

/// What happened to a reply offered to [`Backlogs::hold`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// It waits for its client.
    Waiting,
    /// It did not fit: this many replies are lost.
    Dropped(usize),
}

impl Backlogs {
    /// Empty, with `per_client` bytes for each client and `limit` bytes in all.
    pub(crate) fn new(per_client: usize, limit: usize) -> Backlogs {
        Backlogs {
            clients: HashMap::default(),
            total: 0,
            per_client,
            limit,
        }
    }

    /// Whether no reply waits (the usual case: nothing to look up per send).
    pub(crate) fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Drops every waiting reply; returns how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let replies = self
            .clients
            .values()
            .flat_map(|c| &c.queue)
            .map(|w| w.replies)
            .sum();
        self.clients.clear();
        self.total = 0;
        replies
    }

    /// Whether replies wait for the client of these frames (a new reply must queue behind).
    pub(crate) fn has(&self, frames: &[Frame]) -> bool {
        frames
            .first()
            .is_some_and(|id| self.clients.contains_key(&id[..]))
    }

    /// Keeps a reply message for its client if it fits both budgets.
    pub(crate) fn hold(&mut self, frames: Vec<Frame>, replies: usize) -> Held {
        let Some(id) = frames.first().map(|f| f.to_vec()) else {
            return Held::Dropped(replies);
        };
        let bytes: usize = frames.iter().map(|f| f.len()).sum();
        let used = self.clients.get(&id).map_or(0, |c| c.bytes);
        if used + bytes > self.per_client || self.total + bytes > self.limit {
            return Held::Dropped(replies);
        }
        self.total += bytes;
        let client = self.clients.entry(id).or_default();
        client.bytes += bytes;
        client.queue.push_back(Waiting {
            frames,
            replies,
            bytes,
        });
        Held::Waiting
    }

    /// Offers every waiting reply to `send`, oldest first per client, until it refuses
    /// one: `Ok` sent, `Err(Some(frames))` not now (kept), `Err(None)` never (the client
    /// is gone: its backlog is dropped). Returns how many replies were dropped.
    pub(crate) fn drain(
        &mut self,
        mut send: impl FnMut(Vec<Frame>) -> Result<(), Option<Vec<Frame>>>,
    ) -> usize {
        let mut dropped = 0;
        let total = &mut self.total;
        self.clients.retain(|_, client| {
            while let Some(waiting) = client.queue.pop_front() {
                let (bytes, replies) = (waiting.bytes, waiting.replies);
                match send(waiting.frames) {
                    Ok(()) => {
                        client.bytes -= bytes;
                        *total -= bytes;
                    }
                    Err(Some(frames)) => {
                        client.queue.push_front(Waiting {
                            frames,
                            replies,
                            bytes,
                        });
                        return true;
                    }
                    Err(None) => {
                        dropped += replies + client.queue.iter().map(|w| w.replies).sum::<usize>();
                        *total -= client.bytes;
                        return false;
                    }
                }
            }
            false
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: &[u8], size: usize) -> Vec<Frame> {
        vec![Frame::from(id), Frame::from(vec![0u8; size])]
    }

    #[test]
    fn a_slow_clients_replies_wait_within_its_budget_and_leave_in_order() {
        let mut backlogs = Backlogs::new(1_000, 1_500);
        assert_eq!(backlogs.hold(reply(b"a", 400), 1), Held::Waiting);
        assert_eq!(backlogs.hold(reply(b"a", 400), 2), Held::Waiting);
        // Over a's budget (801 + 400 > 1 000): dropped; b still has room.
        assert_eq!(backlogs.hold(reply(b"a", 400), 3), Held::Dropped(3));
        assert_eq!(backlogs.hold(reply(b"b", 500), 1), Held::Waiting);
        // Over the total (1 303 + 300 > 1 500).
        assert_eq!(backlogs.hold(reply(b"c", 300), 1), Held::Dropped(1));
        assert!(backlogs.has(&reply(b"a", 1)) && !backlogs.has(&reply(b"c", 1)));
        // a's socket takes one message, then refuses; b is gone.
        let mut taken = Vec::new();
        let dropped = backlogs.drain(|frames| match &frames[0][..] {
            b"a" if taken.is_empty() => {
                taken.push(frames[1].len());
                Ok(())
            }
            b"a" => Err(Some(frames)),
            _ => Err(None),
        });
        assert_eq!(dropped, 1, "b's one reply");
        assert_eq!(taken, [400]);
        assert!(backlogs.has(&reply(b"a", 1)) && !backlogs.has(&reply(b"b", 1)));
        assert_eq!(backlogs.drain(|_| Ok(())), 0);
        assert!(backlogs.is_empty());
        assert_eq!(backlogs.total, 0);
        // Closing with replies still waiting: they are counted, not lost silently.
        assert_eq!(backlogs.hold(reply(b"d", 10), 4), Held::Waiting);
        assert_eq!(backlogs.clear(), 4);
        assert!(backlogs.is_empty());
    }
}
