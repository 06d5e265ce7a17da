//! The admin console: HTML pages at `/` of the HTTP listener, in English and
//! Chinese (zh-CN), for the spam report list (the quarantine), locked accounts,
//! the allow and block lists, the scan history, trying a message, and the
//! dashboard.
//!
//! The pages are rendered on the server ([`maud`], every interpolation escaped)
//! and call the same functions as the JSON API (`crate::http::api`): a release
//! is `resend::release_entry` through the API's `release_entries`, a delete
//! the API's `delete_entries`, learning `chaff_train::learn::ModelFile` through
//! `http::learn::with_model`, the lists, accounts and figures the API's
//! handlers themselves; each change goes to the action log as `http:NAME`.
//! Everything the pages need is in the binary (`assets`: one style sheet, one
//! small script, an icon); nothing is fetched from elsewhere.
//!
//! One concern per file:
//! - [`session`]: sessions (cookie, bounded table, idle expiry);
//! - [`csrf`]: the tokens every `POST` carries;
//! - [`i18n`]: languages, from `Accept-Language` or the `chaff_lang` cookie,
//!   and the catalogue of each;
//! - `form`: submitted forms; `request`: the extractors (who is signed in,
//!   which language) and answers with the security headers;
//! - `layout`: the page around each screen; `explain`: a verdict and a
//!   message's decoded text with its hits highlighted; `chart`: the SVG chart;
//! - one file per screen: `login`, `dashboard`, `reports` (the spam report
//!   list, an entry's preview, and the actions on them), `accounts`,
//!   `senders`, `history`, `try_message`;
//! - `assets`: the static files.
//!
//! Security: a user of the users file signs in with name and password (Argon2id,
//! with the API's delays after failed attempts per address and per user); the
//! `read` role sees no action buttons and its action requests are refused with
//! 403; every page is sent with a Content-Security-Policy that allows only this
//! origin's script and style and `frame-ancestors 'none'`; a message's HTML is
//! never rendered, only its decoded text, escaped.

mod accounts;
mod assets;
mod chart;
pub mod csrf;
mod dashboard;
mod explain;
pub mod form;
mod history;
pub mod i18n;
mod layout;
mod login;
mod reports;
mod request;
mod senders;
pub mod session;
mod try_message;

use crate::http::state::HttpState;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

pub use request::SECURITY_HEADERS;
pub use session::Sessions;

/// The console's state in [`HttpState`]: the sessions open.
#[derive(Debug, Default)]
pub struct Console {
    /// The sessions open.
    pub sessions: Sessions,
}

/// The console's routes.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/", get(dashboard::show))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/lang", get(login::switch_language))
        .route("/reports", get(reports::list))
        .route("/reports/act", post(reports::act))
        .route("/reports/{id}", get(reports::show))
        .route("/accounts", get(accounts::page_of).post(accounts::act))
        .route("/senders", get(senders::page_of).post(senders::act))
        .route("/history", get(history::page_of))
        .route("/try", get(try_message::form).post(try_message::submit))
        .route("/assets/{name}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .layer(axum::middleware::from_fn(request::security_headers))
}
