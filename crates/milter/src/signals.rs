//! Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT end the wait, after
//! which the caller (the server's `ServerHandle::run_until_signalled`) drains and
//! stops the service.

use super::service::{ServeError, Service};
use std::sync::Arc;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::info;

/// The service's signal handlers, installed before it listens: a SIGHUP that
/// arrives as soon as the socket accepts must reload, not kill the process (the
/// default action of an unhandled SIGHUP).
pub(crate) struct Signals {
    rt: tokio::runtime::Runtime,
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers for SIGHUP, SIGTERM and SIGINT.
    pub(crate) fn install() -> Result<Signals, ServeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ServeError::Start {
                what: "signal runtime",
                source: e,
            })?;
        let start = |k| {
            let _in_runtime = rt.enter();
            signal(k).map_err(|e| ServeError::Start {
                what: "signals",
                source: e,
            })
        };
        let hup = start(SignalKind::hangup())?;
        let term = start(SignalKind::terminate())?;
        let int = start(SignalKind::interrupt())?;
        Ok(Signals { rt, hup, term, int })
    }

    /// Blocks until SIGTERM or SIGINT, reloading `svc` on every SIGHUP (on a
    /// blocking thread, so signals keep being handled while the new engine loads).
    pub(crate) fn wait_for_stop(self, svc: &Arc<Service>) {
        let Signals {
            rt,
            mut hup,
            mut term,
            mut int,
        } = self;
        let svc = Arc::clone(svc);
        rt.block_on(async move {
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
        });
    }
}
