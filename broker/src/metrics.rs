//! Prometheus metrics: counted by the router as calls end, rendered as text on request.
//!
//! Latency histograms use fixed buckets so that series from many brokers aggregate.

use std::collections::HashMap;

/// Maps updated on every call: a fast hasher (keys are function names and fixed outcome codes).
type Map<K, V> = HashMap<K, V, ahash::RandomState>;
use std::fmt::Write as _;
use std::time::Duration;

use crate::router::{FunctionSummary, Router};

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram with the fixed [`BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// What is counted per function.
#[derive(Debug, Clone, Default)]
struct FunctionMetrics {
    outcomes: Map<&'static str, u64>,
    latency: Histogram,
}

/// Which socket bytes were counted on.
#[derive(Debug, Clone, Copy)]
pub enum Socket {
    /// The client-facing socket.
    Frontend = 0,
    /// The worker-facing socket.
    Backend = 1,
}

/// Counters and histograms the router keeps for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    functions: Map<String, FunctionMetrics>,
    bytes_in: [u64; 2],
    bytes_out: [u64; 2],
}

impl Metrics {
    /// Records a call that ended: `outcome` is `"ok"` or an error code; `elapsed` since the broker received it.
    pub fn call_ended(&mut self, function: &str, outcome: &'static str, elapsed: Duration) {
        let entry = match self.functions.get_mut(function) {
            Some(entry) => entry,
            None => self.functions.entry(function.to_owned()).or_default(),
        };
        *entry.outcomes.entry(outcome).or_default() += 1;
        entry.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts bytes received on a socket.
    pub fn received(&mut self, socket: Socket, bytes: usize) {
        self.bytes_in[socket as usize] += bytes as u64;
    }

    /// Counts bytes sent on a socket.
    pub fn sent(&mut self, socket: Socket, bytes: usize) {
        self.bytes_out[socket as usize] += bytes as u64;
    }

    /// Renders everything in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, router: &Router) -> String {
        let mut out = String::with_capacity(4096);
        let mut names: Vec<&String> = self.functions.keys().collect();
        names.sort();

        header(
            &mut out,
            "switchboard_calls_total",
            "counter",
            "Calls that ended, by function and outcome (ok or an error code).",
        );
        for name in &names {
            let mut outcomes: Vec<_> = self.functions[*name].outcomes.iter().collect();
            outcomes.sort();
            for (outcome, n) in outcomes {
                let _ = writeln!(
                    out,
                    "switchboard_calls_total{{function=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(name)
                );
            }
        }

        header(
            &mut out,
            "switchboard_call_duration_seconds",
            "histogram",
            "Time from the broker receiving a call to its reply, by function.",
        );
        for name in &names {
            let h = &self.functions[*name].latency;
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                cumulative += count;
                let _ = writeln!(out, "switchboard_call_duration_seconds_bucket{{function=\"{}\",le=\"{bound}\"}} {cumulative}", escape(name));
            }
            let _ = writeln!(
                out,
                "switchboard_call_duration_seconds_bucket{{function=\"{}\",le=\"+Inf\"}} {}",
                escape(name),
                h.count
            );
            let _ = writeln!(
                out,
                "switchboard_call_duration_seconds_sum{{function=\"{}\"}} {}",
                escape(name),
                h.sum
            );
            let _ = writeln!(
                out,
                "switchboard_call_duration_seconds_count{{function=\"{}\"}} {}",
                escape(name),
                h.count
            );
        }

        let functions = router.functions();
        type PerFunction = fn(&FunctionSummary) -> usize;
        let per_function: [(&str, &str, PerFunction); 3] = [
            (
                "switchboard_queue_depth",
                "Calls waiting for a free worker, by function.",
                |f| f.queued,
            ),
            (
                "switchboard_calls_running",
                "Calls running on workers, by function.",
                |f| f.running,
            ),
            (
                "switchboard_function_workers",
                "Connected workers hosting each function.",
                |f| f.workers,
            ),
        ];
        for (name, help, value) in per_function {
            header(&mut out, name, "gauge", help);
            for f in &functions {
                let label = escape(&f.info.name);
                let _ = writeln!(out, "{name}{{function=\"{label}\"}} {}", value(f));
            }
        }

        let stats = router.stats();
        let gauges = [
            (
                "switchboard_workers",
                "Connected workers.",
                router.worker_count() as u64,
            ),
            (
                "switchboard_calls_in_flight",
                "Calls accepted and not finished (queued or running).",
                router.calls_in_progress() as u64,
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        let counters = [
            (
                "switchboard_workers_lost_total",
                "Workers declared lost (silent or unreachable).",
                stats.workers_lost,
            ),
            (
                "switchboard_retries_total",
                "Calls re-dispatched after their worker was lost.",
                stats.retries,
            ),
            (
                "switchboard_late_replies_total",
                "Worker replies nobody waited for any more.",
                stats.late_replies,
            ),
            (
                "switchboard_dropped_replies_total",
                "Replies dropped because the client was gone or not reading.",
                stats.dropped_replies,
            ),
            (
                "switchboard_malformed_worker_messages_total",
                "Malformed messages received from workers.",
                stats.malformed_worker_messages,
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(&mut out, "switchboard_broker_errors_total", "counter", "Calls the broker answered with an error itself, by code (rejections, timeouts, lost workers).");
        let mut errors: Vec<_> = stats.broker_errors.iter().collect();
        errors.sort();
        for (code, n) in errors {
            let _ = writeln!(
                out,
                "switchboard_broker_errors_total{{code=\"{code}\"}} {n}"
            );
        }
        for (name, help, values) in [
            (
                "switchboard_received_bytes_total",
                "Bytes received, by socket.",
                self.bytes_in,
            ),
            (
                "switchboard_sent_bytes_total",
                "Bytes sent, by socket.",
                self.bytes_out,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (socket, value) in ["frontend", "backend"].iter().zip(values) {
                let _ = writeln!(out, "{name}{{socket=\"{socket}\"}} {value}");
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouterConfig;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_rendering() {
        let mut metrics = Metrics::default();
        metrics.call_ended("f", "ok", Duration::from_micros(300));
        metrics.call_ended("f", "ok", Duration::from_millis(20));
        metrics.call_ended("f", "TIMEOUT", Duration::from_secs(60));
        let text = metrics.render(&Router::new(RouterConfig::default()));
        assert!(
            text.contains("switchboard_calls_total{function=\"f\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("switchboard_calls_total{function=\"f\",outcome=\"TIMEOUT\"} 1"));
        assert!(text
            .contains("switchboard_call_duration_seconds_bucket{function=\"f\",le=\"0.0005\"} 1"));
        assert!(text
            .contains("switchboard_call_duration_seconds_bucket{function=\"f\",le=\"0.025\"} 2"));
        assert!(
            text.contains("switchboard_call_duration_seconds_bucket{function=\"f\",le=\"30\"} 2")
        );
        assert!(
            text.contains("switchboard_call_duration_seconds_bucket{function=\"f\",le=\"+Inf\"} 3")
        );
        assert!(text.contains("switchboard_call_duration_seconds_count{function=\"f\"} 3"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
