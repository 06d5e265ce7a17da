//! The HTTP listener: Rspamd's scanning protocol (`/checkv2`, `/check`, `/ping`,
//! `/learnspam`, `/learnham`) and the admin API (`/api/…`), in the milter's own
//! process and on its own threads.
//!
//! It starts with `chaff milter` when the configuration has an `[http]` table or
//! the command line gives `--http HOST:PORT` (see [`config`]), listens on
//! loopback unless TLS and users are configured, and stops with the milter's
//! SIGTERM drain. It shares the milter's [`Service`](crate::service::Service): the
//! engine generation SIGHUP swaps, the lock store, the counters, the scan threads
//! and their time limit and fallback, and the buffer budget.
//!
//! One concern per file:
//! - [`config`]: the `[http]` and `[users]` tables, and the loopback rule;
//! - `server`: accepting, TLS handshakes (`tls`), connections on the network
//!   runtimes, write time limits (`io`), the drain;
//! - [`router`]: the routes and the size and time limits every request is held to;
//! - [`auth`]: credentials (Bearer, Basic, Rspamd's `Password:`), the users file
//!   (`crate::users`), roles and their extractors; `attempts`: the delays failed
//!   attempts earn;
//! - [`error`]: errors as JSON (`{"error": "…"}`) with their status;
//! - [`rspamd`]: the scanning protocol; `body`: reading a message within the size
//!   limit and the buffer budget; `learn`: learning;
//! - [`api`]: the admin API, where new `/api/` endpoints go;
//! - [`metrics`]: answers by status, connections, failed authentications;
//! - [`state`]: what the handlers share.

pub mod api;
mod attempts;
pub mod auth;
mod body;
pub mod config;
pub mod error;
mod io;
pub(crate) mod learn;
pub mod metrics;
pub mod router;
pub mod rspamd;
pub(crate) mod server;
pub mod state;
mod tls;

pub use auth::{Admin, Caller, Principal, Reader, Scanner};
pub use error::{ApiError, Json};
pub use learn::LEARN_LOCK_WAIT;
pub use state::HttpState;
pub(crate) use tls::for_config as tls_acceptor;

/// Reads the files the HTTP listener would read at start (the TLS certificate
/// and key, the users file), for `chaff check-config`.
pub fn check_files(
    http: Option<&config::HttpConfig>,
    users: &config::UsersConfig,
) -> Result<(), String> {
    if let Some(h) = http {
        tls::for_config(h)?;
    }
    if let Some(f) = &users.file {
        crate::users::Users::load(f).map_err(|e| e.to_string())?;
    }
    Ok(())
}
