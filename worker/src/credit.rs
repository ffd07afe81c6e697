//! How a worker that serves several brokers splits its capacity among them.
//!
//! Each broker that moves capacity (it sends LOAD) reports how many calls wait there for
//! this worker's functions. The worker's slots go where the work is: every such broker
//! gets a share in proportion to the calls it has here and waiting there (plus one, so an
//! idle broker keeps a slot for the next call), out of what the other brokers do not
//! hold. A broker that does not move capacity keeps the share its READY announced; one
//! that is stopping, or not heard from since the connection opened, keeps only what it
//! holds. No socket, no clock: the worker's socket thread asks, then sends CAPACITY to
//! each broker whose share changed.

/// What one broker's conversation asks of the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Demand {
    /// A broker that moves capacity: calls this worker runs for it, and calls waiting
    /// there that it could take.
    Active {
        /// Calls held for that broker.
        held: u32,
        /// Calls waiting at that broker.
        backlog: u32,
    },
    /// Slots set aside for a broker that does not take part: the share its READY
    /// announced (a broker that never sent LOAD), or the calls it holds (a broker that
    /// is stopping or has not answered yet).
    Reserved(u32),
}

/// Each broker's share of `total` slots: `Some(capacity)` for an active broker, `None`
/// for one that keeps what it has. An active broker always gets at least one slot, so
/// the shares may add up to a little more than `total` when many brokers are active on a
/// worker with few slots (the worker's executor queue has room for that).
pub(crate) fn split(total: u32, demands: &[Demand]) -> Vec<Option<u32>> {
    let reserved: u64 = demands
        .iter()
        .map(|d| match d {
            Demand::Reserved(slots) => u64::from(*slots),
            Demand::Active { .. } => 0,
        })
        .sum();
    let available = u64::from(total).saturating_sub(reserved);
    let weight = |d: &Demand| match d {
        Demand::Active { held, backlog } => Some(u64::from(*held) + u64::from(*backlog) + 1),
        Demand::Reserved(_) => None,
    };
    let weights: u64 = demands.iter().filter_map(weight).sum();
    if weights == 0 {
        return vec![None; demands.len()];
    }
    // Largest remainder: floors first, then the slots left over to the largest fractions.
    let mut shares: Vec<Option<(u64, u64)>> = demands
        .iter()
        .map(|d| weight(d).map(|w| (available * w / weights, available * w % weights)))
        .collect();
    let given: u64 = shares.iter().flatten().map(|(floor, _)| floor).sum();
    let mut order: Vec<usize> = (0..shares.len()).filter(|&i| shares[i].is_some()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(shares[i].map_or(0, |(_, rest)| rest)));
    for &i in order.iter().take((available - given) as usize) {
        if let Some((floor, _)) = &mut shares[i] {
            *floor += 1;
        }
    }
    shares
        .into_iter()
        .map(|share| share.map(|(slots, _)| slots.clamp(1, u64::from(u32::MAX)) as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(held: u32, backlog: u32) -> Demand {
        Demand::Active { held, backlog }
    }

    #[test]
    fn idle_brokers_share_evenly() {
        assert_eq!(
            split(8, &[active(0, 0), active(0, 0), active(0, 0)]),
            vec![Some(3), Some(3), Some(2)]
        );
    }

    #[test]
    fn slots_follow_the_backlog_and_an_idle_broker_keeps_one() {
        let shares = split(8, &[active(2, 500), active(0, 0), active(0, 0)]);
        assert_eq!(shares, vec![Some(8), Some(1), Some(1)]);
        let shares = split(12, &[active(4, 4), active(4, 4), active(0, 0)]);
        assert_eq!(shares, vec![Some(6), Some(6), Some(1)]);
    }

    #[test]
    fn reserved_slots_are_not_given_away_and_keep_their_owner() {
        let shares = split(8, &[Demand::Reserved(3), active(0, 10), active(0, 10)]);
        assert_eq!(shares, vec![None, Some(3), Some(2)]);
        assert_eq!(shares.iter().flatten().sum::<u32>() + 3, 8);
        // Nothing active: nothing to change.
        assert_eq!(split(8, &[Demand::Reserved(8)]), vec![None]);
    }

    #[test]
    fn every_active_broker_keeps_a_slot_even_when_none_is_left() {
        assert_eq!(
            split(2, &[Demand::Reserved(2), active(0, 5), active(0, 0)]),
            vec![None, Some(1), Some(1)]
        );
    }
}
