//! Clients that asked to hear this broker's NOTICEs (header key `notices`): the return
//! address of each, so that a broker that begins to stop can tell every one of them at
//! once (PROTOCOL.md 4.11) instead of each learning it from a SHUTTING_DOWN answer.

use crate::route::ReplyRoute;

use super::Map;

/// Most clients remembered; beyond, the less recently seen half is forgotten.
const MAX_LISTENERS: usize = 16_384;

/// A caller as `ReplyRoute::caller` gives it: its envelope's frame count and packed bytes.
type CallerKey = (u8, Box<[u8]>);

/// Return addresses of clients that asked for notices, with when each was last seen.
#[derive(Default)]
pub(crate) struct Listeners {
    /// By caller (`ReplyRoute::caller`, the packed envelope): a sequence number of when
    /// it was last seen, and a route back to it with an empty header frame.
    seen: Map<CallerKey, (u64, ReplyRoute)>,
    next: u64,
}

impl Listeners {
    /// A call from the client at `route` asked for notices.
    pub(crate) fn note(&mut self, route: &ReplyRoute) {
        let (frames, packed) = route.caller();
        let key: CallerKey = (frames, Box::from(packed));
        self.next += 1;
        if let Some(entry) = self.seen.get_mut(&key) {
            entry.0 = self.next;
            return;
        }
        if self.seen.len() >= MAX_LISTENERS {
            let mut ages: Vec<u64> = self.seen.values().map(|(seen, _)| *seen).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.seen.retain(|_, (seen, _)| *seen > cut);
        }
        let back = ReplyRoute::new(&route.envelope(), &[]);
        self.seen.insert(key, (self.next, back));
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
