//! The state every connection shares: the engine and its settings, the lock
//! store, the counters, the buffer budget and the scan threads.
//!
//! A small message from an unauthenticated sender is scanned on its network thread,
//! which saves two thread wake-ups per message; larger ones and outbound mail are
//! scanned on the scan threads (module `scan_pool`), and a scan that overruns its
//! time limit gets the configured fallback answer instead of a hang. A scan that
//! panics gets it too, wherever it ran. The engine and its checked settings are one
//! [`Generation`] behind an `ArcSwap`: a reload builds a new one and swaps it in
//! whole, or keeps the old one if the new configuration is refused.

use super::accounts::{self, AccountStore, StoreError};
use super::budget::Budget;
use super::config::ServiceConfig;
use super::connection::ConnLogs;
use super::metrics::{ErrorKind, Metrics};
use super::policy::{self, Decision, Outcome};
use super::scan_pool::ScanPool;
use super::session::ScanJob;
use super::settings::Settings;
use arc_swap::ArcSwap;
use chaff::{ConfigError, Engine, Envelope};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine could not be built.
    #[error("{0}")]
    Engine(#[from] chaff::Error),
    /// The lock store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listen address is unusable.
    #[error("bad listen address {0}")]
    Address(String),
    /// A listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Threads or the runtime could not start.
    #[error("cannot start the {what}: {source}")]
    Start {
        /// What could not start (`scan threads`, `network runtime`, …).
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// An engine and the settings it was built with, swapped together on reload.
pub struct Generation {
    /// The engine.
    pub engine: Engine,
    /// The checked settings.
    pub settings: Arc<Settings>,
    /// Refused model file versions already logged and counted
    /// ([`Engine::model_reload_failures`] as last seen).
    model_refusals_seen: AtomicU64,
}

impl Generation {
    /// Checks `config` and builds its engine, ready to scan at full speed: on a
    /// reload the old generation serves until the new one has loaded its
    /// dictionary, so no message waits for it.
    pub fn build(config: &ServiceConfig) -> Result<Generation, ServeError> {
        let settings = Settings::from_config(config).map_err(|(field, message)| ConfigError {
            file: config.engine.source.clone().unwrap_or_default(),
            line: None,
            field: Some(field.to_string()),
            message,
        })?;
        let engine = Engine::new(&config.engine)?;
        if let Some(notice) = engine.model_notice() {
            warn!(model = ?config.engine.model, "{notice}");
        }
        engine.wait_ready();
        Ok(Generation {
            engine,
            settings: Arc::new(settings),
            model_refusals_seen: AtomicU64::new(0),
        })
    }
}

/// The state shared by every connection.
pub struct Service {
    current: ArcSwap<Generation>,
    store: Option<AccountStore>,
    metrics: Metrics,
    pool: ScanPool,
    /// Message bytes buffered across connections (`max_buffered_bytes`).
    budget: Arc<Budget>,
    config_path: Option<PathBuf>,
    /// Rate-limited warnings of connections that end badly.
    conn_logs: ConnLogs,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.store)
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

impl Service {
    /// Builds the service from `config` (read from `config_path`, if any, which
    /// SIGHUP reads again). Opens the lock store.
    pub fn new(
        config: &ServiceConfig,
        config_path: Option<PathBuf>,
    ) -> Result<Service, ServeError> {
        let generation = Generation::build(config)?;
        let accounts = &generation.settings.accounts;
        let store = AccountStore::open_in_realm(&accounts.db, accounts.realm.as_deref())?;
        let threads = generation.settings.milter.scan_thread_count();
        let pool = ScanPool::new(threads).map_err(|e| ServeError::Start {
            what: "scan threads",
            source: e,
        })?;
        let budget = Budget::new(generation.settings.milter.max_buffered_bytes);
        Ok(Service {
            budget,
            current: ArcSwap::from_pointee(generation),
            store: Some(store),
            metrics: Metrics::default(),
            pool,
            config_path,
            conn_logs: ConnLogs::default(),
        })
    }

    /// The engine and settings in force.
    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The budget of message bytes buffered across connections.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The rate-limited warnings of connections that end badly.
    pub(crate) fn conn_logs(&self) -> &ConnLogs {
        &self.conn_logs
    }

    /// The lock store.
    pub fn store(&self) -> Option<&AccountStore> {
        self.store.as_ref()
    }

    /// Reads the configuration file again and swaps in a new engine, atomically.
    /// On any error the old configuration keeps serving and the error is returned.
    /// An unusable lock store is first given an immediate attempt to reopen,
    /// whatever its backoff.
    pub fn reload(&self) -> Result<(), String> {
        if let Some(store) = &self.store
            && !store.is_healthy()
        {
            info!("reload: trying to reopen the lock store now");
            store.try_recover();
        }
        let config = match &self.config_path {
            Some(p) => ServiceConfig::load(p).map_err(|e| e.to_string())?,
            None => ServiceConfig::default(),
        };
        let generation = Generation::build(&config).map_err(|e| e.to_string())?;
        let old = self.current();
        if generation.settings.accounts.realm != old.settings.accounts.realm {
            warn!(
                old = ?old.settings.accounts.realm,
                new = ?generation.settings.accounts.realm,
                "accounts.realm changed: it takes effect after a restart"
            );
        }
        if generation.settings.accounts.db != old.settings.accounts.db {
            warn!(
                old = %old.settings.accounts.db.display(),
                new = %generation.settings.accounts.db.display(),
                "accounts.db changed: the new store is used after a restart"
            );
        }
        let (new, was) = (&generation.settings.milter, &old.settings.milter);
        if new.listen != was.listen || new.metrics != was.metrics {
            warn!("listen addresses changed: they take effect after a restart");
        }
        if new.network_threads != was.network_threads
            || new.scan_threads != was.scan_threads
            || new.max_connections != was.max_connections
        {
            warn!(
                "network_threads, scan_threads or max_connections changed: \
                 they take effect after a restart"
            );
        }
        self.budget
            .set_limit(generation.settings.milter.max_buffered_bytes);
        self.current.store(Arc::new(generation));
        Ok(())
    }

    /// Reloads, logs and counts the result.
    pub(crate) fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => {
                self.metrics.reload(true);
                info!(config = ?self.config_path, "configuration reloaded");
            }
            Err(e) => {
                self.metrics.reload(false);
                error!(error = %e, "reload refused; the previous configuration keeps serving");
            }
        }
    }

    /// True when `job` is scanned on the network thread that received it: small,
    /// and from a sender who did not authenticate (so the lock store, which may
    /// write to disk, is not involved). See `[milter] inline_scan_max_bytes`.
    fn scans_inline(settings: &Settings, job: &ScanJob) -> bool {
        let limit = settings.milter.inline_scan_max_bytes;
        limit > 0
            && job.raw.len() <= limit
            && job.envelope.auth_user.as_deref().is_none_or(str::is_empty)
    }

    /// Decides on `job` on the calling thread; a panic becomes its text. The job,
    /// and with it the message's share of the buffer budget, is released before
    /// this returns.
    fn decide_here(&self, g: &Generation, job: Box<ScanJob>, now: u64) -> Result<Decision, String> {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            policy::decide(&g.engine, &g.settings, self.store.as_ref(), &job, now)
        }))
        .map_err(|p| panic_text(p.as_ref()))
    }

    /// Decides on a message: small ones [inline](Self::scans_inline), the others on
    /// the scan threads within the scan time limit. A scan that panics, overruns
    /// its limit or loses its thread gets the fallback answer.
    pub(crate) async fn decide(
        self: &Arc<Self>,
        generation: Arc<Generation>,
        job: Box<ScanJob>,
    ) -> Decision {
        let settings = &generation.settings;
        let now = accounts::now_secs();
        // A job never run, its thread gone, returns its bytes to the budget as the
        // queue drops it.
        let outcome = if Self::scans_inline(settings, &job) {
            Ok(Ok(self.decide_here(&generation, job, now)))
        } else {
            let (tx, rx) = oneshot::channel();
            let svc = Arc::clone(self);
            let g = Arc::clone(&generation);
            self.pool.spawn(move || {
                let _ = tx.send(svc.decide_here(&g, job, now));
            });
            tokio::time::timeout(settings.scan_timeout(), rx).await
        };
        let why = match outcome {
            Ok(Ok(Ok(d))) => return d,
            Ok(Ok(Err(msg))) => format!("scan panicked: {msg}"),
            Ok(Err(_)) => "scan thread went away".into(),
            Err(_) => format!(
                "scan took longer than {} ms",
                settings.milter.scan_timeout_ms
            ),
        };
        self.metrics.error(ErrorKind::Scan);
        Decision::fallback(settings, why)
    }

    /// Logs and counts, once per refused file version, that the engine refused a
    /// replacement model file (the previous model keeps serving): without it the
    /// next restart would fail by surprise. Two atomic loads per message otherwise.
    fn note_model_refusals(&self) {
        let g = self.current.load();
        let now = g.engine.model_reload_failures();
        let before = g.model_refusals_seen.load(Relaxed);
        if now > before
            && g.model_refusals_seen
                .compare_exchange(before, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.metrics.model_refused(now - before);
            error!(
                error = g.engine.model_reload_error().as_deref().unwrap_or("-"),
                "model file refused: the previous model keeps serving; fix or replace the file \
                 before the next restart"
            );
        }
    }

    /// Counts and logs the decision on a message of `size` bytes.
    pub(crate) fn record(&self, d: &Decision, env: &Envelope, size: usize) {
        self.note_model_refusals();
        self.metrics.message(d.outcome);
        if d.verdict.is_some() {
            self.metrics.scan_latency(d.scan_time);
        }
        let (queue_id, score, hits) = policy::log_fields(d, env);
        let auth = env.auth_user.as_deref().unwrap_or("-");
        let from = env.sender.as_deref().unwrap_or("<>");
        match d.outcome {
            Outcome::Busy => warn!(
                queue_id = %queue_id,
                action = "busy",
                reply = d.reply.as_ref().map_or("-", |r| r.as_str()),
                buffered = self.budget.used(),
                max_buffered_bytes = self.budget.limit(),
                auth, from, size,
                "message deferred: too much mail in flight"
            ),
            Outcome::StoreTempfail => warn!(
                queue_id = %queue_id,
                action = "store_tempfail",
                reply = d.reply.as_ref().map_or("-", |r| r.as_str()),
                auth, from, size,
                "message deferred: the account store is unusable (accounts.on_store_error)"
            ),
            Outcome::Fallback => warn!(
                queue_id = %queue_id,
                action = "fallback",
                answer = d.fallback.map_or("accept", |f| f.as_str()),
                error = d.error.as_deref().unwrap_or("-"),
                auth, from, size,
                "message"
            ),
            _ => info!(
                queue_id = %queue_id,
                action = %d.outcome,
                score = %score,
                hits = %hits,
                auth, from, size,
                scan_us = d.scan_time.as_micros() as u64,
                scan_cpu_us = d.scan_cpu.map(|t| t.as_micros() as u64),
                "message"
            ),
        }
        if d.newly_locked {
            self.metrics.lock_made();
            if let Some(lock) = &d.lock {
                warn!(user = auth, reason = %lock.reason, "account locked");
            }
        }
        if d.outcome != Outcome::Fallback
            && let Some(e) = &d.error
        {
            self.metrics.error(ErrorKind::Store);
            error!(error = %e, "account store failed; the message was scanned without it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Reservation;

    #[test]
    fn small_mail_from_unauthenticated_senders_is_scanned_inline() {
        let mut config = ServiceConfig::default();
        config.milter.inline_scan_max_bytes = 1000;
        let settings = Settings::from_config(&config).unwrap();
        let job = |size: usize, auth: Option<&str>| ScanJob {
            raw: vec![b'x'; size],
            envelope: Envelope {
                auth_user: auth.map(str::to_string),
                ..Envelope::default()
            },
            reservation: Reservation::none(),
        };
        assert!(Service::scans_inline(&settings, &job(1000, None)));
        assert!(Service::scans_inline(&settings, &job(10, Some(""))));
        // Too large, or the lock store is involved: the scan threads.
        assert!(!Service::scans_inline(&settings, &job(1001, None)));
        assert!(!Service::scans_inline(&settings, &job(10, Some("alice"))));
        config.milter.inline_scan_max_bytes = 0;
        let settings = Settings::from_config(&config).unwrap();
        assert!(!Service::scans_inline(&settings, &job(0, None)));
    }
}
