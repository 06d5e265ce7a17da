//! The milter service: Postfix and Sendmail hand each message to chaff over a socket.
//!
//! `chaff milter --listen inet:127.0.0.1:8891` speaks the Sendmail milter protocol,
//! version 6, so an MTA can ask chaff about every message before accepting it:
//!
//! | verdict | what the MTA is told | what the SMTP client sees |
//! |---|---|---|
//! | deliver | add `X-Spam-Score` and `X-Spam-Status` (hits; with a model, tokens), continue | `250 … queued` |
//! | quarantine | the same headers, QUARANTINE with the reason | `250 … queued`; the message waits on hold |
//! | reject | REPLYCODE with the reply (default below) | `557 5.7.1 forbid to send spam mail` |
//! | oversize | REPLYCODE with the oversize reply | `552 5.3.4 Message size exceeds fixed limit` |
//! | too much mail in flight | REPLYCODE, TEMPFAIL | `451 4.3.2 chaff: too much mail in flight, try again later` |
//! | locked account | REPLYCODE with the reject reply | `557 5.7.1 forbid to send spam mail` |
//! | chaff cannot decide | the `fallback` in `[milter]`: continue (default), tempfail or reject | |
//! | released (a valid [release token](release::token)) | not scanned: the token header removed, continue | `250 … queued` |
//!
//! Mail from an SMTP-authenticated sender (`{auth_authen}`) is outbound: the engine
//! applies the `[outbound]` thresholds, and an account whose mail is rejected
//! `lock_after` times within `window_secs` is locked until
//! `chaff accounts unlock USER` ([`accounts`]).
//!
//! The pieces, from the wire up:
//! - [`protocol`]: the packet codec (chaff's own; see there why not a crate);
//! - [`session`]: one connection's state machine, rebuilding each message without
//!   buffering past `max_message_size`;
//! - [`budget`]: the cap on bytes buffered across all connections
//!   (`max_buffered_bytes`; a message over it gets `451 4.3.2`, TEMPFAIL);
//! - [`policy`]: the decision at end of message and the responses it becomes;
//! - [`release`]: releasing quarantined mail: the release token and key, the
//!   milter's check of it ([`release::gate`]), delivery by SMTP to the relay and
//!   from Postfix's hold queue;
//! - [`resend`]: releasing one quarantine entry, the store's state machine around
//!   the delivery, with learning as ham and allowing the sender: what the
//!   `chaff quarantine release` command and the HTTP API both call;
//! - [`accounts`]: the lock store (redb), shared with the `chaff accounts` command;
//! - [`service`]: what every connection shares: engine and settings (swapped whole
//!   on reload), lock store, counters, buffer budget, and the scan threads
//!   (`scan_pool`) with their time limit and fallback;
//! - `connection`: the connection driver, reading packets into a session and
//!   writing its answers, within deadlines (negotiation, packet, message, quiet);
//! - [`slots`]: the `max_connections` slots and the rule that frees one for a new
//!   connection; [`fd_limit`]: the open-files limit raised for them;
//! - [`server`]: listeners, network threads, start, SIGTERM drain; `signals`:
//!   SIGHUP reload, SIGTERM and SIGINT;
//! - [`metrics`]: Prometheus counters, served on `--metrics HOST:PORT` by
//!   `metrics_http`;
//! - [`log_batch`], [`cpu_time`], [`memory`]: the log lines of the network threads
//!   written in batches (and `throttle`: those that come in storms, rate-limited), a scan's CPU time, transparent huge pages turned off;
//! - `client` (feature `client`): the MTA side, as Postfix speaks it, for tests and
//!   benchmarks, not part of the service's API;
//! - [`http`]: the HTTP listener in the same process: Rspamd's protocol
//!   (`/checkv2`, `rspamc`), learning, the admin API; [`users`]: the users file
//!   it authenticates against;
//! - [`time`]: points in time as the quarantine list's `since` and `until` take
//!   them (durations, RFC 3339, dates, seconds);
//! - [`config`] and [`settings`]: the `[milter]`, `[accounts]`, `[http]` and
//!   `[users]` tables, checked.

#![deny(missing_docs)]

pub mod accounts;
pub mod budget;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
mod connection;
pub mod console;
pub mod cpu_time;
pub mod fd_limit;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod log_batch;
pub mod memory;
pub mod metrics;
mod metrics_http;
pub mod policy;
pub mod protocol;
pub mod quarantine;
pub mod release;
pub mod resend;
mod scan_pool;
pub mod server;
pub mod service;
pub mod session;
pub mod settings;
mod signals;
pub mod site_policy;
pub mod slots;
pub mod state;
mod throttle;
pub mod time;
pub mod users;
pub use config::{AccountsConfig, MilterConfig, ServiceConfig};
