//! Prometheus metrics of the milter service, in the text exposition format.
//!
//! A handful of counters and one histogram need no metrics crate: they are atomics
//! here, rendered by hand, and served by a minimal HTTP responder on a plain TCP
//! listener (`--metrics HOST:PORT`, path `/metrics`).

use super::accounts::StoreStats;
use super::budget::Budget;
use super::policy::Outcome;
use super::quarantine::{DbStats, KeeperStats, Told, Totals};
use super::release::Refusal;
use super::slots::EvictReason;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the scan-latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Scan times since the service started, for the admin API's summary: the
/// quantiles are read off the histogram, so each is the upper bound of its
/// bucket ([`LATENCY_BUCKETS`]), `None` beyond the largest.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Scans timed.
    pub count: u64,
    /// Their mean, in milliseconds (0 without scans).
    pub mean_ms: f64,
    /// Half the scans took at most this long, in milliseconds.
    pub p50_at_most_ms: Option<f64>,
    /// 99 % of the scans took at most this long, in milliseconds.
    pub p99_at_most_ms: Option<f64>,
}

/// Kinds of errors counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A peer sent a malformed, oversized or out-of-order packet.
    Protocol,
    /// A peer went silent past the read timeout, or could not be written to in time.
    Timeout,
    /// A peer disconnected in the middle of a message.
    Disconnect,
    /// A scan panicked or timed out (the fallback answered).
    Scan,
    /// The lock store failed.
    Store,
    /// A socket error.
    Io,
}

impl ErrorKind {
    /// Every kind, in metrics order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Protocol,
        ErrorKind::Timeout,
        ErrorKind::Disconnect,
        ErrorKind::Scan,
        ErrorKind::Store,
        ErrorKind::Io,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Disconnect => "disconnect",
            ErrorKind::Scan => "scan",
            ErrorKind::Store => "store",
            ErrorKind::Io => "io",
        }
    }
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    messages: [AtomicU64; Outcome::ALL.len()],
    errors: [AtomicU64; 6],
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    connections_total: AtomicU64,
    connections_active: AtomicI64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    locks_made: AtomicU64,
    rate_limited: AtomicU64,
    evicted: [AtomicU64; EvictReason::ALL.len()],
    refused_full: AtomicU64,
    model_refused: AtomicU64,
    /// Messages kept in the quarantine store, by what the MTA was told.
    kept: [AtomicU64; 3],
    /// Messages that could not be kept (answered with a TEMPFAIL).
    keep_failed: AtomicU64,
    keep_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    keep_count: AtomicU64,
    keep_sum_ns: AtomicU64,
    released: AtomicU64,
    release_refused: [AtomicU64; Refusal::KINDS.len()],
    /// The HTTP listener's counters.
    pub http: crate::http::metrics::HttpMetrics,
}

fn told_index(t: Told) -> usize {
    match t {
        Told::Hold => 0,
        Told::Discard => 1,
        Told::Reject => 2,
    }
}

impl Metrics {
    /// Counts a message let through by its release token.
    pub fn released(&self) {
        self.released.fetch_add(1, Relaxed);
    }

    /// Messages let through by their release token so far.
    pub fn released_count(&self) -> u64 {
        self.released.load(Relaxed)
    }

    /// Counts a release token that did not let its message through, by
    /// [`Refusal::kind`].
    pub fn release_refused(&self, kind: &str) {
        let i = Refusal::KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(Refusal::KINDS.len() - 1);
        self.release_refused[i].fetch_add(1, Relaxed);
    }

    /// Release tokens refused so far for `kind`.
    pub fn release_refusals(&self, kind: &str) -> u64 {
        Refusal::KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.release_refused[i].load(Relaxed))
    }

    /// Counts replacement model files the engine refused.
    pub fn model_refused(&self, n: u64) {
        self.model_refused.fetch_add(n, Relaxed);
    }

    /// Counts a decided message.
    pub fn message(&self, outcome: Outcome) {
        self.messages[outcome.index()].fetch_add(1, Relaxed);
    }

    /// Messages counted with `outcome` so far.
    pub fn messages(&self, outcome: Outcome) -> u64 {
        self.messages[outcome.index()].load(Relaxed)
    }

    /// Counts an error.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// Errors of `kind` so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Relaxed)
    }

    /// Records one scan's duration.
    pub fn scan_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The scan times so far, summarised.
    pub fn scan_latency_summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count = self.latency_count.load(Relaxed);
        let quantile = |q: f64| {
            let want = (q * count as f64).ceil() as u64;
            let mut cumulative = 0;
            for (i, n) in counts.iter().enumerate() {
                cumulative += n;
                if cumulative >= want.max(1) {
                    return Some(LATENCY_BUCKETS[i] * 1000.0);
                }
            }
            None
        };
        LatencySummary {
            count,
            mean_ms: if count == 0 {
                0.0
            } else {
                self.latency_sum_ns.load(Relaxed) as f64 / count as f64 / 1e6
            },
            p50_at_most_ms: if count == 0 { None } else { quantile(0.5) },
            p99_at_most_ms: if count == 0 { None } else { quantile(0.99) },
        }
    }

    /// A connection opened.
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
    }

    /// A connection closed.
    pub fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Relaxed);
    }

    /// Connections open now.
    pub fn connections_active(&self) -> i64 {
        self.connections_active.load(Relaxed)
    }

    /// Counts a connection closed to give its slot to a new one.
    pub fn connection_evicted(&self, reason: EvictReason) {
        self.evicted[reason as usize].fetch_add(1, Relaxed);
    }

    /// Connections closed for `reason` so far.
    pub fn connections_evicted(&self, reason: EvictReason) -> u64 {
        self.evicted[reason as usize].load(Relaxed)
    }

    /// Counts a new connection closed at once because every slot was taken and
    /// none could be freed.
    pub fn connection_refused(&self) {
        self.refused_full.fetch_add(1, Relaxed);
    }

    /// New connections refused so far.
    pub fn connections_refused(&self) -> u64 {
        self.refused_full.load(Relaxed)
    }

    /// Counts a reload.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Relaxed);
        }
    }

    /// Counts a message kept in the quarantine store, and the time the store
    /// took (from handing it over to its durable commit).
    pub fn kept(&self, told: Told, took: Duration) {
        self.kept[told_index(told)].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.keep_buckets[i].fetch_add(1, Relaxed);
        }
        self.keep_count.fetch_add(1, Relaxed);
        self.keep_sum_ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Messages kept so far, by what the MTA was told.
    pub fn kept_count(&self, told: Told) -> u64 {
        self.kept[told_index(told)].load(Relaxed)
    }

    /// Counts a message that could not be kept.
    pub fn keep_failed(&self) {
        self.keep_failed.fetch_add(1, Relaxed);
    }

    /// Messages that could not be kept so far.
    pub fn keep_failures(&self) -> u64 {
        self.keep_failed.load(Relaxed)
    }

    /// Renders the state store's metrics: messages kept and failed, the time
    /// to keep one, the quarantine's totals (when readable), the file's health
    /// and the writer's counters.
    pub fn render_state(&self, db: DbStats, keeper: KeeperStats, totals: Option<Totals>) -> String {
        let mut s = String::with_capacity(2048);
        let _ = writeln!(
            s,
            "# HELP chaff_milter_quarantine_kept_total Messages kept in the quarantine store, \
             by what the MTA was told.\n# TYPE chaff_milter_quarantine_kept_total counter"
        );
        for t in [Told::Hold, Told::Discard, Told::Reject] {
            let _ = writeln!(
                s,
                "chaff_milter_quarantine_kept_total{{told=\"{}\"}} {}",
                t.as_str(),
                self.kept_count(t)
            );
        }
        let _ = writeln!(
            s,
            "# HELP chaff_milter_quarantine_store_failures_total Messages that could not be kept \
             (answered 451 4.3.0, never DISCARD).\n\
             # TYPE chaff_milter_quarantine_store_failures_total counter\n\
             chaff_milter_quarantine_store_failures_total {}",
            self.keep_failures()
        );
        let _ = writeln!(
            s,
            "# HELP chaff_milter_quarantine_store_seconds Time from handing a message to the \
             store to its durable commit.\n# TYPE chaff_milter_quarantine_store_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.keep_buckets[i].load(Relaxed);
            let _ = writeln!(
                s,
                "chaff_milter_quarantine_store_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.keep_count.load(Relaxed);
        let _ = writeln!(
            s,
            "chaff_milter_quarantine_store_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             chaff_milter_quarantine_store_seconds_sum {}\n\
             chaff_milter_quarantine_store_seconds_count {count}",
            self.keep_sum_ns.load(Relaxed) as f64 / 1e9
        );
        if let Some(t) = totals {
            let _ = writeln!(
                s,
                "# HELP chaff_milter_quarantine_entries Entries in the quarantine store.\n\
                 # TYPE chaff_milter_quarantine_entries gauge\n\
                 chaff_milter_quarantine_entries {}\n\
                 # HELP chaff_milter_quarantine_bytes Bytes of kept (compressed) messages.\n\
                 # TYPE chaff_milter_quarantine_bytes gauge\n\
                 chaff_milter_quarantine_bytes {}",
                t.entries, t.bytes
            );
        }
        let _ = writeln!(
            s,
            "# HELP chaff_milter_state_store_healthy 1 while the state store's file is usable.\n\
             # TYPE chaff_milter_state_store_healthy gauge\n\
             chaff_milter_state_store_healthy {}\n\
             # HELP chaff_milter_state_store_errors_total I/O failures of the state store.\n\
             # TYPE chaff_milter_state_store_errors_total counter\n\
             chaff_milter_state_store_errors_total {}\n\
             # HELP chaff_milter_state_store_commits_total Group commits of kept messages.\n\
             # TYPE chaff_milter_state_store_commits_total counter\n\
             chaff_milter_state_store_commits_total {}\n\
             # HELP chaff_milter_history_dropped_total Scan records not written (the store was \
             unusable).\n\
             # TYPE chaff_milter_history_dropped_total counter\n\
             chaff_milter_history_dropped_total {}\n\
             # HELP chaff_milter_quarantine_retained_out_total Entries dropped by retention \
             (max_age, max_bytes).\n\
             # TYPE chaff_milter_quarantine_retained_out_total counter\n\
             chaff_milter_quarantine_retained_out_total {}",
            u8::from(db.healthy),
            db.errors,
            keeper.commits,
            keeper.history_dropped,
            keeper.retained_out
        );
        s
    }

    /// Counts an account locked by the service.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    /// Renders the state backend's counters: messages over a rate limit, and
    /// Redis's health when it is the backend.
    pub fn render_backend(&self, redis: Option<crate::state::redis::RedisStats>) -> String {
        let mut out = format!(
            "# HELP chaff_milter_rate_limited_total Messages deferred over a sending-rate limit.\n\
             # TYPE chaff_milter_rate_limited_total counter\n\
             chaff_milter_rate_limited_total {}\n",
            self.rate_limited.load(Relaxed)
        );
        if let Some(r) = redis {
            out.push_str(&format!(
                "# HELP chaff_milter_state_backend_up 1 while Redis answers.\n\
                 # TYPE chaff_milter_state_backend_up gauge\n\
                 chaff_milter_state_backend_up {}\n\
                 # HELP chaff_milter_state_backend_failures_total Times Redis went away.\n\
                 # TYPE chaff_milter_state_backend_failures_total counter\n\
                 chaff_milter_state_backend_failures_total {}\n\
                 # HELP chaff_milter_state_backend_recoveries_total Times Redis came back.\n\
                 # TYPE chaff_milter_state_backend_recoveries_total counter\n\
                 chaff_milter_state_backend_recoveries_total {}\n\
                 # HELP chaff_milter_state_journalled_total Lock changes journalled while Redis \
                 was away.\n\
                 # TYPE chaff_milter_state_journalled_total counter\n\
                 chaff_milter_state_journalled_total {}\n\
                 # HELP chaff_milter_state_replayed_total Journalled lock changes written back.\n\
                 # TYPE chaff_milter_state_replayed_total counter\n\
                 chaff_milter_state_replayed_total {}\n",
                u8::from(r.up),
                r.failures,
                r.recoveries,
                r.journalled,
                r.replayed
            ));
        }
        out
    }

    /// Counts a lock made.
    pub fn lock_made(&self) {
        self.locks_made.fetch_add(1, Relaxed);
    }

    /// Renders the text exposition; `locked` is the current number of locked
    /// accounts, when the store could be read; `budget` the message buffer budget;
    /// `store` the lock store's health.
    pub fn render(
        &self,
        locked: Option<u64>,
        budget: Option<&Budget>,
        store: Option<StoreStats>,
    ) -> String {
        let mut s = String::with_capacity(4096);
        let _ = writeln!(
            s,
            "# HELP chaff_milter_messages_total Messages decided, by outcome.\n\
             # TYPE chaff_milter_messages_total counter"
        );
        for o in Outcome::ALL {
            let _ = writeln!(
                s,
                "chaff_milter_messages_total{{action=\"{}\"}} {}",
                o.as_str(),
                self.messages(o)
            );
        }
        let _ = writeln!(
            s,
            "# HELP chaff_milter_errors_total Errors, by kind.\n\
             # TYPE chaff_milter_errors_total counter"
        );
        for k in ErrorKind::ALL {
            let _ = writeln!(
                s,
                "chaff_milter_errors_total{{kind=\"{}\"}} {}",
                k.as_str(),
                self.errors(k)
            );
        }
        let _ = writeln!(
            s,
            "# HELP chaff_milter_scan_seconds Time to scan one message.\n\
             # TYPE chaff_milter_scan_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(
                s,
                "chaff_milter_scan_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(s, "chaff_milter_scan_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "chaff_milter_scan_seconds_sum {}",
            self.latency_sum_ns.load(Relaxed) as f64 / 1e9
        );
        let _ = writeln!(s, "chaff_milter_scan_seconds_count {count}");
        let gauges: [(&str, &str, &str, String); 7] = [
            (
                "chaff_milter_connections_total",
                "counter",
                "MTA connections accepted.",
                self.connections_total.load(Relaxed).to_string(),
            ),
            (
                "chaff_milter_connections_active",
                "gauge",
                "MTA connections open now.",
                self.connections_active().to_string(),
            ),
            (
                "chaff_milter_reloads_total",
                "counter",
                "Successful configuration reloads.",
                self.reloads_ok.load(Relaxed).to_string(),
            ),
            (
                "chaff_milter_reload_failures_total",
                "counter",
                "Refused configuration reloads (the old configuration kept serving).",
                self.reloads_failed.load(Relaxed).to_string(),
            ),
            (
                "chaff_milter_model_refusals_total",
                "counter",
                "Replacement model files refused (the previous model kept serving), once per file version.",
                self.model_refused.load(Relaxed).to_string(),
            ),
            (
                "chaff_milter_accounts_locked_total",
                "counter",
                "Accounts locked by this process.",
                self.locks_made.load(Relaxed).to_string(),
            ),
            (
                "chaff_milter_released_total",
                "counter",
                "Messages delivered unscanned on a valid release token (counted in \
                 chaff_milter_messages_total{action=\"deliver\"} too).",
                self.released_count().to_string(),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP chaff_milter_connections_evicted_total Connections closed to give \
             their slot to a new one (milter.max_connections), by reason.\n\
             # TYPE chaff_milter_connections_evicted_total counter"
        );
        for r in EvictReason::ALL {
            let _ = writeln!(
                s,
                "chaff_milter_connections_evicted_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.connections_evicted(r)
            );
        }
        let _ = writeln!(
            s,
            "# HELP chaff_milter_release_tokens_refused_total Release tokens that did not \
             let their message through (it was scanned), by reason.\n\
             # TYPE chaff_milter_release_tokens_refused_total counter"
        );
        for k in Refusal::KINDS {
            let _ = writeln!(
                s,
                "chaff_milter_release_tokens_refused_total{{reason=\"{k}\"}} {}",
                self.release_refusals(k)
            );
        }
        let _ = writeln!(
            s,
            "# HELP chaff_milter_connections_refused_total New connections closed at once, \
             by reason (full: every slot taken, none could be freed).\n\
             # TYPE chaff_milter_connections_refused_total counter\n\
             chaff_milter_connections_refused_total{{reason=\"full\"}} {}",
            self.connections_refused()
        );
        if let Some(b) = budget {
            let _ = writeln!(
                s,
                "# HELP chaff_milter_buffered_bytes Message bytes buffered now, across connections.\n\
                 # TYPE chaff_milter_buffered_bytes gauge\n\
                 chaff_milter_buffered_bytes {}\n\
                 # HELP chaff_milter_max_buffered_bytes The cap on buffered message bytes \
                 (milter.max_buffered_bytes); messages over it are deferred (action=\"busy\").\n\
                 # TYPE chaff_milter_max_buffered_bytes gauge\n\
                 chaff_milter_max_buffered_bytes {}",
                b.used(),
                b.limit()
            );
        }
        if let Some(n) = locked {
            let _ = writeln!(
                s,
                "# HELP chaff_milter_locked_accounts Accounts locked now.\n\
                 # TYPE chaff_milter_locked_accounts gauge\n\
                 chaff_milter_locked_accounts {n}"
            );
        }
        if let Some(st) = store {
            let _ = writeln!(
                s,
                "# HELP chaff_milter_lock_store_healthy 1 while the lock store's file is usable, \
                 0 while it is being reopened (known locks are enforced from memory).\n\
                 # TYPE chaff_milter_lock_store_healthy gauge\n\
                 chaff_milter_lock_store_healthy {}\n\
                 # HELP chaff_milter_lock_store_errors_total I/O failures of the lock store \
                 (failed operations and failed reopen attempts).\n\
                 # TYPE chaff_milter_lock_store_errors_total counter\n\
                 chaff_milter_lock_store_errors_total {}\n\
                 # HELP chaff_milter_lock_store_reopens_total Times the lock store was reopened \
                 after a failure.\n\
                 # TYPE chaff_milter_lock_store_reopens_total counter\n\
                 chaff_milter_lock_store_reopens_total {}",
                u8::from(st.healthy),
                st.errors,
                st.reopens
            );
        }
        self.http.render(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_summary_reads_the_histogram() {
        let m = Metrics::default();
        let s = m.scan_latency_summary();
        assert_eq!((s.count, s.mean_ms, s.p50_at_most_ms), (0, 0.0, None));
        for _ in 0..98 {
            m.scan_latency(Duration::from_micros(200));
        }
        m.scan_latency(Duration::from_millis(3));
        m.scan_latency(Duration::from_secs(9));
        let s = m.scan_latency_summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_at_most_ms, Some(0.25));
        assert_eq!(s.p99_at_most_ms, Some(5.0));
        assert!((s.mean_ms - (98.0 * 0.2 + 3.0 + 9000.0) / 100.0).abs() < 1e-6);
        m.scan_latency(Duration::from_secs(9));
        m.scan_latency(Duration::from_secs(9));
        assert_eq!(m.scan_latency_summary().p99_at_most_ms, None);
    }

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.message(Outcome::Reject);
        m.message(Outcome::Reject);
        m.error(ErrorKind::Protocol);
        m.scan_latency(Duration::from_micros(300));
        m.scan_latency(Duration::from_millis(3));
        m.message(Outcome::Busy);
        m.connection_evicted(EvictReason::Trickle);
        m.connection_refused();
        m.released();
        m.release_refused("bad_mac");
        m.release_refused("nonsense");
        let budget = Budget::new(1000);
        let mut r = budget.reservation();
        assert!(r.grow(300));
        let store = StoreStats {
            healthy: false,
            errors: 3,
            reopens: 1,
        };
        let text = m.render(Some(2), Some(&budget), Some(store));
        assert!(text.contains("chaff_milter_lock_store_healthy 0\n"));
        assert!(text.contains("chaff_milter_lock_store_errors_total 3\n"));
        assert!(text.contains("chaff_milter_lock_store_reopens_total 1\n"));
        assert!(text.contains("chaff_milter_messages_total{action=\"busy\"} 1\n"));
        assert!(text.contains("chaff_milter_buffered_bytes 300\n"));
        assert!(text.contains("chaff_milter_max_buffered_bytes 1000\n"));
        assert!(text.contains("chaff_milter_messages_total{action=\"reject\"} 2\n"));
        assert!(text.contains("chaff_milter_errors_total{kind=\"protocol\"} 1\n"));
        assert!(text.contains("chaff_milter_scan_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("chaff_milter_scan_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("chaff_milter_scan_seconds_count 2\n"));
        assert!(text.contains("chaff_milter_locked_accounts 2\n"));
        assert!(text.contains("chaff_milter_connections_evicted_total{reason=\"trickle\"} 1\n"));
        assert!(text.contains("chaff_milter_connections_evicted_total{reason=\"idle\"} 0\n"));
        assert!(text.contains("chaff_milter_connections_refused_total{reason=\"full\"} 1\n"));
        assert!(text.contains("chaff_milter_released_total 1\n"));
        assert!(text.contains("chaff_milter_release_tokens_refused_total{reason=\"bad_mac\"} 1\n"));
        assert!(text.contains("chaff_milter_release_tokens_refused_total{reason=\"other\"} 1\n"));
        assert!(text.contains("chaff_milter_release_tokens_refused_total{reason=\"expired\"} 0\n"));
    }

    #[test]
    fn renders_the_state_store() {
        let m = Metrics::default();
        m.kept(Told::Discard, Duration::from_micros(800));
        m.kept(Told::Discard, Duration::from_millis(3));
        m.keep_failed();
        let text = m.render_state(
            DbStats {
                healthy: true,
                errors: 0,
                reopens: 0,
            },
            KeeperStats {
                commits: 2,
                ..KeeperStats::default()
            },
            Some(Totals {
                entries: 2,
                bytes: 900,
            }),
        );
        for line in [
            "chaff_milter_quarantine_kept_total{told=\"discard\"} 2\n",
            "chaff_milter_quarantine_kept_total{told=\"hold\"} 0\n",
            "chaff_milter_quarantine_store_failures_total 1\n",
            "chaff_milter_quarantine_store_seconds_bucket{le=\"0.001\"} 1\n",
            "chaff_milter_quarantine_store_seconds_count 2\n",
            "chaff_milter_quarantine_entries 2\n",
            "chaff_milter_quarantine_bytes 900\n",
            "chaff_milter_state_store_healthy 1\n",
            "chaff_milter_state_store_commits_total 2\n",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
