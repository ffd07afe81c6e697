//! What the router shows of its state (`View`), for introspection and metrics.

use std::cmp::Reverse;

use switchboard_protocol::{FunctionInfo, WorkerListing};

use super::{functions, Router};
use crate::view::{FunctionSummary, RouterStats, View};

impl View for Router {
    fn functions(&self) -> Vec<FunctionSummary> {
        let mut list: Vec<_> = self
            .functions
            .iter()
            .map(|f| {
                let variants = self.variants(f);
                // A function no worker hosts yet (calls wait for one) has no announcement.
                let info = variants.first().map_or_else(
                    || FunctionInfo {
                        name: f.name.to_string(),
                        doc: String::new(),
                        signature: String::new(),
                        retry_safe: false,
                        inline: false,
                        hedge_ms: 0,
                    },
                    |v| v.0.clone(),
                );
                FunctionSummary {
                    info,
                    variants,
                    workers: f.hosts.len(),
                    queued: f.queue.len(),
                    running: f.running,
                }
            })
            .collect();
        list.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        list
    }

    fn workers(&self) -> Vec<WorkerListing> {
        self.workers.listing()
    }

    fn stats(&self) -> &RouterStats {
        &self.stats
    }

    fn worker_count(&self) -> usize {
        self.workers.len()
    }

    fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    fn auth_rejections(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.auth.frontend.load(Relaxed),
            self.auth.backend.load(Relaxed),
        )
    }
}

impl Router {
    /// What the hosts of a function announced, each distinct announcement once with its
    /// number of hosts, most common first (ties: the earliest host's first).
    pub(super) fn variants(&self, function: &functions::Function) -> Vec<(FunctionInfo, usize)> {
        let mut variants: Vec<(FunctionInfo, usize)> = Vec::new();
        let announced = function
            .hosts
            .iter()
            .filter_map(|id| self.workers.get(id)?.announced(&function.name));
        for info in announced {
            // Inline or not is how that worker runs it, not what the function is.
            let info = FunctionInfo {
                inline: false,
                hedge_ms: 0,
                ..info.clone()
            };
            match variants.iter_mut().find(|(v, _)| *v == info) {
                Some((_, count)) => *count += 1,
                None => variants.push((info, 1)),
            }
        }
        variants.sort_by_key(|v| Reverse(v.1));
        variants
    }
}
