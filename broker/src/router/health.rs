//! Outlier ejection: a worker whose calls of a function fail far more often than the
//! same function's calls on its peers is taken out of that function's rotation for a
//! while, in the spirit of Envoy's outlier detection.
//!
//! Each (worker, function) keeps its last [`WINDOW`] outcomes (a call that returned a
//! result, or FUNCTION_ERROR; other codes are the caller's doing and are not counted).
//! When its failure rate is at least [`EJECT_RATE`] over at least [`MIN_SAMPLES`] calls,
//! and exceeds the mean rate of its peers (hosts with [`MIN_PEER_SAMPLES`] calls) by
//! [`OUTLIER_MARGIN`], it is ejected — unless half of the function's hosts already are —
//! for [`BASE_EJECTION`] doubled per ejection in a row (at most [`MAX_EJECTION`]). It then
//! comes back with an empty window (probed by the next calls), and a full window without
//! failure forgets its past ejections. A function with one host is never ejected: there
//! would be nowhere else to send its calls.

use std::time::{Duration, Instant};

/// Outcomes remembered per (worker, function).
pub(crate) const WINDOW: u32 = 32;
/// Calls needed before a host can be judged.
pub(crate) const MIN_SAMPLES: u32 = 10;
/// Calls a peer needs to count in the comparison.
pub(crate) const MIN_PEER_SAMPLES: u32 = 5;
/// Failure rate at which a host may be ejected.
pub(crate) const EJECT_RATE: f64 = 0.5;
/// How much worse than its peers' mean a host must be.
pub(crate) const OUTLIER_MARGIN: f64 = 0.4;
/// The first ejection's length.
pub(crate) const BASE_EJECTION: Duration = Duration::from_secs(5);
/// The longest ejection.
pub(crate) const MAX_EJECTION: Duration = Duration::from_secs(80);

/// How one worker's calls of one function have gone lately.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    /// The last outcomes, newest in bit 0: 1 for a failure.
    recent: u32,
    /// How many of those bits hold an outcome (at most [`WINDOW`]).
    count: u32,
    /// Ejected until this instant.
    ejected_until: Option<Instant>,
    /// Ejections in a row (the next one lasts longer).
    ejections: u32,
}

impl Health {
    /// Records one call's outcome.
    pub(crate) fn record(&mut self, failed: bool) {
        self.recent = (self.recent << 1) | u32::from(failed);
        self.count = (self.count + 1).min(WINDOW);
        if self.count == WINDOW && self.recent == 0 {
            self.ejections = 0;
        }
    }

    /// The failure rate over the window, once it holds `min` outcomes.
    pub(crate) fn failure_rate(&self, min: u32) -> Option<f64> {
        (self.count >= min).then(|| f64::from(self.recent.count_ones()) / f64::from(self.count))
    }

    /// Whether calls of this function stay away from this worker.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected_until.is_some()
    }

    /// Takes the worker out of rotation from `now`; returns for how long.
    pub(crate) fn eject(&mut self, now: Instant) -> Duration {
        let length = BASE_EJECTION
            .saturating_mul(1 << self.ejections.min(4))
            .min(MAX_EJECTION);
        self.ejected_until = Some(now + length);
        self.ejections += 1;
        self.recent = 0;
        self.count = 0;
        length
    }

    /// Ends the ejection once its time is up; says whether it did.
    pub(crate) fn readmit(&mut self, now: Instant) -> bool {
        if self.ejected_until.is_some_and(|until| until <= now) {
            self.ejected_until = None;
            return true;
        }
        false
    }
}

/// Whether a host with failure rate `rate` is an outlier against its peers' rates.
pub(crate) fn is_outlier(rate: f64, peers: &[f64]) -> bool {
    if rate < EJECT_RATE || peers.is_empty() {
        return false;
    }
    let mean = peers.iter().sum::<f64>() / peers.len() as f64;
    rate - mean >= OUTLIER_MARGIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_old_outcomes_and_a_clean_window_forgets_ejections() {
        let mut health = Health::default();
        for _ in 0..MIN_SAMPLES - 1 {
            health.record(true);
        }
        assert_eq!(health.failure_rate(MIN_SAMPLES), None, "too few calls");
        health.record(true);
        assert_eq!(health.failure_rate(MIN_SAMPLES), Some(1.0));
        let now = Instant::now();
        assert_eq!(health.eject(now), BASE_EJECTION);
        assert_eq!(health.eject(now), BASE_EJECTION * 2, "longer in a row");
        assert!(!health.readmit(now) && health.is_ejected());
        assert!(health.readmit(now + BASE_EJECTION * 2) && !health.is_ejected());
        for _ in 0..WINDOW {
            health.record(false);
        }
        assert_eq!(
            health.eject(now),
            BASE_EJECTION,
            "a clean window resets the back-off"
        );
    }

    #[test]
    fn an_outlier_is_much_worse_than_its_peers() {
        assert!(is_outlier(1.0, &[0.0, 0.1, 0.0]));
        assert!(!is_outlier(1.0, &[]), "no peer to compare with");
        assert!(
            !is_outlier(0.6, &[0.5, 0.6]),
            "everyone fails: the function, not the host"
        );
        assert!(!is_outlier(0.3, &[0.0]), "below the ejection rate");
    }
}
