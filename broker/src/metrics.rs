//! Prometheus metrics: counted by the socket loop from the calls the router reports
//! ended, rendered on request by the
//! official client library.
//!
//! Latency histograms use fixed buckets so that series from many brokers aggregate.

use std::collections::HashMap;

/// Maps updated on every call: a fast hasher (keys are function names and fixed outcome codes).
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::view::{CallEnded, FunctionSummary, View};

/// Upper bounds of the latency buckets, in seconds.
pub(crate) const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram with the fixed [`BUCKETS`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn observe(&mut self, seconds: f64) {
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
pub(crate) enum Socket {
    /// The client-facing socket.
    Frontend = 0,
    /// The worker-facing socket.
    Backend = 1,
}

/// Counters and histograms the router keeps for `/metrics`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    functions: Map<String, FunctionMetrics>,
    bytes_in: [u64; 2],
    bytes_out: [u64; 2],
}

impl Metrics {
    /// Records a call that ended, as the router reported it.
    pub(crate) fn call_ended(&mut self, ended: &CallEnded) {
        let entry = match self.functions.get_mut(&*ended.function) {
            Some(entry) => entry,
            None => self
                .functions
                .entry(ended.function.to_string())
                .or_default(),
        };
        *entry.outcomes.entry(ended.outcome).or_default() += 1;
        entry.latency.observe(ended.latency.as_secs_f64());
    }

    /// Counts bytes received on a socket.
    pub(crate) fn received(&mut self, socket: Socket, bytes: usize) {
        self.bytes_in[socket as usize] += bytes as u64;
    }

    /// Counts bytes sent on a socket.
    pub(crate) fn sent(&mut self, socket: Socket, bytes: usize) {
        self.bytes_out[socket as usize] += bytes as u64;
    }

    /// Renders everything in the OpenMetrics text format, through the official Prometheus
    /// client library (`prometheus-client`): the loop takes a snapshot of what it counts
    /// and the library writes it out.
    pub(crate) fn render(&self, router: &dyn View) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.snapshot(router)));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    fn snapshot(&self, router: &dyn View) -> Snapshot {
        let mut functions: Vec<(String, FunctionMetrics)> = self
            .functions
            .iter()
            .map(|(name, m)| (escape(name), m.clone()))
            .collect();
        functions.sort_by(|a, b| a.0.cmp(&b.0));
        let stats = router.stats();
        let mut broker_errors: Vec<(&'static str, u64)> =
            stats.broker_errors.iter().map(|(k, v)| (*k, *v)).collect();
        broker_errors.sort();
        Snapshot {
            functions,
            hosted: router
                .functions()
                .into_iter()
                .map(|mut f| {
                    f.info.name = escape(&f.info.name);
                    f
                })
                .collect(),
            workers: router.worker_count() as i64,
            in_flight: router.calls_in_progress() as i64,
            counters: [
                (
                    "switchboard_workers_lost",
                    "Workers declared lost (silent or unreachable).",
                    stats.workers_lost,
                ),
                (
                    "switchboard_retries",
                    "Calls re-dispatched after their worker was lost.",
                    stats.retries,
                ),
                (
                    "switchboard_late_replies",
                    "Worker replies nobody waited for any more.",
                    stats.late_replies,
                ),
                (
                    "switchboard_dropped_replies",
                    "Replies dropped because the client was gone or not reading.",
                    stats.dropped_replies,
                ),
                (
                    "switchboard_malformed_worker_messages",
                    "Malformed messages received from workers.",
                    stats.malformed_worker_messages,
                ),
                (
                    "switchboard_ejections",
                    "Worker and function pairs taken out of rotation for failing far more than their peers.",
                    stats.ejections,
                ),
                (
                    "switchboard_refused_late",
                    "Calls refused OVERLOADED because they would have been answered after their deadline.",
                    stats.refused_late,
                ),
                (
                    "switchboard_cancels_sent",
                    "CANCEL messages sent to workers.",
                    stats.cancels_sent,
                ),
            ],
            broker_errors,
            auth_rejections: {
                let (frontend, backend) = router.auth_rejections();
                [frontend, backend]
            },
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }
    }
}

/// Escapes a label value (backslash, quote, newline): `prometheus-client` writes `&str`
/// label values as they are, and function names may hold `"` or `\`.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Everything `/metrics` shows, copied out of the loop for the client library to encode.
#[derive(Debug)]
struct Snapshot {
    functions: Vec<(String, FunctionMetrics)>,
    hosted: Vec<FunctionSummary>,
    workers: i64,
    in_flight: i64,
    counters: [(&'static str, &'static str, u64); 8],
    broker_errors: Vec<(&'static str, u64)>,
    auth_rejections: [u64; 2],
    bytes_in: [u64; 2],
    bytes_out: [u64; 2],
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Counter names get their `_total` suffix from the library.
        let mut calls = encoder.encode_descriptor(
            "switchboard_calls",
            "Calls that ended, by function and outcome (ok or an error code).",
            None,
            MetricType::Counter,
        )?;
        for (name, metrics) in &self.functions {
            let mut outcomes: Vec<_> = metrics.outcomes.iter().collect();
            outcomes.sort();
            for (outcome, n) in outcomes {
                let labels = [("function", name.as_str()), ("outcome", *outcome)];
                calls
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        let mut durations = encoder.encode_descriptor(
            "switchboard_call_duration_seconds",
            "Time from the broker receiving a call to its reply, by function.",
            None,
            MetricType::Histogram,
        )?;
        for (name, metrics) in &self.functions {
            let h = &metrics.latency;
            let mut buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(h.counts).collect();
            let above = h.count - h.counts.iter().sum::<u64>();
            buckets.push((f64::MAX, above));
            durations
                .encode_family(&[("function", name.as_str())])?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
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
        for (metric, help, value) in per_function {
            let mut gauge = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for f in &self.hosted {
                gauge
                    .encode_family(&[("function", f.info.name.as_str())])?
                    .encode_gauge(&(value(f) as i64))?;
            }
        }
        for (metric, help, value) in [
            ("switchboard_workers", "Connected workers.", self.workers),
            (
                "switchboard_calls_in_flight",
                "Calls accepted and not finished (queued or running).",
                self.in_flight,
            ),
        ] {
            encoder
                .encode_descriptor(metric, help, None, MetricType::Gauge)?
                .encode_gauge(&value)?;
        }
        for (metric, help, value) in &self.counters {
            encoder
                .encode_descriptor(metric, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(value, None)?;
        }
        let mut errors = encoder.encode_descriptor(
            "switchboard_broker_errors",
            "Calls the broker answered with an error itself, by code (rejections, timeouts, lost workers).",
            None,
            MetricType::Counter,
        )?;
        for (code, n) in &self.broker_errors {
            errors
                .encode_family(&[("code", *code)])?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        for (metric, help, values) in [
            (
                "switchboard_auth_rejections",
                "Peers refused at the handshake (CURVE), by socket.",
                self.auth_rejections,
            ),
            (
                "switchboard_received_bytes",
                "Bytes received, by socket.",
                self.bytes_in,
            ),
            (
                "switchboard_sent_bytes",
                "Bytes sent, by socket.",
                self.bytes_out,
            ),
        ] {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Counter)?;
            for (socket, value) in ["frontend", "backend"].iter().zip(values) {
                family
                    .encode_family(&[("socket", *socket)])?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Router, RouterConfig};
    use std::time::Duration;

    fn ended(function: &str, outcome: &'static str, latency: Duration) -> CallEnded {
        CallEnded {
            function: function.into(),
            outcome,
            latency,
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_rendering() {
        let mut metrics = Metrics::default();
        metrics.call_ended(&ended("f", "ok", Duration::from_micros(300)));
        metrics.call_ended(&ended("f", "ok", Duration::from_millis(20)));
        metrics.call_ended(&ended("f", "TIMEOUT", Duration::from_secs(60)));
        let text = metrics.render(&Router::new(RouterConfig::default()));
        assert!(
            text.contains("switchboard_calls_total{function=\"f\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("switchboard_calls_total{function=\"f\",outcome=\"TIMEOUT\"} 1"));
        assert!(text
            .contains("switchboard_call_duration_seconds_bucket{le=\"0.0005\",function=\"f\"} 1"));
        assert!(text
            .contains("switchboard_call_duration_seconds_bucket{le=\"0.025\",function=\"f\"} 2"));
        assert!(
            text.contains("switchboard_call_duration_seconds_bucket{le=\"30.0\",function=\"f\"} 2")
        );
        assert!(
            text.contains("switchboard_call_duration_seconds_bucket{le=\"+Inf\",function=\"f\"} 3")
        );
        assert!(text.contains("switchboard_call_duration_seconds_count{function=\"f\"} 3"));
        assert!(
            text.contains("switchboard_auth_rejections_total{socket=\"frontend\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut metrics = Metrics::default();
        metrics.call_ended(&ended("a\"b\\c\nd", "ok", Duration::from_micros(1)));
        let text = metrics.render(&Router::new(RouterConfig::default()));
        assert!(text.contains(r#"function="a\"b\\c\nd""#), "{text}");
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
