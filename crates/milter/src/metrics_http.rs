//! The metrics endpoint: a minimal HTTP/1.1 server on `--metrics HOST:PORT` that
//! answers `GET /metrics` with the [counters](crate::metrics) in Prometheus' text
//! format, until `shutdown`.

use super::service::Service;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tracing::error;

/// Answers `GET /metrics` on a plain TCP listener.
pub(crate) async fn metrics_loop(
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

/// Reads one request and answers it: the counters for `GET /metrics` (or `/`),
/// 404 for anything else; then closes.
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
        // Both reads may touch the disk: off the network thread.
        let (locked, totals) = tokio::task::spawn_blocking(move || {
            (
                match svc2.locks() {
                    Some(l @ crate::state::Locks::Redis(_)) => {
                        l.list().ok().map(|v| v.len() as u64)
                    }
                    _ => svc2.store().and_then(|s| s.locked_count().ok()),
                },
                svc2.state().totals().ok(),
            )
        })
        .await
        .unwrap_or((None, None));
        let store = svc.store().map(|s| s.stats());
        let mut body = svc.metrics().render(locked, Some(svc.budget()), store);
        body.push_str(&svc.metrics().render_state(
            svc.state().db_stats(),
            svc.keeper().stats(),
            totals,
        ));
        body.push_str(
            &svc.metrics()
                .render_backend(svc.shared().map(|r| r.stats())),
        );
        ("200 OK", body)
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
