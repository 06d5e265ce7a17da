//! The HTTP listener's connections: accepted by the milter's first network
//! thread beside its milter listener, and served, in turn, on the milter's
//! network runtimes (one single-threaded tokio runtime per core), so HTTP and
//! milter connections share the same threads, the same engine generation, the same
//! scan threads and buffer budget.
//!
//! Bounds: at most `[http] max_connections` connections (a new one beyond is
//! closed at once); the TLS handshake and each request's headers within
//! `header_timeout_secs` (which also closes a kept-alive connection quiet for that
//! long); a write blocked longer than `write_timeout_secs` fails the connection
//! (`super::io`); request bodies and handlers are bounded by the router
//! (`super::router`). HTTP/1.1 (and 1.0) with keep-alive; hyper's own limits on
//! header size and count apply.
//!
//! On SIGTERM the listener is closed, each connection finishes the request it is
//! in (hyper's graceful shutdown) and closes, and what is still open after
//! `[milter] drain_timeout_secs` is dropped.

use super::auth::Peer;
use super::io::TimedWrites;
use super::state::HttpState;
use super::tls;
use crate::server::{MAX_ACCEPT_BACKOFF, MIN_ACCEPT_BACKOFF};
use crate::service::Generation;
use crate::throttle::Throttled;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

/// Binds the HTTP listener.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// How the connections of one listener are served.
#[derive(Clone)]
struct ConnSettings {
    header_timeout: Duration,
    write_timeout: Duration,
}

/// Accepts HTTP connections until shutdown, then drains them.
pub(crate) async fn serve(
    state: Arc<HttpState>,
    listener: std::net::TcpListener,
    mut tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    workers: Vec<tokio::runtime::Handle>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot register the HTTP listener");
            return;
        }
    };
    let router = super::router::router(Arc::clone(&state));
    let first = state.service.current();
    let max = first
        .settings
        .http
        .clone()
        .unwrap_or_default()
        .max_connections;
    let mut seen: Weak<Generation> = Arc::downgrade(&first);
    drop(first);
    let slots = Arc::new(Semaphore::new(max));
    let mut tasks = JoinSet::new();
    let mut turn = 0usize;
    let mut refusals = Throttled::default();
    let mut failures = Throttled::default();
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = MIN_ACCEPT_BACKOFF;
                a
            }
            Err(e) => {
                if let Some(n) = failures.tick(Instant::now()) {
                    warn!(error = %e, since_last = n, "HTTP accept failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            state.service.metrics().http.refused();
            if let Some(n) = refusals.tick(Instant::now()) {
                warn!(
                    peer = %peer,
                    since_last = n,
                    "all {max} HTTP connection slots taken (http.max_connections): \
                     closing the new connection"
                );
            }
            drop(stream);
            continue;
        };
        state.service.metrics().http.connection();
        // After a reload: the TLS files may have changed (a renewed certificate).
        // Whether TLS is on is fixed at start, as is the address: a reload that
        // turned it off could expose a non-loopback listener in plain text.
        let g = state.service.current();
        if !std::ptr::eq(seen.as_ptr(), Arc::as_ptr(&g)) {
            seen = Arc::downgrade(&g);
            let wanted = g.settings.http.clone().unwrap_or_default();
            if wanted.has_tls() != tls.is_some() {
                warn!("TLS was turned on or off in [http]: that takes effect after a restart");
            } else if wanted.has_tls() {
                match tls::for_config(&wanted) {
                    Ok(t) => tls = t,
                    Err(e) => error!(
                        error = %e,
                        "TLS certificate or key refused on reload; the previous ones serve on"
                    ),
                }
            }
        }
        let http = g.settings.http.clone().unwrap_or_default();
        drop(g);
        let conn = ConnSettings {
            header_timeout: Duration::from_secs(http.header_timeout_secs),
            write_timeout: Duration::from_secs(http.write_timeout_secs),
        };
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "cannot hand the HTTP connection over");
                continue;
            }
        };
        let worker = &workers[turn % workers.len()];
        turn = turn.wrapping_add(1);
        tasks.spawn_on(
            connection(
                router.clone(),
                stream,
                peer,
                tls.clone(),
                conn,
                shutdown.clone(),
                permit,
            ),
            worker,
        );
    }
    drop(listener);
    let drain = Duration::from_secs(state.service.current().settings.milter.drain_timeout_secs);
    while tasks.try_join_next().is_some() {}
    if !tasks.is_empty() {
        info!(connections = tasks.len(), "draining HTTP connections");
    }
    if tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!(
            connections = tasks.len(),
            "HTTP drain timed out; closing the remaining connections"
        );
        tasks.abort_all();
    }
}

/// Serves one connection (on the worker runtime it was handed to).
async fn connection(
    router: Router,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    conn: ConnSettings,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let stream = match tokio::net::TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            debug!(error = %e, "cannot register an HTTP connection");
            return;
        }
    };
    match tls {
        None => serve_io(router, stream, peer, conn, shutdown).await,
        Some(acceptor) => {
            match tokio::time::timeout(conn.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => serve_io(router, s, peer, conn, shutdown).await,
                Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<T>(
    router: Router,
    io: T,
    peer: SocketAddr,
    conn: ConnSettings,
    mut shutdown: watch::Receiver<bool>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(TimedWrites::new(io, conn.write_timeout));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        let mut router = router.clone();
        async move { tower_service::Service::call(&mut router, req).await }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(conn.header_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(http);
    let result = tokio::select! {
        r = http.as_mut() => r,
        _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    if let Err(e) = result {
        debug!(peer = %peer, error = %e, "HTTP connection ended with an error");
    }
}
