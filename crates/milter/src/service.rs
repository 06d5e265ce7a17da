//! The state every connection shares: the engine and its settings, the lock
//! store, the state store (quarantine, history, admin sender lists) and its
//! writer, the counters, the buffer budget and the scan threads.
//!
//! A small message from an unauthenticated sender is scanned on its network thread,
//! which saves two thread wake-ups per message; larger ones and outbound mail are
//! scanned on the scan threads (module `scan_pool`), and a scan that overruns its
//! time limit gets the configured fallback answer instead of a hang. A scan that
//! panics gets it too, wherever it ran. The engine and its checked settings are one
//! [`Generation`] behind an `ArcSwap`: a reload builds a new one and swaps it in
//! whole, or keeps the old one if the new configuration is refused.
//!
//! A message to keep (quarantined, or refused with `keep_rejected`) is
//! compressed on the thread that scanned it and handed to the state store's
//! writer (`quarantine::Keeper`); the answer waits, without holding a thread,
//! for the durable commit, and becomes `451 4.3.0` if the store cannot take it
//! within the scan time limit. Every decided message is recorded in the scan
//! history. The engine is built from `chaff.toml` with the admin's stored allow
//! and block entries added; an edit of those (revision in the store, watched every
//! [`SENDERS_CHECK_INTERVAL`]) reloads as SIGHUP does.

use super::accounts::{self, AccountStore, Evidence, StoreError};
use super::budget::Budget;
use super::config::ServiceConfig;
use super::connection::ConnLogs;
use super::metrics::{ErrorKind, Metrics};
use super::policy::{self, Decision, Outcome};
use super::quarantine::{
    self, Keeper, KeeperLimits, NewEntry, ScanRecord, SenderEntry, StateStore, StoredEnvelope,
};
use super::release::{KeyError, ReleaseGate, ReleaseKey};
use super::scan_pool::ScanPool;
use super::session::{ClientInfo, ScanJob};
use super::settings::Settings;
use super::site_policy::{PolicyCache, PolicyStore};
use super::state::Locks;
use super::state::journal::Journal;
use super::state::ratelimit::{self, Check, MemLimiter, Subject};
use super::state::redis::{Admission, RedisState};
use super::throttle::Shared;
use arc_swap::ArcSwap;
use chaff::{ConfigError, Engine, Envelope};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

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
    /// The state store could not be opened or read.
    #[error("{0} (the service needs its state store: check [state] path)")]
    State(#[from] quarantine::StoreError),
    /// The release key (`[quarantine] release_key`) could not be read or made.
    #[error(transparent)]
    ReleaseKey(#[from] KeyError),
    /// The state backend (`[state] backend`) is unusable.
    #[error("state backend: {0}")]
    Backend(String),
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
    /// The HTTP listener cannot start (its address, TLS files or users file).
    #[error("http: {0}")]
    Http(String),
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
    /// The revision of the stored sender lists the engine was built with.
    senders_rev: u64,
    /// How many of the engine's allow and block entries come from `chaff.toml`
    /// (they come first; the stored ones follow).
    file_senders: (usize, usize),
}

impl Generation {
    /// Checks `config` and builds its engine with the admin's stored sender
    /// entries (`stored`, at revision `senders_rev`) added to `[senders]`, ready to
    /// scan at full speed: on a reload the old generation serves until the new one
    /// has loaded its dictionary, so no message waits for it.
    pub fn build(
        config: &ServiceConfig,
        stored: &[SenderEntry],
        senders_rev: u64,
    ) -> Result<Generation, ServeError> {
        let settings = Settings::from_config(config).map_err(|(field, message)| ConfigError {
            file: config.engine.source.clone().unwrap_or_default(),
            line: None,
            field: Some(field.to_string()),
            message,
        })?;
        let mut engine_config = config.engine.clone();
        let file_senders = (engine_config.allow.len(), engine_config.block.len());
        for w in quarantine::apply_senders(&mut engine_config, stored) {
            warn!("{w}");
        }
        let engine = Engine::new(&engine_config)?;
        if let Some(notice) = engine.model_notice() {
            warn!(model = ?config.engine.model, "{notice}");
        }
        engine.wait_ready();
        Ok(Generation {
            engine,
            settings: Arc::new(settings),
            model_refusals_seen: AtomicU64::new(0),
            senders_rev,
            file_senders,
        })
    }

    /// The allow and block entries of the configuration file, without those the
    /// admin stored (which the engine applies after them).
    pub fn file_senders(
        &self,
    ) -> (
        &[chaff::config::AllowEntry],
        &[chaff::config::SenderPattern],
    ) {
        let c = self.engine.config();
        (
            &c.allow[..self.file_senders.0.min(c.allow.len())],
            &c.block[..self.file_senders.1.min(c.block.len())],
        )
    }

    /// The revision of the stored sender lists this generation applies.
    pub fn senders_revision(&self) -> u64 {
        self.senders_rev
    }
}

/// The state shared by every connection.
pub struct Service {
    current: ArcSwap<Generation>,
    /// The redb lock store (`[state] backend = "embedded"`).
    store: Option<AccountStore>,
    /// Redis (`[state] backend` a Redis URL): locks, rejects and rate counters.
    shared: Option<Arc<RedisState>>,
    /// Rate counters of the embedded backend.
    limiter: MemLimiter,
    /// The state store and its writer.
    keeper: Keeper,
    /// This host's name, for kept entries.
    host: String,
    metrics: Metrics,
    pool: ScanPool,
    /// Message bytes buffered across connections (`max_buffered_bytes`).
    budget: Arc<Budget>,
    config_path: Option<PathBuf>,
    /// Rate-limited warnings of connections that end badly.
    conn_logs: ConnLogs,
    /// The release key and the tokens used (read at start; `None` only for
    /// services built without a state store, in tests).
    release: Option<ReleaseGate>,
    /// Rate-limited warnings of release tokens that did not verify.
    release_logs: Shared,
    /// The stored per-domain, per-recipient and per-account policies.
    policies: PolicyCache,
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
    /// SIGHUP reads again). Opens the lock store and the state store, and
    /// starts the state store's writer.
    pub fn new(
        config: &ServiceConfig,
        config_path: Option<PathBuf>,
    ) -> Result<Service, ServeError> {
        let state = Arc::new(StateStore::open(&config.state.path)?);
        let rev = state.senders_revision()?;
        let stored = state.senders()?;
        let generation = Generation::build(config, &stored, rev)?;
        let keeper = Keeper::start(Arc::clone(&state), Self::limits(&generation.settings))
            .map_err(|e| ServeError::Start {
                what: "state store writer",
                source: e,
            })?;
        let accounts = &generation.settings.accounts;
        let st = &generation.settings.state;
        let (store, shared) = if st.backend == "embedded" {
            let store = AccountStore::open_in_realm(&accounts.db, accounts.realm.as_deref())?;
            (Some(store), None)
        } else {
            let shared = RedisState::start(
                &st.backend,
                st.fail,
                Duration::from_millis(st.timeout_ms),
                &Journal::path_for(&accounts.db),
                accounts.realm.as_deref(),
            )
            .map_err(ServeError::Backend)?;
            (None, Some(shared))
        };
        let threads = generation.settings.milter.scan_thread_count();
        let pool = ScanPool::new(threads).map_err(|e| ServeError::Start {
            what: "scan threads",
            source: e,
        })?;
        let budget = Budget::new(generation.settings.milter.max_buffered_bytes);
        // Made here when missing, by the user the service runs as, so the file is
        // the service's; the release command only reads it.
        let release = {
            let path = generation.settings.release_key();
            let gate = ReleaseGate::new(ReleaseKey::load_or_create(&path)?);
            info!(key = %path.display(), "release tokens accepted");
            Some(gate)
        };
        let policies = PolicyCache::new(Arc::clone(&state) as Arc<dyn PolicyStore>);
        Ok(Service {
            policies,
            release,
            release_logs: Shared::default(),
            budget,
            current: ArcSwap::from_pointee(generation),
            store,
            shared,
            limiter: MemLimiter::default(),
            keeper,
            host: quarantine::host_name(),
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

    /// The lock store (the embedded backend).
    pub fn store(&self) -> Option<&AccountStore> {
        self.store.as_ref()
    }

    /// The Redis backend, when configured.
    pub fn shared(&self) -> Option<&Arc<RedisState>> {
        self.shared.as_ref()
    }

    /// The locks, whichever backend holds them.
    pub fn locks(&self) -> Option<Locks<'_>> {
        match (&self.shared, &self.store) {
            (Some(r), _) => Some(Locks::Redis(r)),
            (None, Some(s)) => Some(Locks::Embedded(s)),
            (None, None) => None,
        }
    }

    /// The embedded backend's rate counters.
    pub fn limiter(&self) -> &MemLimiter {
        &self.limiter
    }

    /// Checks the account's lock (Redis backend) and the sending-rate limits of
    /// a message before it is scanned; `Some` decision refuses or defers it. With
    /// the embedded backend the lock is checked by the scan
    /// ([`policy::decide`]); the limits are counted here, in memory.
    async fn admit(&self, settings: &Settings, env: &Envelope) -> Option<Decision> {
        let user = env.auth_user.as_deref().filter(|u| !u.is_empty());
        let rl = &settings.ratelimit;
        let norm = user.map(|u| accounts::normalise_user(u, settings.accounts.realm.as_deref()));
        let subjects = if rl.any() {
            ratelimit::subjects(rl, norm.as_deref(), env.sender.as_deref(), env.client_addr)
        } else {
            Vec::new()
        };
        let now_ms = quarantine::now_ms();
        let rcpts = env.recipients.len().max(1) as u64;
        let (ex, lock) = match &self.shared {
            Some(redis) => {
                if user.is_none() && subjects.is_empty() {
                    return None;
                }
                match redis
                    .admit(norm.as_deref(), &subjects, rcpts, rl, now_ms)
                    .await
                {
                    Admission::Go => return None,
                    Admission::Locked(l) => return Some(Decision::locked(settings, l, false)),
                    Admission::Tempfail => return Some(Decision::store_tempfail()),
                    Admission::Limited(ex, lock) => (ex, lock),
                }
            }
            None => {
                if subjects.is_empty() {
                    return None;
                }
                let ex = match self.limiter.check(rl, &subjects, rcpts, now_ms) {
                    Check::Over(ex) => ex,
                    _ => return None,
                };
                let store = self.store.as_ref()?;
                // A locked account is refused as locked, not as limited.
                if let Some(u) = user
                    && let Ok(Some(l)) = store.lock_of(u)
                {
                    return Some(Decision::locked(settings, l, false));
                }
                let lock = match &ex.subject {
                    Subject::Account(u) if self.limiter.count_over(rl, u, now_ms) => {
                        let rec = rl.lock_record(now_ms);
                        match store.lock(u, rec.locked_at, &rec.reason) {
                            Ok(_) => store.lock_of(u).ok().flatten(),
                            Err(e) => {
                                error!(error = %e, user = %u, "rate lock not written");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                (ex, lock)
            }
        };
        self.metrics.rate_limited();
        Some(Decision::rate_limited(settings, ex.to_string(), lock))
    }

    /// Counts a rejected message of an authenticated sender in Redis (the
    /// embedded store counts it in [`policy::decide`]).
    async fn count_reject(
        &self,
        settings: &Settings,
        user: Option<&str>,
        d: &mut Decision,
        queue_id: Option<String>,
    ) {
        let (Some(redis), Some(user), Outcome::Reject) = (&self.shared, user, d.outcome) else {
            return;
        };
        let ev = Evidence {
            queue_id,
            score: d.verdict.as_ref().map_or(0.0, |v| v.score),
            hits: d
                .verdict
                .as_ref()
                .map(|v| policy::top_hits(v, 3))
                .unwrap_or_default(),
            entry: d.kept.map(|(id, _)| id),
        };
        match redis
            .record_reject(user, accounts::now_secs(), &settings.accounts, &ev)
            .await
        {
            Ok(Some(lock)) => {
                d.lock = Some(lock);
                d.newly_locked = true;
            }
            Ok(None) => {}
            Err(e) => d.error = Some(e.to_string()),
        }
    }

    /// Counts a kept rejected message against its account in the embedded lock
    /// store ([`Decision::uncounted`], left by [`policy::decide_under`]) now that
    /// it has its entry id; on a blocking thread (a redb commit).
    async fn count_kept_reject(
        self: &Arc<Self>,
        settings: &Settings,
        user: Option<String>,
        d: &mut Decision,
    ) {
        let Some(mut ev) = d.uncounted.take() else {
            return;
        };
        let (Some(user), Outcome::Reject, true) = (user, d.outcome, self.store.is_some()) else {
            return;
        };
        ev.entry = d.kept.map(|(id, _)| id);
        let svc = Arc::clone(self);
        let cfg = settings.accounts.clone();
        let counted = tokio::task::spawn_blocking(move || {
            svc.store
                .as_ref()
                .map(|s| s.record_reject(&user, accounts::now_secs(), &cfg, &ev))
        })
        .await;
        match counted {
            Ok(Some(Ok(Some(lock)))) => {
                d.lock = Some(lock);
                d.newly_locked = true;
            }
            Ok(Some(Ok(None))) | Ok(None) => {}
            Ok(Some(Err(e))) => d.error = Some(e.to_string()),
            Err(e) => d.error = Some(format!("account store: {e}")),
        }
    }

    /// The state store (quarantine, history, sender lists, action log).
    pub fn state(&self) -> &Arc<StateStore> {
        self.keeper.store()
    }

    /// The stored policies in force (see [`crate::site_policy`]).
    pub fn policies(&self) -> &PolicyCache {
        &self.policies
    }

    /// The state store's writer (group commit, history, retention, counts).
    pub fn keeper(&self) -> &Keeper {
        &self.keeper
    }

    fn limits(settings: &Settings) -> KeeperLimits {
        KeeperLimits {
            history: settings.state.history,
            max_age: settings.quarantine.max_age,
            max_bytes: settings.quarantine.max_bytes as u64,
        }
    }

    /// Reloads (as SIGHUP does) when the stored sender lists changed since the
    /// engine in force was built (an admin's edit, from this process or from
    /// `chaff senders`). Returns true when it reloaded.
    pub fn reload_if_senders_changed(&self) -> bool {
        match self.state().senders_revision() {
            Ok(rev) if rev != self.current().senders_rev => {
                info!(revision = rev, "stored sender lists changed: reloading");
                self.reload_logged();
                true
            }
            _ => false,
        }
    }

    /// Writes what the state store's writer holds and stops it (shutdown).
    pub fn stop_state(&self) {
        self.keeper.shutdown();
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
        if !self.state().db_stats().healthy {
            info!("reload: trying to reopen the state store now");
            self.state().try_recover();
        }
        let config = match &self.config_path {
            Some(p) => ServiceConfig::load(p).map_err(|e| e.to_string())?,
            None => ServiceConfig::default(),
        };
        let old = self.current();
        // The stored lists are part of the engine: unreadable, the reload is
        // refused (the engine in force keeps them).
        let rev = self.state().senders_revision().map_err(|e| e.to_string())?;
        let stored = self.state().senders().map_err(|e| e.to_string())?;
        let generation = Generation::build(&config, &stored, rev).map_err(|e| e.to_string())?;
        if generation.settings.state.path != old.settings.state.path {
            warn!(
                old = %old.settings.state.path.display(),
                new = %generation.settings.state.path.display(),
                "state.path changed: the new store is used after a restart"
            );
        }
        if generation.settings.accounts.realm != old.settings.accounts.realm {
            warn!(
                old = ?old.settings.accounts.realm,
                new = ?generation.settings.accounts.realm,
                "accounts.realm changed: it takes effect after a restart"
            );
        }
        if generation.settings.release_key() != old.settings.release_key() {
            warn!(
                old = %old.settings.release_key().display(),
                new = %generation.settings.release_key().display(),
                "quarantine.release_key changed: it takes effect after a restart"
            );
        }
        if generation.settings.state.backend != old.settings.state.backend
            || generation.settings.state.fail != old.settings.state.fail
            || generation.settings.state.timeout_ms != old.settings.state.timeout_ms
        {
            warn!(
                "state.backend, state.fail or state.timeout_ms changed: they take effect after a restart"
            );
        }
        if generation.settings.accounts.db != old.settings.accounts.db {
            warn!(
                old = %old.settings.accounts.db.display(),
                new = %generation.settings.accounts.db.display(),
                "accounts.db changed: the new store is used after a restart"
            );
        }
        let (new_http, old_http) = (&generation.settings.http, &old.settings.http);
        let pinned = |h: &Option<crate::http::config::HttpConfig>| {
            h.as_ref()
                .map(|h| (h.listen.clone(), h.max_connections, h.has_tls()))
        };
        if pinned(new_http) != pinned(old_http)
            || generation.settings.users.file != old.settings.users.file
        {
            warn!(
                "the [http] table, its listen address, max_connections, whether it uses \
                 TLS, or [users] file changed: they take effect after a restart"
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
        self.keeper.set_limits(Self::limits(&generation.settings));
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

    /// The release key and the tokens it accepted.
    pub fn release_gate(&self) -> Option<&ReleaseGate> {
        self.release.as_ref()
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

    /// Decides on `job` on the calling thread, and, for a message to keep,
    /// builds its quarantine entry (compressing it here, not on the store's
    /// writer); a panic becomes its text. The job, and with it the message's
    /// share of the buffer budget, is released before this returns.
    fn decide_here(
        &self,
        g: &Generation,
        job: Box<ScanJob>,
        client: &ClientInfo,
        can_quarantine: bool,
    ) -> Result<(Decision, Option<NewEntry>), String> {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let now_ms = quarantine::now_ms();
            let rules = self.policies.get(g.settings.policy.refresh);
            let d = policy::decide_under(
                &g.engine,
                &g.settings,
                self.store.as_ref(),
                self.release.as_ref(),
                &rules,
                &job,
                now_ms / 1000,
                true,
            );
            let keep = d.keep_as(&g.settings, can_quarantine);
            let mut d = d;
            let entry = match (keep, &d.verdict) {
                (Some(told), Some(v)) => {
                    // Compressing is part of keeping: timed with it.
                    let started = Instant::now();
                    let env = stored_envelope(&job, client);
                    let e = NewEntry::new(now_ms, &self.host, env, v, told, &job.raw);
                    d.keep_time = Some(started.elapsed());
                    match e {
                        Ok(e) => Some(e),
                        Err(e) => {
                            let why = format!("cannot compress the message: {e}");
                            return (d.keep_failed(why), None);
                        }
                    }
                }
                _ => None,
            };
            (d, entry)
        }))
        .map_err(|p| panic_text(p.as_ref()))
    }

    /// Decides on a message: small ones [inline](Self::scans_inline), the others on
    /// the scan threads within the scan time limit. A scan that panics, overruns
    /// its limit or loses its thread gets the fallback answer. A message to keep is
    /// kept, durably, before this returns (see [`Service::keep`]). `client` is the
    /// connection's client; `can_quarantine` whether the MTA granted QUARANTINE.
    pub(crate) async fn decide(
        self: &Arc<Self>,
        generation: Arc<Generation>,
        job: Box<ScanJob>,
        client: &ClientInfo,
        can_quarantine: bool,
    ) -> Decision {
        let settings = &generation.settings;
        if let Some(d) = self.admit(settings, &job.envelope).await {
            return d;
        }
        let user = job
            .envelope
            .auth_user
            .clone()
            .filter(|u| !u.is_empty() && self.shared.is_some());
        let queue_id = job.envelope.queue_id.clone();
        let auth_user = job.envelope.auth_user.clone();
        // A job never run, its thread gone, returns its bytes to the budget as the
        // queue drops it.
        let started = Instant::now();
        let outcome = if Self::scans_inline(settings, &job) {
            Ok(Ok(self.decide_here(
                &generation,
                job,
                client,
                can_quarantine,
            )))
        } else {
            let (tx, rx) = oneshot::channel();
            let svc = Arc::clone(self);
            let g = Arc::clone(&generation);
            let client = client.clone();
            self.pool.spawn(move || {
                let _ = tx.send(svc.decide_here(&g, job, &client, can_quarantine));
            });
            tokio::time::timeout(settings.scan_timeout(), rx).await
        };
        let why = match outcome {
            Ok(Ok(Ok((mut d, None)))) => {
                self.count_reject(settings, user.as_deref(), &mut d, queue_id)
                    .await;
                self.count_kept_reject(settings, auth_user, &mut d).await;
                return d;
            }
            Ok(Ok(Ok((d, Some(entry))))) => {
                // Kept first, then counted: the reject's evidence carries the
                // entry id, so the lock record can link to the message (a keep
                // that fails answers 451, and nothing is counted).
                let left = settings.scan_timeout().saturating_sub(started.elapsed());
                let mut d = self.keep(d, entry, left).await;
                self.count_reject(settings, user.as_deref(), &mut d, queue_id)
                    .await;
                self.count_kept_reject(settings, auth_user, &mut d).await;
                return d;
            }
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

    /// Keeps `entry` for decision `d`: hands it to the state store's writer and
    /// waits, at most `within` (what is left of the scan time limit, and at least
    /// [`MIN_KEEP_WAIT`]), for its durable commit. Kept, the decision says so (and
    /// in `store` mode becomes DISCARD); otherwise it becomes `451 4.3.0`: a
    /// message is never discarded or held without its copy. (A commit that ends
    /// after the wait leaves an entry for a message the MTA will offer again: a
    /// duplicate in the quarantine, never a loss.)
    async fn keep(&self, mut d: Decision, entry: NewEntry, within: Duration) -> Decision {
        let told = entry.told;
        let started = Instant::now();
        let kept = tokio::time::timeout(within.max(MIN_KEEP_WAIT), self.keeper.keep(entry)).await;
        // With the compression on the scanning thread.
        let took = started.elapsed() + d.keep_time.unwrap_or_default();
        d.keep_time = Some(took);
        match kept {
            Ok(Ok(id)) => {
                self.metrics.kept(told, took);
                d.kept = Some((id, told));
                d
            }
            Ok(Err(e)) => {
                self.metrics.keep_failed();
                d.keep_failed(format!("quarantine store: {e}"))
            }
            Err(_) => {
                self.metrics.keep_failed();
                d.keep_failed(format!(
                    "quarantine store: no durable commit within {} ms",
                    took.as_millis()
                ))
            }
        }
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

    /// Counts, logs and records in the history the decision on a message of
    /// `size` bytes from `client`.
    pub(crate) fn record(&self, d: &Decision, env: &Envelope, size: usize, client: &ClientInfo) {
        self.note_model_refusals();
        self.keeper.record(scan_record(d, env, size, client));
        self.metrics.message(d.outcome);
        if d.verdict.is_some() {
            self.metrics.scan_latency(d.scan_time);
        }
        let (queue_id, score, hits) = policy::log_fields(d, env);
        let auth = env.auth_user.as_deref().unwrap_or("-");
        let from = env.sender.as_deref().unwrap_or("<>");
        if let Some(why) = &d.release_refused {
            self.metrics.release_refused(why.kind());
            // Anyone can put a token header on a message: warnings are
            // rate-limited, the rest goes to debug.
            match self.release_logs.tick() {
                Some(n) => warn!(
                    queue_id = %queue_id,
                    reason = why.kind(),
                    since_last = n,
                    from,
                    "release token ignored, message scanned: {why}"
                ),
                None => debug!(
                    queue_id = %queue_id,
                    reason = why.kind(),
                    from,
                    "release token ignored, message scanned: {why}"
                ),
            }
        }
        if let Some(mark) = &d.released {
            self.metrics.released();
            info!(
                queue_id = %queue_id,
                action = "deliver",
                reason = "released",
                entry = %mark.id,
                from, size,
                "released {}", mark.id
            );
            return;
        }
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
            Outcome::RateLimited => warn!(
                queue_id = %queue_id,
                action = "rate_limited",
                reply = d.reply.as_ref().map_or("-", |r| r.as_str()),
                limit = d.error.as_deref().unwrap_or("-"),
                auth, from, size,
                "message deferred: over a sending-rate limit"
            ),
            Outcome::QuarantineTempfail => error!(
                queue_id = %queue_id,
                action = "quarantine_tempfail",
                score = %score,
                error = d.error.as_deref().unwrap_or("-"),
                auth, from, size,
                store_us = d.keep_time.map(|t| t.as_micros() as u64),
                "message deferred: it was to be kept and the quarantine store could not take it"
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
                kept = d.kept.map(|(id, _)| id.to_string()),
                told = d.kept.map(|(_, t)| t.as_str()),
                store_us = d.keep_time.map(|t| t.as_micros() as u64),
                "message"
            ),
        }
        if d.newly_locked {
            self.metrics.lock_made();
            if let Some(lock) = &d.lock {
                warn!(user = auth, reason = %lock.reason, "account locked");
            }
        }
        if !matches!(
            d.outcome,
            Outcome::Fallback
                | Outcome::QuarantineTempfail
                | Outcome::RateLimited
                | Outcome::Locked
        ) && let Some(e) = &d.error
        {
            self.metrics.error(ErrorKind::Store);
            error!(error = %e, "account store failed; the message was scanned without it");
        }
    }
}

/// Shortest wait for the store to keep a message, even when the scan used up
/// the scan time limit: a commit takes well under a millisecond on a sound disk.
pub const MIN_KEEP_WAIT: Duration = Duration::from_secs(1);

/// How often the service checks whether the stored sender lists changed.
pub const SENDERS_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The envelope of a kept message.
fn stored_envelope(job: &ScanJob, client: &ClientInfo) -> StoredEnvelope {
    let e = &job.envelope;
    StoredEnvelope {
        sender: e.sender.clone().unwrap_or_default(),
        recipients: e.recipients.clone(),
        client_addr: e.client_addr.map(|a| a.to_string()),
        client_name: client.name.clone(),
        helo: client.helo.clone(),
        auth_user: e.auth_user.clone().filter(|u| !u.is_empty()),
        queue_id: e.queue_id.clone(),
    }
}

/// The history's record of a decided message.
fn scan_record(d: &Decision, env: &Envelope, size: usize, client: &ClientInfo) -> ScanRecord {
    ScanRecord {
        time: accounts::now_secs(),
        queue_id: env.queue_id.clone(),
        sender: env.sender.clone().unwrap_or_default(),
        recipients: env
            .recipients
            .iter()
            .take(quarantine::MAX_HISTORY_RCPTS)
            .cloned()
            .collect(),
        recipient_count: env.recipients.len(),
        client_addr: env.client_addr.map(|a| a.to_string()),
        helo: client.helo.clone(),
        auth_user: env.auth_user.clone().filter(|u| !u.is_empty()),
        action: d.outcome.as_str().to_string(),
        score: d.verdict.as_ref().map(|v| v.score),
        hits: d
            .verdict
            .as_ref()
            .map(|v| {
                v.hits
                    .iter()
                    .take(quarantine::MAX_HISTORY_HITS)
                    .map(|h| (h.keyword.clone(), h.count))
                    .collect()
            })
            .unwrap_or_default(),
        size: size as u64,
        entry: d.kept.map(|(id, _)| id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Reservation;

    #[test]
    fn the_release_key_is_made_at_start_and_an_unsafe_one_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServiceConfig::default();
        config.accounts.db = dir.path().join("a.redb");
        config.milter.scan_threads = 1;
        let key = dir.path().join("release.key");
        config.quarantine.release_key = Some(key.clone());
        let svc = Service::new(&config, None).unwrap();
        assert!(svc.release_gate().is_some());
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(svc);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Service::new(&config, None).unwrap_err();
        assert!(
            matches!(e, ServeError::ReleaseKey(KeyError::Permissions { .. })),
            "{e}"
        );
        // Unset: beside the state store.
        config.quarantine.release_key = None;
        config.state.path = dir.path().join("state").join("state.redb");
        Service::new(&config, None).unwrap();
        assert!(dir.path().join("state").join("release.key").exists());
    }

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
            release_tokens: Vec::new(),
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
