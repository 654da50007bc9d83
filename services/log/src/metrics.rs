//! The process's Prometheus metrics (issue 17 item 4): counters and
//! histograms the log, the runtime, the intake, the failover service and
//! the API update where things happen, and [`encode`], which writes them in
//! the Prometheus text format (0.0.4) for `GET /metrics`.
//!
//! It lives in the lowest crate that counts something (the log counts its
//! appends). Every value is per process: a process running several nodes
//! (in-process tests) shows their sum. Hot paths touch atomics only: an
//! append adds one to the counter of its kind (an array indexed by
//! [`EventKind`], no lock, no allocation). Labelled series whose label
//! values are only known at run time (action and code, refusal reason,
//! failover reason, service) sit in a small map behind a mutex, taken once
//! per API call, refusal, promotion or checkpoint, never per event.
//!
//! [`METRICS`] describes every metric this module and the server's scrape
//! write, which the docs and the Grafana dashboard test check against.

use powernode_events::kinds::EventKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A metric's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (`_total`).
    Counter,
    /// A value now.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl MetricType {
    /// The name in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric: name, type, labels and meaning.
#[derive(Debug, Clone, Copy)]
pub struct MetricDesc {
    /// Full name (`powernode_…`).
    pub name: &'static str,
    /// Its type.
    pub kind: MetricType,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// What it means (the `# HELP` text).
    pub help: &'static str,
}

/// `powernode_action_duration_seconds`.
pub const ACTION_DURATION: MetricDesc = MetricDesc {
    name: "powernode_action_duration_seconds",
    kind: MetricType::Histogram,
    labels: &["action", "code"],
    help: "Time to answer an API action, by action and answered code (ok or the error code).",
};
/// `powernode_events_appended_total`.
pub const EVENTS_APPENDED: MetricDesc = MetricDesc {
    name: "powernode_events_appended_total",
    kind: MetricType::Counter,
    labels: &["kind"],
    help: "Events this process appended to the log (new records, not duplicates), by kind.",
};
/// `powernode_failovers_total`.
pub const FAILOVERS: MetricDesc = MetricDesc {
    name: "powernode_failovers_total",
    kind: MetricType::Counter,
    labels: &["reason"],
    help: "VIP promotions this process's failover service decided, by reason.",
};
/// `powernode_heartbeats_total`.
pub const HEARTBEATS: MetricDesc = MetricDesc {
    name: "powernode_heartbeats_total",
    kind: MetricType::Counter,
    labels: &[],
    help: "Agent heartbeats this process's intake received (answered or refused).",
};
/// `powernode_intake_refusals_total`.
pub const INTAKE_REFUSALS: MetricDesc = MetricDesc {
    name: "powernode_intake_refusals_total",
    kind: MetricType::Counter,
    labels: &["reason"],
    help:
        "Agent requests (enroll, heartbeat, submit) this process's intake refused, by refusal code.",
};
/// `powernode_checkpoint_duration_seconds`.
pub const CHECKPOINT_DURATION: MetricDesc = MetricDesc {
    name: "powernode_checkpoint_duration_seconds",
    kind: MetricType::Histogram,
    labels: &["service"],
    help: "Time to copy, encode and save a consumer's checkpoint, by service.",
};
/// `powernode_checkpoint_bytes`.
pub const CHECKPOINT_BYTES: MetricDesc = MetricDesc {
    name: "powernode_checkpoint_bytes",
    kind: MetricType::Gauge,
    labels: &["service"],
    help: "Size of the last checkpoint saved, by service.",
};
/// `powernode_consumer_lag_events` (written by the server's scrape).
pub const CONSUMER_LAG: MetricDesc = MetricDesc {
    name: "powernode_consumer_lag_events",
    kind: MetricType::Gauge,
    labels: &["service", "replica"],
    help: "Events between the log head and what the consumer applied, for each consumer this process runs.",
};
/// `powernode_consumer_applied_seq` (written by the server's scrape).
pub const CONSUMER_APPLIED: MetricDesc = MetricDesc {
    name: "powernode_consumer_applied_seq",
    kind: MetricType::Gauge,
    labels: &["service", "replica"],
    help: "The last log sequence the consumer applied.",
};
/// `powernode_log_head_seq` (written by the server's scrape).
pub const LOG_HEAD: MetricDesc = MetricDesc {
    name: "powernode_log_head_seq",
    kind: MetricType::Gauge,
    labels: &[],
    help: "The log's last sequence when scraped.",
};
/// `powernode_build_info`.
pub const BUILD_INFO: MetricDesc = MetricDesc {
    name: "powernode_build_info",
    kind: MetricType::Gauge,
    labels: &["version", "revision"],
    help: "Always 1: the version and git revision of this build.",
};

/// Every metric a scrape may show.
pub const METRICS: &[MetricDesc] = &[
    ACTION_DURATION,
    EVENTS_APPENDED,
    FAILOVERS,
    HEARTBEATS,
    INTAKE_REFUSALS,
    CHECKPOINT_DURATION,
    CHECKPOINT_BYTES,
    CONSUMER_LAG,
    CONSUMER_APPLIED,
    LOG_HEAD,
    BUILD_INFO,
];

/// Upper bounds (seconds) of the action latency buckets.
pub const ACTION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the checkpoint duration buckets.
pub const CHECKPOINT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram: a count per bucket (not cumulative; summed when encoded),
/// the sum in nanoseconds and the count. Atomics only.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these bucket bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn encode(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Series of one metric by label values, created on first use.
#[derive(Debug)]
struct Family<T> {
    series: Mutex<BTreeMap<Vec<String>, Arc<T>>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Self {
            series: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<T> Family<T> {
    fn get(&self, values: &[&str], make: impl FnOnce() -> T) -> Arc<T> {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .entry(key)
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    fn snapshot(&self) -> Vec<(Vec<String>, Arc<T>)> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The process's metrics.
struct Registry {
    appended: [AtomicU64; EventKind::ALL.len()],
    heartbeats: AtomicU64,
    actions: Family<Histogram>,
    failovers: Family<AtomicU64>,
    refusals: Family<AtomicU64>,
    checkpoints: Family<Histogram>,
    checkpoint_bytes: Family<AtomicU64>,
    revision: OnceLock<String>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        appended: [const { AtomicU64::new(0) }; EventKind::ALL.len()],
        heartbeats: AtomicU64::new(0),
        actions: Family::default(),
        failovers: Family::default(),
        refusals: Family::default(),
        checkpoints: Family::default(),
        checkpoint_bytes: Family::default(),
        revision: OnceLock::new(),
    })
}

/// An event of `kind` appended (a new record).
#[inline]
pub fn event_appended(kind: EventKind) {
    registry().appended[kind as usize].fetch_add(1, Ordering::Relaxed);
}

/// A heartbeat received by the intake.
#[inline]
pub fn heartbeat_received() {
    registry().heartbeats.fetch_add(1, Ordering::Relaxed);
}

/// An API action answered with `code` (`ok` or the error code) in `took`.
pub fn action_answered(action: &str, code: &str, took: Duration) {
    registry()
        .actions
        .get(&[action, code], || Histogram::new(ACTION_BUCKETS))
        .observe(took);
}

/// An agent request refused by the intake with `reason` (the refusal code).
pub fn intake_refused(reason: &str) {
    registry()
        .refusals
        .get(&[reason], || AtomicU64::new(0))
        .fetch_add(1, Ordering::Relaxed);
}

/// A VIP promotion decided, for `reason` (silence, manual, upgrade, drain…).
pub fn failover(reason: &str) {
    registry()
        .failovers
        .get(&[reason], || AtomicU64::new(0))
        .fetch_add(1, Ordering::Relaxed);
}

/// A checkpoint of `service` saved: how long it took and its size.
pub fn checkpoint_saved(service: &str, took: Duration, bytes: usize) {
    let r = registry();
    r.checkpoints
        .get(&[service], || Histogram::new(CHECKPOINT_BUCKETS))
        .observe(took);
    r.checkpoint_bytes
        .get(&[service], || AtomicU64::new(0))
        .store(bytes as u64, Ordering::Relaxed);
}

/// Sets the git revision `powernode_build_info` shows (the binary does,
/// at start; the first call wins). Without it: `unknown`.
pub fn set_revision(revision: &str) {
    let _ = registry().revision.set(revision.to_string());
}

/// The revision [`set_revision`] set, or `unknown`.
pub fn revision() -> &'static str {
    registry().revision.get().map_or("unknown", String::as_str)
}

/// Writes `# HELP` and `# TYPE` of `m`.
pub fn header(out: &mut String, m: &MetricDesc) {
    let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
    let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.as_str());
}

/// `name="value",…` with the values escaped as the text format wants.
pub fn labels(names: &[&str], values: &[&str]) -> String {
    let mut out = String::new();
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{n}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// One sample line: `name{labels} value`.
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Writes every metric this module keeps (all but the consumer and log
/// gauges, which the server's scrape adds) in the text format.
pub fn encode(out: &mut String) {
    let r = registry();

    header(out, &BUILD_INFO);
    let info = labels(BUILD_INFO.labels, &[env!("CARGO_PKG_VERSION"), revision()]);
    sample(out, BUILD_INFO.name, &info, 1);

    header(out, &ACTION_DURATION);
    for (values, h) in r.actions.snapshot() {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        h.encode(
            out,
            ACTION_DURATION.name,
            &labels(ACTION_DURATION.labels, &values),
        );
    }

    header(out, &EVENTS_APPENDED);
    for (kind, n) in EventKind::ALL.iter().zip(r.appended.iter()) {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            let l = labels(EVENTS_APPENDED.labels, &[kind.as_str()]);
            sample(out, EVENTS_APPENDED.name, &l, n);
        }
    }

    header(out, &HEARTBEATS);
    sample(
        out,
        HEARTBEATS.name,
        "",
        r.heartbeats.load(Ordering::Relaxed),
    );

    for (m, family) in [(&FAILOVERS, &r.failovers), (&INTAKE_REFUSALS, &r.refusals)] {
        header(out, m);
        for (values, n) in family.snapshot() {
            let l = labels(m.labels, &[values[0].as_str()]);
            sample(out, m.name, &l, n.load(Ordering::Relaxed));
        }
    }

    header(out, &CHECKPOINT_DURATION);
    for (values, h) in r.checkpoints.snapshot() {
        let l = labels(CHECKPOINT_DURATION.labels, &[values[0].as_str()]);
        h.encode(out, CHECKPOINT_DURATION.name, &l);
    }
    header(out, &CHECKPOINT_BYTES);
    for (values, n) in r.checkpoint_bytes.snapshot() {
        let l = labels(CHECKPOINT_BYTES.labels, &[values[0].as_str()]);
        sample(out, CHECKPOINT_BYTES.name, &l, n.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(3));
        let mut out = String::new();
        h.encode(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"0.1\"} 1\nx_bucket{a=\"b\",le=\"1\"} 2\n\
             x_bucket{a=\"b\",le=\"+Inf\"} 3\nx_sum{a=\"b\"} 3.55\nx_count{a=\"b\"} 3\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&["a", "b"], &["x\"y", "1\\2\n"]),
            "a=\"x\\\"y\",b=\"1\\\\2\\n\""
        );
    }

    #[test]
    fn appends_counted_by_kind_and_every_type_is_declared() {
        let kind = EventKind::ALL[0];
        event_appended(kind);
        action_answered("t_action", "ok", Duration::from_millis(3));
        let mut out = String::new();
        encode(&mut out);
        let line = format!(
            "powernode_events_appended_total{{kind=\"{}\"}}",
            kind.as_str()
        );
        assert!(out.contains(&line), "{out}");
        assert!(out.contains(
            "powernode_action_duration_seconds_count{action=\"t_action\",code=\"ok\"} 1"
        ));
        for name in out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap_or_default())
        {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                METRICS.iter().any(|m| m.name == name || m.name == base),
                "{name} is not declared"
            );
        }
    }
}
