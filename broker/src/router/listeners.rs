//! Clients that asked to hear this broker's NOTICEs (header key `notices`): the return
//! address of each, so that a broker that begins to stop can tell every one of them at
//! once (PROTOCOL.md 4.11) instead of each learning it from a SHUTTING_DOWN answer.

use crate::route::ReplyRoute;

use super::Map;

/// Most clients remembered; beyond, the less recently seen half is forgotten.
const MAX_LISTENERS: usize = 16_384;

/// Return addresses of clients that asked for notices, with when each was last seen.
#[derive(Default)]
pub(crate) struct Listeners {
    /// By envelope (its frames, each prefixed with its length): a sequence number of
    /// when it was last seen, and a route back to it with an empty header frame.
    seen: Map<Box<[u8]>, (u64, ReplyRoute)>,
    next: u64,
}

impl Listeners {
    /// A call from the client at `route` asked for notices.
    pub(crate) fn note(&mut self, route: &ReplyRoute) {
        let envelope = route.envelope();
        let mut key = Vec::with_capacity(envelope.iter().map(|f| f.len() + 4).sum());
        for frame in &envelope {
            key.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            key.extend_from_slice(frame);
        }
        self.next += 1;
        if let Some(entry) = self.seen.get_mut(&key[..]) {
            entry.0 = self.next;
            return;
        }
        if self.seen.len() >= MAX_LISTENERS {
            let mut ages: Vec<u64> = self.seen.values().map(|(seen, _)| *seen).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.seen.retain(|_, (seen, _)| *seen > cut);
        }
        self.seen.insert(
            key.into_boxed_slice(),
            (self.next, ReplyRoute::new(&envelope, &[])),
        );
    }

    /// How many clients are remembered.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Every route remembered (each once), forgetting them.
    pub(crate) fn take(&mut self) -> Vec<ReplyRoute> {
        std::mem::take(&mut self.seen)
            .into_values()
            .map(|(_, route)| route)
            .collect()
    }
}
