//! Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT end the wait, after
//! which the caller (the server's `ServerHandle::run_until_signalled`) drains and
//! stops the service.

use super::service::{ServeError, Service};
use std::sync::Arc;
use tracing::info;

/// Blocks until SIGTERM or SIGINT, reloading `svc` on every SIGHUP (on a blocking
/// thread, so signals keep being handled while the new engine loads).
pub(crate) fn wait_for_stop(svc: &Arc<Service>) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Start {
            what: "signal runtime",
            source: e,
        })?;
    let svc = Arc::clone(svc);
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let start = |k| {
            signal(k).map_err(|e| ServeError::Start {
                what: "signals",
                source: e,
            })
        };
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
        Ok(())
    })
}
