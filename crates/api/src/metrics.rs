//! The counters behind `/metrics` and their Prometheus text format.
//!
//! Counters are plain atomics, and the few labelled ones sit behind short mutexes that are
//! touched once per request, so recording costs far less than the request itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use aiproxy_domain::unpoison;
use aiproxy_ratelimit::LimitKind;

const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

const LIMIT_KINDS: [LimitKind; 6] = [
    LimitKind::RequestsPerMinute,
    LimitKind::RequestsPerDay,
    LimitKind::TokensPerMinute,
    LimitKind::TokensPerDay,
    LimitKind::TotalTokens,
    LimitKind::ConcurrentRequests,
];

/// A cumulative histogram with fixed bounds, in seconds.
#[derive(Debug)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BOUNDS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BOUNDS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[derive(Debug, Default)]
struct ModelCounters {
    /// By endpoint and outcome.
    requests: BTreeMap<(&'static str, &'static str), u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// Everything `/metrics` reports that the HTTP layer counts itself.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Answers by route, then status. Keyed by the route alone so that counting a request
    /// whose route is known allocates nothing.
    http: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    /// Requests and tokens by model, under one lock.
    models: Mutex<BTreeMap<String, ModelCounters>>,
    refusals: [AtomicU64; LIMIT_KINDS.len()],
    upstream_latency: Histogram,
    time_to_first_token: Histogram,
    in_flight: AtomicI64,
    open_streams: AtomicI64,
}

impl Metrics {
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_finished(&self, route: &str, status: u16) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut http = unpoison(self.http.lock());
        let by_status = match http.get_mut(route) {
            Some(by_status) => by_status,
            None => http.entry(route.to_owned()).or_default(),
        };
        *by_status.entry(status).or_default() += 1;
    }

    pub(crate) fn refused(&self, kind: LimitKind) {
        if let Some(i) = LIMIT_KINDS.iter().position(|k| *k == kind) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn usage(
        &self,
        model: &str,
        endpoint: &'static str,
        status: &'static str,
        prompt: u64,
        completion: u64,
    ) {
        let mut models = unpoison(self.models.lock());
        let counters = match models.get_mut(model) {
            Some(counters) => counters,
            None => models.entry(model.to_owned()).or_default(),
        };
        *counters.requests.entry((endpoint, status)).or_default() += 1;
        counters.prompt_tokens += prompt;
        counters.completion_tokens += completion;
    }

    pub(crate) fn upstream_head(&self, elapsed: Duration) {
        self.upstream_latency.observe(elapsed);
    }

    pub(crate) fn first_token(&self, elapsed: Duration) {
        self.time_to_first_token.observe(elapsed);
    }

    pub(crate) fn stream_opened(&self) {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stream_closed(&self) {
        self.open_streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP aiproxy_http_requests_total Requests answered, by route and status.\n# TYPE aiproxy_http_requests_total counter\n");
        for (route, by_status) in unpoison(self.http.lock()).iter() {
            let route = escape(route);
            for (status, n) in by_status {
                let _ = writeln!(
                    out,
                    "aiproxy_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let models = unpoison(self.models.lock());
        out.push_str("# HELP aiproxy_model_requests_total Requests that reached Ollama, by model, endpoint and outcome.\n# TYPE aiproxy_model_requests_total counter\n");
        for (model, counters) in models.iter() {
            let model = escape(model);
            for ((endpoint, status), n) in &counters.requests {
                let _ = writeln!(
                    out,
                    "aiproxy_model_requests_total{{model=\"{model}\",endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP aiproxy_tokens_total Tokens accounted, by model and kind.\n# TYPE aiproxy_tokens_total counter\n");
        for (model, counters) in models.iter() {
            let model = escape(model);
            let _ = writeln!(
                out,
                "aiproxy_tokens_total{{model=\"{model}\",kind=\"prompt\"}} {}\naiproxy_tokens_total{{model=\"{model}\",kind=\"completion\"}} {}",
                counters.prompt_tokens, counters.completion_tokens
            );
        }
        drop(models);
        out.push_str("# HELP aiproxy_rate_limit_refusals_total Requests refused, by the limit that refused them.\n# TYPE aiproxy_rate_limit_refusals_total counter\n");
        for (kind, n) in LIMIT_KINDS.iter().zip(&self.refusals) {
            let _ = writeln!(
                out,
                "aiproxy_rate_limit_refusals_total{{limit=\"{}\"}} {}",
                kind.name(),
                n.load(Ordering::Relaxed)
            );
        }
        self.upstream_latency.render(
            &mut out,
            "aiproxy_upstream_response_seconds",
            "Time until Ollama's response head.",
        );
        self.time_to_first_token.render(
            &mut out,
            "aiproxy_time_to_first_token_seconds",
            "Time from admission to the first streamed token.",
        );
        let _ = writeln!(
            out,
            "# HELP aiproxy_in_flight_requests Requests being handled now.\n# TYPE aiproxy_in_flight_requests gauge\naiproxy_in_flight_requests {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP aiproxy_open_streams Streaming answers open now.\n# TYPE aiproxy_open_streams gauge\naiproxy_open_streams {}",
            self.open_streams.load(Ordering::Relaxed)
        );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
