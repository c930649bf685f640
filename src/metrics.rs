//! Prometheus metrics: one registry, the handles the rest of kterm increments, and the text
//! encoding served at `/metrics`.
//!
//! Invariant: no series moves per keystroke or per output frame. Byte counters are added when
//! a client detaches or a session's output ends, so a poller learns volumes, not the timing of
//! what a user types (an echo per key would otherwise show their typing rhythm).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The labels of the warm pool's series: one pool per (namespace, profile).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub namespace: String,
    pub profile: String,
}

pub struct Metrics {
    registry: Registry,
    pub sessions_active: Gauge,
    pub sessions_created: Counter,
    pub session_create_failures: Counter,
    pub clients_attached: Gauge,
    pub attaches: Counter,
    pub input_bytes: Counter,
    pub output_bytes: Counter,
    pub pty_read_bytes: Counter,
    pub pool_warm: Family<PoolLabels, Gauge>,
    pub pool_target: Family<PoolLabels, Gauge>,
    pub pool_hits: Family<PoolLabels, Counter>,
    pub pool_misses: Family<PoolLabels, Counter>,
    pub pool_claim_seconds: Histogram,
    pub pool_create_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kterm");
        let m = Metrics {
            sessions_active: Gauge::default(),
            sessions_created: Counter::default(),
            session_create_failures: Counter::default(),
            clients_attached: Gauge::default(),
            attaches: Counter::default(),
            input_bytes: Counter::default(),
            output_bytes: Counter::default(),
            pty_read_bytes: Counter::default(),
            pool_warm: Family::default(),
            pool_target: Family::default(),
            pool_hits: Family::default(),
            pool_misses: Family::default(),
            pool_claim_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            pool_create_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            registry: Registry::default(),
        };
        registry.register(
            "sessions_active",
            "Sessions whose shell is running",
            m.sessions_active.clone(),
        );
        registry.register("sessions_created", "Sessions created", m.sessions_created.clone());
        registry.register(
            "session_create_failures",
            "Session creations that failed",
            m.session_create_failures.clone(),
        );
        registry.register(
            "clients_attached",
            "WebSocket clients attached now",
            m.clients_attached.clone(),
        );
        registry.register("attaches", "WebSocket attaches", m.attaches.clone());
        registry.register(
            "input_bytes",
            "Bytes from clients written to shells (counted when a client detaches)",
            m.input_bytes.clone(),
        );
        registry.register(
            "output_bytes",
            "Bytes of shell output sent to clients (counted when a client detaches)",
            m.output_bytes.clone(),
        );
        registry.register(
            "pty_read_bytes",
            "Bytes of output read from shells (counted when a session's output ends)",
            m.pty_read_bytes.clone(),
        );
        registry.register("pool_warm", "Warm sandboxes ready to be claimed", m.pool_warm.clone());
        registry.register(
            "pool_target",
            "How many warm sandboxes the pool aims to keep",
            m.pool_target.clone(),
        );
        registry.register("pool_hits", "Sessions that got a warm sandbox", m.pool_hits.clone());
        registry.register(
            "pool_misses",
            "New sandboxes made cold (pool empty)",
            m.pool_misses.clone(),
        );
        registry.register(
            "pool_claim_seconds",
            "Time to claim a warm sandbox",
            m.pool_claim_seconds.clone(),
        );
        registry.register(
            "pool_create_seconds",
            "Time to make a warm sandbox with its stub",
            m.pool_create_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
