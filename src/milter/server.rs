//! The milter network service: listeners, connections, scan threads, reload, drain.
//!
//! Connections are served by one single-threaded tokio runtime per network thread
//! (one per core by default; the first also accepts and hands connections out in
//! turn); each connection is a [`Session`] fed from a read buffer, with a timeout
//! on every read and write. A small message from an unauthenticated sender is
//! scanned on its network thread, which saves two thread wake-ups per message;
//! larger ones and outbound mail are scanned on a separate pool of scan threads, so
//! a large message never stalls the network threads or other connections, and a
//! scan that overruns its time limit gets the configured fallback answer instead of
//! a hang. A scan that panics gets it too, wherever it ran. The engine and its
//! checked settings are one [`Generation`] behind an `ArcSwap`: SIGHUP builds a new
//! one and swaps it in whole, or keeps the old one if the new configuration is
//! refused. SIGTERM stops accepting, lets connections finish the message they are
//! in, and exits (after `drain_timeout_secs` at most).

use super::accounts::{self, AccountStore, StoreError};
use super::budget::Budget;
use super::log_batch;
use super::metrics::{ErrorKind, Metrics};
use super::policy::{self, Decision, Outcome};
use super::protocol::{self, Command, ProtocolError};
use super::session::{ScanJob, Session, Step};
use super::settings::Settings;
use crate::config::ConfigError;
use crate::{Config, Engine, Envelope};
use arc_swap::ArcSwap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

/// Where the service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address, `host:port`.
    Inet(String),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;

    /// Parses `inet:HOST:PORT` (Postfix), `inet:PORT@HOST` (Sendmail),
    /// `inet6:[HOST]:PORT`, `unix:PATH` or `local:PATH`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "use inet:HOST:PORT, inet:PORT@HOST or unix:PATH";
        if let Some(path) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("local:")) {
            if path.is_empty() {
                return Err(format!("`{s}`: empty socket path; {usage}"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("inet:").or_else(|| s.strip_prefix("inet6:")) else {
            return Err(format!("`{s}`: {usage}"));
        };
        let hostport = match rest.split_once('@') {
            Some((port, host)) if host.contains(':') => format!("[{host}]:{port}"),
            Some((port, host)) => format!("{host}:{port}"),
            None => rest.to_string(),
        };
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(ListenAddr::Inet(hostport))
            }
            _ => Err(format!("`{s}`: needs a host and a port; {usage}")),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Inet(a) => write!(f, "inet:{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine could not be built.
    #[error("{0}")]
    Engine(#[from] crate::Error),
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
    #[error("cannot start: {0}")]
    Start(String),
}

/// An engine and the settings it was built with, swapped together on reload.
pub struct Generation {
    /// The engine.
    pub engine: Engine,
    /// The checked settings.
    pub settings: Arc<Settings>,
}

impl Generation {
    /// Checks `config` and builds its engine, ready to scan at full speed: on a
    /// reload the old generation serves until the new one has loaded its
    /// dictionary, so no message waits for it.
    pub fn build(config: &Config) -> Result<Generation, ServeError> {
        let settings = Settings::from_config(config)?;
        let engine = Engine::new(config)?;
        engine.wait_ready();
        Ok(Generation {
            engine,
            settings: Arc::new(settings),
        })
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The scan threads: a plain queue that idle threads sleep on. (rayon's pool spins
/// while it looks for work, which on a small machine takes CPU from the network
/// thread and the MTA.)
struct ScanPool {
    queue: std::sync::mpsc::Sender<Job>,
}

impl ScanPool {
    fn new(threads: usize) -> std::io::Result<ScanPool> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("chaff-scan-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job; a poisoned
                        // lock (a panic while holding it) still hands out jobs.
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the service is gone
                        }
                    }
                })?;
        }
        Ok(ScanPool { queue: tx })
    }

    fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        // Only fails when every scan thread is gone; the caller then times out
        // into the fallback answer.
        let _ = self.queue.send(Box::new(job));
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
    pub fn new(config: &Config, config_path: Option<PathBuf>) -> Result<Service, ServeError> {
        let generation = Generation::build(config)?;
        let store = AccountStore::open(&generation.settings.accounts.db)?;
        let threads = generation.settings.milter.scan_thread_count();
        let pool =
            ScanPool::new(threads).map_err(|e| ServeError::Start(format!("scan threads: {e}")))?;
        let budget = Budget::new(generation.settings.milter.max_buffered_bytes);
        Ok(Service {
            budget,
            current: ArcSwap::from_pointee(generation),
            store: Some(store),
            metrics: Metrics::default(),
            pool,
            config_path,
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

    /// The lock store.
    pub fn store(&self) -> Option<&AccountStore> {
        self.store.as_ref()
    }

    /// Reads the configuration file again and swaps in a new engine, atomically.
    /// On any error the old configuration keeps serving and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let config = match &self.config_path {
            Some(p) => Config::load(p).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        let generation = Generation::build(&config).map_err(|e| e.to_string())?;
        let old = self.current();
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
    fn reload_logged(&self) {
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
    async fn decide(self: &Arc<Self>, generation: Arc<Generation>, job: Box<ScanJob>) -> Decision {
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

    fn record(&self, d: &Decision, env: &Envelope, size: usize) {
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
                reply = d.reply.as_deref().unwrap_or("-"),
                buffered = self.budget.used(),
                max_buffered_bytes = self.budget.limit(),
                auth, from, size,
                "message deferred: too much mail in flight"
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

/// Why a connection ended early.
#[derive(Debug)]
enum ConnError {
    Protocol(ProtocolError),
    Timeout(&'static str),
    Disconnect,
    Io(std::io::Error),
}

impl From<ProtocolError> for ConnError {
    fn from(e: ProtocolError) -> Self {
        ConnError::Protocol(e)
    }
}

/// Serves one MTA connection until it quits, fails or the service drains.
async fn connection<S>(svc: Arc<Service>, stream: S, peer: String, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    svc.metrics.connection_opened();
    debug!(peer = %peer, "connection");
    match drive(&svc, stream, shutdown).await {
        Ok(()) => debug!(peer = %peer, "connection closed"),
        Err(ConnError::Protocol(e)) => {
            svc.metrics.error(ErrorKind::Protocol);
            warn!(peer = %peer, error = %e, "dropping connection: protocol error");
        }
        Err(ConnError::Timeout(what)) => {
            svc.metrics.error(ErrorKind::Timeout);
            warn!(peer = %peer, "dropping connection: {what} timed out");
        }
        Err(ConnError::Disconnect) => {
            svc.metrics.error(ErrorKind::Disconnect);
            info!(peer = %peer, "peer disconnected in the middle of a message");
        }
        Err(ConnError::Io(e)) => {
            svc.metrics.error(ErrorKind::Io);
            warn!(peer = %peer, error = %e, "dropping connection: I/O error");
        }
    }
    svc.metrics.connection_closed();
}

async fn drive<S>(
    svc: &Arc<Service>,
    mut stream: S,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session =
        Session::with_budget(Arc::clone(&svc.current().settings), Arc::clone(&svc.budget));
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let max_packet = session.settings().milter.max_packet_size;
        let mut used = 0;
        let mut close = false;
        while let Some((frame, n)) = protocol::split_frame(&buf[used..], max_packet)? {
            let cmd = Command::parse(frame)?;
            if matches!(cmd, Command::Mail(_)) {
                session.refresh(Arc::clone(&svc.current().settings));
            }
            let step = session.handle(cmd)?;
            used += n;
            match step {
                Step::Nothing => {}
                Step::Reply(r) => r.encode(&mut out),
                Step::Oversize {
                    response,
                    size,
                    envelope,
                } => {
                    let d = Decision::oversize(session.settings());
                    svc.record(&d, &envelope, size);
                    response.encode(&mut out);
                }
                Step::Busy {
                    response,
                    size,
                    envelope,
                } => {
                    svc.record(&Decision::busy(), &envelope, size);
                    response.encode(&mut out);
                }
                Step::Scan(job) => {
                    let envelope = job.envelope.clone();
                    let size = job.raw.len();
                    let generation = svc.current();
                    let d = svc.decide(generation, job).await;
                    svc.record(&d, &envelope, size);
                    if d.outcome == Outcome::Quarantine
                        && !session
                            .negotiated()
                            .is_some_and(|n| n.can(protocol::actions::QUARANTINE))
                    {
                        warn!(
                            queue_id = envelope.queue_id.as_deref().unwrap_or("-"),
                            "the MTA did not grant QUARANTINE: delivered with headers instead"
                        );
                    }
                    for r in session.finish(&d) {
                        r.encode(&mut out);
                    }
                }
                Step::Close => {
                    close = true;
                    break;
                }
            }
        }
        if used > 0 {
            buf.drain(..used);
        }
        if !out.is_empty() {
            let write_timeout = session.settings().write_timeout();
            match tokio::time::timeout(write_timeout, stream.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout("write")),
            }
        }
        if close || (*shutdown.borrow() && session.is_idle()) {
            return Ok(());
        }
        // Room for the rest of the packet being received (its length is known and
        // already checked), or for a few more small ones.
        let missing = match protocol::announced_len(&buf, max_packet)? {
            Some(len) => (4 + len).saturating_sub(buf.len()),
            None => 0,
        };
        buf.reserve(missing.max(8192));
        let read_timeout = session.settings().read_timeout();
        let idle = session.is_idle();
        let n = tokio::select! {
            r = tokio::time::timeout(read_timeout, stream.read_buf(&mut buf)) => match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(ConnError::Io(e)),
                Err(_) => return Err(ConnError::Timeout("read")),
            },
            _ = shutdown.changed(), if idle => return Ok(()),
        };
        if n == 0 {
            return if buf.is_empty() && session.is_idle() {
                Ok(())
            } else {
                Err(ConnError::Disconnect)
            };
        }
    }
}

/// A bound listener, not yet serving.
enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

fn bind(addr: &ListenAddr, socket_mode: u32) -> Result<(Bound, String), ServeError> {
    match addr {
        ListenAddr::Inet(hostport) => {
            let addrs: Vec<SocketAddr> = hostport
                .to_socket_addrs()
                .map_err(|e| ServeError::Address(format!("`{addr}`: {e}")))?
                .collect();
            let l = std::net::TcpListener::bind(&addrs[..]).map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
            let local = l
                .local_addr()
                .map(|a| format!("inet:{a}"))
                .unwrap_or_else(|_| addr.to_string());
            Ok((Bound::Tcp(l), local))
        }
        ListenAddr::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            let err = |source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            };
            // A socket left by a previous run is removed; anything else is kept.
            if let Ok(meta) = std::fs::symlink_metadata(path)
                && meta.file_type().is_socket()
            {
                std::fs::remove_file(path).map_err(err)?;
            }
            let l = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket_mode))
                .map_err(err)?;
            l.set_nonblocking(true).map_err(err)?;
            Ok((Bound::Unix(l, path.clone()), addr.to_string()))
        }
    }
}

/// Accepts connections until shutdown, then drains them. Each connection is served
/// on one of the network runtimes `workers`, in turn.
async fn accept_loop(
    svc: Arc<Service>,
    bound: Bound,
    mut shutdown: watch::Receiver<bool>,
    workers: Vec<tokio::runtime::Handle>,
) {
    enum L {
        Tcp(tokio::net::TcpListener),
        Unix(tokio::net::UnixListener, PathBuf),
    }
    let listener = match bound {
        Bound::Tcp(l) => tokio::net::TcpListener::from_std(l).map(L::Tcp),
        Bound::Unix(l, p) => tokio::net::UnixListener::from_std(l).map(|l| L::Unix(l, p)),
    };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot register the listener");
            return;
        }
    };
    let limit = svc.current().settings.milter.max_connections;
    let permits = Arc::new(Semaphore::new(limit));
    let mut tasks = JoinSet::new();
    let mut turn = 0usize;
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            r = async {
                match &listener {
                    L::Tcp(l) => l.accept().await.and_then(|(s, a)| {
                        let _ = s.set_nodelay(true);
                        Ok((Conn::Tcp(s.into_std()?), a.to_string()))
                    }),
                    L::Unix(l, _) => l
                        .accept()
                        .await
                        .and_then(|(s, _)| Ok((Conn::Unix(s.into_std()?), "unix".into()))),
                }
            } => r,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((conn, peer)) => {
                let svc = Arc::clone(&svc);
                let rx = shutdown.clone();
                let worker = &workers[turn % workers.len()];
                turn = turn.wrapping_add(1);
                // The socket is registered with the chosen runtime's reactor from
                // within that runtime.
                tasks.spawn_on(
                    async move {
                        serve(svc, conn, peer, rx).await;
                        drop(permit);
                    },
                    worker,
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a little, keep serving.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let drain = Duration::from_secs(svc.current().settings.milter.drain_timeout_secs);
    let open = tasks.len();
    if open > 0 {
        info!(connections = open, "draining");
    }
    if tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!(
            connections = tasks.len(),
            "drain timed out; closing the remaining connections"
        );
        tasks.abort_all();
    }
    if let L::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}

/// Registers an accepted socket with the runtime this runs on, and serves it.
async fn serve(svc: Arc<Service>, conn: Conn, peer: String, shutdown: watch::Receiver<bool>) {
    let unusable = match conn {
        Conn::Tcp(s) => match tokio::net::TcpStream::from_std(s) {
            Ok(s) => return connection(svc, s, peer, shutdown).await,
            Err(e) => e,
        },
        Conn::Unix(s) => match tokio::net::UnixStream::from_std(s) {
            Ok(s) => return connection(svc, s, peer, shutdown).await,
            Err(e) => e,
        },
    };
    warn!(peer = %peer, error = %unusable, "cannot register a connection");
}

/// An accepted connection on its way to the network runtime that will serve it.
enum Conn {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

/// Answers `GET /metrics` on a plain TCP listener.
async fn metrics_loop(
    svc: Arc<Service>,
    listener: std::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot register the metrics listener");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let svc = Arc::clone(&svc);
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), metrics_request(svc, stream)).await;
        });
    }
}

async fn metrics_request(svc: Arc<Service>, mut stream: tokio::net::TcpStream) {
    let mut req = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&chunk[..n]),
        }
    }
    let line = req.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let wanted = line.starts_with(b"GET /metrics ") || line.starts_with(b"GET / ");
    let (status, body) = if wanted {
        let svc2 = Arc::clone(&svc);
        let locked = tokio::task::spawn_blocking(move || svc2.store().map(|s| s.locked_count()))
            .await
            .ok()
            .flatten()
            .and_then(|r| r.ok());
        ("200 OK", svc.metrics().render(locked, Some(svc.budget())))
    } else {
        ("404 Not Found", "not found; try /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen for MTAs.
    pub listen: ListenAddr,
    /// Where to serve metrics (`HOST:PORT`), if anywhere.
    pub metrics: Option<String>,
    /// The configuration file SIGHUP reads again.
    pub config_path: Option<PathBuf>,
}

/// A service running on its own threads (tests, benchmarks, the CLI).
pub struct ServerHandle {
    addr: String,
    metrics_addr: Option<SocketAddr>,
    service: Arc<Service>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address actually listened on, e.g. `inet:127.0.0.1:40123` (a port of 0
    /// in the options is replaced by the one the system chose).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The metrics listener's address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The running service.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Reloads the configuration, as SIGHUP does.
    pub fn reload(&self) -> Result<(), String> {
        let r = self.service.reload();
        self.service.metrics.reload(r.is_ok());
        r
    }

    /// Stops accepting, drains connections and waits for the threads to end.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Blocks until SIGTERM or SIGINT, reloading on SIGHUP, then shuts down.
    pub fn run_until_signalled(self) -> Result<(), ServeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ServeError::Start(format!("signal runtime: {e}")))?;
        let svc = Arc::clone(&self.service);
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let start = |k| signal(k).map_err(|e| ServeError::Start(format!("signals: {e}")));
            let mut hup = start(SignalKind::hangup())?;
            let mut term = start(SignalKind::terminate())?;
            let mut int = start(SignalKind::interrupt())?;
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        let svc = Arc::clone(&svc);
                        let _ = tokio::task::spawn_blocking(move || svc.reload_logged()).await;
                    }
                    _ = term.recv() => { info!("SIGTERM: draining"); break; }
                    _ = int.recv() => { info!("SIGINT: draining"); break; }
                }
            }
            Ok::<(), ServeError>(())
        })?;
        self.shutdown();
        info!("stopped");
        Ok(())
    }
}

/// Starts the service on background threads and returns once it listens.
pub fn spawn(config: &Config, opts: ServeOptions) -> Result<ServerHandle, ServeError> {
    let service = Arc::new(Service::new(config, opts.config_path.clone())?);
    let settings = service.current().settings.clone();
    let (bound, addr) = bind(&opts.listen, settings.milter.socket_mode)?;
    let metrics = match &opts.metrics {
        Some(m) => {
            let l = std::net::TcpListener::bind(m).map_err(|source| ServeError::Bind {
                addr: m.clone(),
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| ServeError::Bind {
                addr: m.clone(),
                source,
            })?;
            Some(l)
        }
        None => None,
    };
    let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
    let (tx, rx) = watch::channel(false);
    // Each network thread runs its own single-threaded runtime and serves the
    // connections it is handed, scanning small messages itself: no thread hands
    // work to another for them, and there are as many such threads as cores. The
    // first also accepts connections and serves metrics.
    let threads = settings.milter.network_thread_count();
    let runtimes = (0..threads)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Each network thread's log lines go out when it runs out of work.
                .on_thread_park(log_batch::flush)
                .build()
                .map_err(|e| ServeError::Start(format!("network runtime: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let workers: Vec<_> = runtimes.iter().map(|rt| rt.handle().clone()).collect();
    let (stop_workers, stopped) = watch::channel(false);
    let mut runtimes = runtimes.into_iter();
    let first = runtimes
        .next()
        .ok_or_else(|| ServeError::Start("no network thread".into()))?;
    let mut others = Vec::with_capacity(threads - 1);
    for (i, rt) in runtimes.enumerate() {
        let mut stopped = stopped.clone();
        let t = std::thread::Builder::new()
            .name(format!("chaff-net-{}", i + 1))
            .spawn(move || {
                log_batch::start_batching();
                // Serves the connections handed to it until the first thread has
                // drained them all (or is gone).
                rt.block_on(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
                log_batch::flush();
            })
            .map_err(|e| ServeError::Start(format!("network thread: {e}")))?;
        others.push(t);
    }
    let svc = Arc::clone(&service);
    let thread = std::thread::Builder::new()
        .name("chaff-net-0".into())
        .spawn(move || {
            log_batch::start_batching();
            first.block_on(async move {
                if let Some(l) = metrics {
                    tokio::spawn(metrics_loop(Arc::clone(&svc), l, rx.clone()));
                }
                accept_loop(svc, bound, rx, workers).await;
            });
            let _ = stop_workers.send(true);
            for t in others {
                let _ = t.join();
            }
            first.shutdown_timeout(Duration::from_secs(1));
            log_batch::flush();
        })
        .map_err(|e| ServeError::Start(format!("service thread: {e}")))?;
    info!(
        listen = %addr,
        metrics = ?metrics_addr,
        accounts = %settings.accounts.db.display(),
        "chaff milter listening"
    );
    Ok(ServerHandle {
        addr,
        metrics_addr,
        service,
        shutdown: tx,
        thread: Some(thread),
    })
}

/// Runs the service in the foreground until SIGTERM or SIGINT; SIGHUP reloads.
pub fn run(config: &Config, opts: ServeOptions) -> Result<(), ServeError> {
    spawn(config, opts)?.run_until_signalled()
}

/// Reads `path`'s configuration and checks it the way the service would, without
/// starting anything.
pub fn check(path: &Path) -> Result<(), ServeError> {
    let config = Config::load(path)?;
    Settings::from_config(&config)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::milter::budget::Reservation;

    #[test]
    fn small_mail_from_unauthenticated_senders_is_scanned_inline() {
        let mut config = Config::default();
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

    #[test]
    fn listen_addresses_parse_in_postfix_and_sendmail_forms() {
        let p = |s: &str| s.parse::<ListenAddr>();
        assert_eq!(
            p("inet:127.0.0.1:8891"),
            Ok(ListenAddr::Inet("127.0.0.1:8891".into()))
        );
        assert_eq!(
            p("inet:8891@localhost"),
            Ok(ListenAddr::Inet("localhost:8891".into()))
        );
        assert_eq!(
            p("inet6:8891@::1"),
            Ok(ListenAddr::Inet("[::1]:8891".into()))
        );
        assert_eq!(
            p("unix:/run/chaff/milter.sock"),
            Ok(ListenAddr::Unix("/run/chaff/milter.sock".into()))
        );
        for bad in [
            "127.0.0.1:1",
            "inet:",
            "inet:host",
            "inet:host:port",
            "unix:",
            "tcp:1",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
