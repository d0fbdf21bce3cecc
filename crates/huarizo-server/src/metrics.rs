//! Prometheus metrics: requests, tokens, queue depth, latencies.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A latency histogram.
#[derive(Default)]
pub struct Histogram {
    inner: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    /// Records one observation, in seconds.
    pub fn observe(&self, seconds: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.is_empty() {
            g.0 = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                g.0[i] += 1;
            }
        }
        g.1 += seconds;
        g.2 += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let n = g.0.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", g.2);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", g.1, g.2);
    }
}

/// Every figure the server exports.
#[derive(Default)]
pub struct Metrics {
    /// Responses by (route, status).
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Prompt tokens computed (reused prefixes excluded).
    pub prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Requests waiting for a slot.
    pub queue_depth: AtomicUsize,
    /// Requests being decoded.
    pub active: AtomicUsize,
    /// Requests refused because the queue was full.
    pub rejected: AtomicU64,
    /// Generations dropped because the client went away.
    pub cancelled: AtomicU64,
    /// Batched forward steps run.
    pub steps: AtomicU64,
    /// Time from arrival to the first generated token.
    pub ttft: Histogram,
    /// Time from arrival to the last byte of the response.
    pub latency: Histogram,
}

impl Metrics {
    /// Counts one response.
    pub fn count_response(&self, route: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_string(), status)).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP huarizo_requests_total HTTP responses by route and status.\n");
        out.push_str("# TYPE huarizo_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "huarizo_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let counters = [
            (
                "huarizo_prompt_tokens_total",
                "Prompt tokens computed (reused prefixes excluded).",
                self.prompt_tokens.load(Relaxed),
            ),
            (
                "huarizo_generated_tokens_total",
                "Tokens generated.",
                self.generated_tokens.load(Relaxed),
            ),
            (
                "huarizo_rejected_requests_total",
                "Requests refused with 429 because the queue was full.",
                self.rejected.load(Relaxed),
            ),
            (
                "huarizo_cancelled_requests_total",
                "Generations stopped because the client disconnected.",
                self.cancelled.load(Relaxed),
            ),
            (
                "huarizo_batch_steps_total",
                "Batched forward passes run.",
                self.steps.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let gauges = [
            (
                "huarizo_queue_depth",
                "Requests waiting for a slot.",
                self.queue_depth.load(Relaxed),
            ),
            (
                "huarizo_active_requests",
                "Requests being decoded.",
                self.active.load(Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.ttft.render(
            &mut out,
            "huarizo_time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token.",
        );
        self.latency.render(
            &mut out,
            "huarizo_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
        );
        out
    }
}
