//! The milter network service: listeners, network threads, start and stop.
//!
//! Connections are served by one single-threaded tokio runtime per network thread
//! (one per core by default; the first also accepts and hands connections out in
//! turn, and serves the metrics endpoint, module `metrics_http`); each connection
//! is driven by module `connection` against the shared [`Service`] (engine,
//! settings, lock store, scan threads). SIGHUP reloads (module `signals`); SIGTERM
//! stops accepting, lets connections finish the message they are in, and exits
//! (after `drain_timeout_secs` at most).
//!
//! A connection is always accepted, never left in the listen backlog: when all
//! `max_connections` slots are taken, the slot rule of module `slots` closes a
//! connection that has not negotiated, trickles a packet or has been quiet beyond
//! `evict_idle_after_secs`, or else closes the new one at once. At start the soft
//! limit on open files is raised for `max_connections` (module `fd_limit`).

use super::config::ServiceConfig;
use super::connection::{self, Conn};
use super::fd_limit;
use super::http;
use super::log_batch;
use super::metrics_http;
pub use super::service::{Generation, ServeError, Service};
use super::signals;
use super::slots::{Admission, Slots};
use super::throttle::Throttled;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

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
            // A socket left by a previous run is removed; anything else is kept. A
            // socket something still answers on belongs to a running instance:
            // refusing to start keeps it reachable.
            if let Ok(meta) = std::fs::symlink_metadata(path)
                && meta.file_type().is_socket()
            {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another process is listening on this socket (is chaff milter \
                         already running?)",
                    )));
                }
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

/// First wait after a failed accept (out of file descriptors, say); it doubles
/// while accepts keep failing, up to [`MAX_ACCEPT_BACKOFF`].
pub const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two accepts after failures.
pub const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(2);

/// Connection slots for `max_connections` under an open-files limit of `fds`
/// (None: unknown): `max_connections`, or fewer when the limit cannot hold them
/// with [`fd_limit::MARGIN`] to spare (then `fds` − margin, or half of `fds` when
/// that is small), so the slot rule frees slots before accepts run out of
/// descriptors.
pub fn slots_for(max_connections: usize, fds: Option<u64>) -> usize {
    let Some(fds) = fds else {
        return max_connections;
    };
    let room = if fds > 2 * fd_limit::MARGIN {
        fds - fd_limit::MARGIN
    } else {
        fds / 2
    };
    max_connections.min(usize::try_from(room).unwrap_or(usize::MAX).max(1))
}

/// Accepts connections until shutdown, then drains them. Each connection is served
/// on one of the network runtimes `workers`, in turn.
async fn accept_loop(
    svc: Arc<Service>,
    bound: Bound,
    mut shutdown: watch::Receiver<bool>,
    workers: Vec<tokio::runtime::Handle>,
    limit: usize,
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
    let slots = Slots::new(limit);
    let mut tasks = JoinSet::new();
    let mut turn = 0usize;
    let mut evictions = Throttled::default();
    let mut refusals = Throttled::default();
    let mut accept_failures = Throttled::default();
    let mut accept_backoff = MIN_ACCEPT_BACKOFF;
    loop {
        while tasks.try_join_next().is_some() {}
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
                accept_backoff = MIN_ACCEPT_BACKOFF;
                let now = Instant::now();
                let idle_after =
                    Duration::from_secs(svc.current().settings.milter.evict_idle_after_secs);
                let slot = match slots.admit(now, idle_after) {
                    Admission::Admitted(slot, evicted) => {
                        if let Some(reason) = evicted {
                            svc.metrics().connection_evicted(reason);
                            if let Some(n) = evictions.tick(now) {
                                info!(
                                    reason = reason.as_str(),
                                    since_last = n,
                                    "all {limit} connection slots taken: closed a connection \
                                     to make room for a new one"
                                );
                            }
                        }
                        slot
                    }
                    Admission::Full => {
                        svc.metrics().connection_refused();
                        if let Some(n) = refusals.tick(now) {
                            warn!(
                                peer = %peer,
                                since_last = n,
                                "all {limit} connection slots taken by busy or recently \
                                 active connections: closing the new connection (the MTA \
                                 applies its default action)"
                            );
                        }
                        drop(conn);
                        continue;
                    }
                };
                let svc = Arc::clone(&svc);
                let rx = shutdown.clone();
                let worker = &workers[turn % workers.len()];
                turn = turn.wrapping_add(1);
                // The socket is registered with the chosen runtime's reactor from
                // within that runtime.
                tasks.spawn_on(connection::serve(svc, conn, peer, rx, slot, now), worker);
            }
            Err(e) => {
                // Out of file descriptors and the like: keep serving the open
                // connections, try again after a wait that doubles while accepts
                // keep failing, and log one line per interval with the count.
                if let Some(n) = accept_failures.tick(Instant::now()) {
                    warn!(
                        error = %e,
                        since_last = n,
                        retry_in_ms = accept_backoff.as_millis() as u64,
                        "accept failed"
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(accept_backoff) => {}
                    _ = shutdown.changed() => break,
                }
                accept_backoff = (accept_backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        }
    }
    // Stop listening before the drain, so new connections are refused at once
    // rather than left waiting in the backlog (the MTA applies its default action
    // or tries another milter).
    let unix_path = match &listener {
        L::Unix(_, p) => Some(p.clone()),
        L::Tcp(_) => None,
    };
    drop(listener);
    let drain = Duration::from_secs(svc.current().settings.milter.drain_timeout_secs);
    // Connections that have ended are not counted as draining.
    while tasks.try_join_next().is_some() {}
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
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
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
    /// Where to listen for HTTP (`HOST:PORT`), overriding `[http] listen`; the
    /// HTTP listener runs when this is set or the configuration has an `[http]`
    /// table.
    pub http: Option<String>,
}

/// A service running on its own threads (tests, benchmarks, the CLI).
pub struct ServerHandle {
    addr: String,
    metrics_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    service: Arc<Service>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The thread that reloads after an edit of the stored sender lists, and
    /// the way to stop it.
    watcher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("http_addr", &self.http_addr)
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

    /// The HTTP listener's address, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The running service.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Reloads the configuration, as SIGHUP does.
    pub fn reload(&self) -> Result<(), String> {
        let r = self.service.reload();
        self.service.metrics().reload(r.is_ok());
        r
    }

    /// Stops accepting, drains connections and waits for the threads to end.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some((stop, t)) = self.watcher.take() {
            let _ = stop.send(());
            let _ = t.join();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The connections are done: write the history held and stop the writer.
        self.service.stop_state();
    }

    /// Blocks until SIGTERM or SIGINT, reloading on SIGHUP, then shuts down.
    pub fn run_until_signalled(self) -> Result<(), ServeError> {
        let signals = signals::Signals::install()?;
        self.run_until(signals);
        Ok(())
    }

    /// [`Self::run_until_signalled`] with handlers installed earlier.
    fn run_until(self, signals: signals::Signals) {
        signals.wait_for_stop(&self.service);
        self.shutdown();
        info!("stopped");
    }
}

/// Starts the service on background threads and returns once it listens.
pub fn spawn(config: &ServiceConfig, opts: ServeOptions) -> Result<ServerHandle, ServeError> {
    let service = Arc::new(Service::new(config, opts.config_path.clone())?);
    let settings = service.current().settings.clone();
    let max = settings.milter.max_connections;
    let limit = slots_for(max, fd_limit::ensure(max));
    if limit < max {
        warn!(
            slots = limit,
            max_connections = max,
            "serving at most {limit} connections at once, not max_connections: the \
             open-files limit cannot hold more"
        );
    }
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
    let http = start_http(&service, opts.http.as_deref())?;
    let http_addr = http.as_ref().and_then(|h| h.1.local_addr().ok());
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
                .map_err(|e| ServeError::Start {
                    what: "network runtime",
                    source: e,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let workers: Vec<_> = runtimes.iter().map(|rt| rt.handle().clone()).collect();
    let (stop_workers, stopped) = watch::channel(false);
    let mut runtimes = runtimes.into_iter();
    let first = runtimes.next().ok_or_else(|| ServeError::Start {
        what: "network runtime",
        source: std::io::Error::other("no network thread"),
    })?;
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
            .map_err(|e| ServeError::Start {
                what: "network thread",
                source: e,
            })?;
        others.push(t);
    }
    let svc = Arc::clone(&service);
    let thread = std::thread::Builder::new()
        .name("chaff-net-0".into())
        .spawn(move || {
            log_batch::start_batching();
            first.block_on(async move {
                if let Some(l) = metrics {
                    tokio::spawn(metrics_http::metrics_loop(Arc::clone(&svc), l, rx.clone()));
                }
                let http = http.map(|(state, listener, tls)| {
                    tokio::spawn(http::server::serve(
                        state,
                        listener,
                        tls,
                        rx.clone(),
                        workers.clone(),
                    ))
                });
                accept_loop(svc, bound, rx, workers, limit).await;
                if let Some(h) = http {
                    let _ = h.await;
                }
            });
            let _ = stop_workers.send(true);
            for t in others {
                let _ = t.join();
            }
            first.shutdown_timeout(Duration::from_secs(1));
            log_batch::flush();
        })
        .map_err(|e| ServeError::Start {
            what: "service thread",
            source: e,
        })?;
    let (stop_watcher, stopped_watcher) = std::sync::mpsc::channel::<()>();
    let svc = Arc::clone(&service);
    let watcher = std::thread::Builder::new()
        .name("chaff-senders".into())
        .spawn(move || {
            // An edit of the stored sender lists (the API, `chaff senders`)
            // reloads as SIGHUP does; a reload builds an engine, so not on a
            // network thread.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped_watcher.recv_timeout(super::service::SENDERS_CHECK_INTERVAL)
            {
                svc.reload_if_senders_changed();
            }
        })
        .map_err(|e| ServeError::Start {
            what: "sender list watcher",
            source: e,
        })?;
    info!(
        listen = %addr,
        metrics = ?metrics_addr,
        http = ?http_addr,
        accounts = %settings.accounts.db.display(),
        state = %settings.state.path.display(),
        quarantine = settings.quarantine.mode.as_str(),
        "chaff milter listening"
    );
    Ok(ServerHandle {
        addr,
        metrics_addr,
        http_addr,
        service,
        shutdown: tx,
        thread: Some(thread),
        watcher: Some((stop_watcher, watcher)),
    })
}

/// The HTTP listener's state, bound socket and TLS acceptor, before it serves.
type HttpStart = (
    Arc<http::HttpState>,
    std::net::TcpListener,
    Option<tokio_rustls::TlsAcceptor>,
);

/// The HTTP listener, bound and ready to serve, if it is to run: when `--http`
/// gave an address or the configuration has an `[http]` table. Refused (with the
/// reason) on a non-loopback address without TLS and users, an address in use,
/// unreadable TLS files or an unreadable users file.
fn start_http(service: &Arc<Service>, addr: Option<&str>) -> Result<Option<HttpStart>, ServeError> {
    let g = service.current();
    let settings = &g.settings;
    let Some(listen) = addr
        .map(str::to_string)
        .or_else(|| settings.http.as_ref().map(|h| h.listen.clone()))
    else {
        return Ok(None);
    };
    let config = settings.http.clone().unwrap_or_default();
    let sock = http::config::parse_listen(&listen).map_err(ServeError::Http)?;
    http::config::check_exposure(sock, &config, &settings.users).map_err(ServeError::Http)?;
    let tls = http::tls_acceptor(&config).map_err(ServeError::Http)?;
    let state = http::HttpState::new(Arc::clone(service)).map_err(ServeError::Http)?;
    let listener = http::server::bind(sock).map_err(|source| ServeError::Bind {
        addr: format!("http {listen}"),
        source,
    })?;
    Ok(Some((state, listener, tls)))
}

/// Runs the service in the foreground until SIGTERM or SIGINT; SIGHUP reloads.
pub fn run(config: &ServiceConfig, opts: ServeOptions) -> Result<(), ServeError> {
    // Handlers first: the MTA (or an admin's SIGHUP) may reach the service as soon
    // as it listens.
    let signals = signals::Signals::install()?;
    spawn(config, opts)?.run_until(signals);
    Ok(())
}

/// Reads `path`'s configuration and checks it the way the service would, without
/// starting anything.
pub fn check(path: &Path) -> Result<(), ServeError> {
    ServiceConfig::load(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fit_the_open_files_limit() {
        assert_eq!(slots_for(1024, None), 1024);
        assert_eq!(slots_for(1024, Some(4096)), 1024);
        assert_eq!(slots_for(1024, Some(1024)), 768);
        assert_eq!(slots_for(1024, Some(160)), 80);
        assert_eq!(slots_for(1024, Some(1)), 1);
        assert_eq!(slots_for(10, Some(0)), 1);
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
