//! The admin API: JSON under `/api/`, one file per concern.
//!
//! | route | role | file |
//! |---|---|---|
//! | `GET /api/whoami` | any user | here |
//! | `GET /api/quarantine`, `GET /api/quarantine/{id}` | `read` | [`quarantine`] |
//! | `GET /api/quarantine/{id}/raw` | `scan`, `admin` | [`quarantine`] |
//! | `POST /api/quarantine/{id}/release`, `…/resolve` | `admin` | [`release`] |
//! | `POST /api/quarantine/{id}/delete` | `admin` | [`delete`] |
//! | `POST /api/quarantine/bulk` | `admin` | [`bulk`] |
//! | `GET /api/senders` | `read` | [`senders`] |
//! | `POST`, `DELETE /api/senders/{allow,block}` | `admin` | [`senders`] |
//! | `GET /api/history` | `read` | [`history`] |
//! | `GET /api/stats`, `GET /api/stats/hourly` | `read` | [`stats`] |
//! | `GET /api/actions` | `admin` | [`audit`] |
//! | `GET /api/policy`, `GET /api/policy/{scope}`, `PUT`, `DELETE /api/policy/{scope}/{key}` | `admin` | [`policy`] |
//! | `GET /api/accounts` | `read` | [`accounts`] |
//! | `POST /api/accounts/{user}/lock`, `…/unlock` | `admin` | [`accounts`] |
//! | `GET /api/ratelimit/{kind}/{name}` | `read` | [`ratelimit`] |
//! | `POST /api/ratelimit/{kind}/{name}/reset` | `admin` | [`ratelimit`] |
//!
//! Each endpoint is a handler taking the role it needs as an extractor
//! ([`Reader`], [`Scanner`](super::auth::Scanner), [`Admin`](super::auth::Admin):
//! 401 without credentials, 403 for a lower role), the state as
//! `State<Arc<HttpState>>`, query strings through [`query::Query`] and JSON bodies
//! through [`super::error::Json`] (both 400 naming the parameter or field); it
//! returns `Result<_, ApiError>`. State-changing calls take a JSON body (`{}` for
//! the defaults) with `Content-Type: application/json`, which a cross-site HTML
//! form cannot send (the accounts' lock and unlock, older, still take an empty
//! body). The state store's work runs on blocking threads
//! ([`store::blocking`]); its errors become 404, 409 (with the entry's state,
//! who and when) or 503. Every change is logged (tracing, with the user's name)
//! and written to the store's action log as `http:NAME`. Add a route to
//! [`routes`]; the router's limits (body size, time) and authentication apply to it
//! like to every other.

pub mod accounts;
pub mod audit;
pub mod bulk;
pub mod delete;
pub mod history;
pub mod policy;
pub mod quarantine;
pub mod query;
pub mod ratelimit;
pub mod release;
pub mod senders;
pub mod stats;
pub mod store;

use super::auth::Reader;
use super::error::Json;
use super::state::HttpState;
use axum::Router;
use axum::routing::{get, post, put};
use serde::Serialize;
use std::sync::Arc;

/// Who the credentials belong to.
#[derive(Debug, Serialize)]
pub struct WhoAmI {
    /// The user's name.
    pub name: String,
    /// The user's role.
    pub role: crate::users::Role,
}

/// `GET /api/whoami`: the caller's name and role (any user).
async fn whoami(Reader(p): Reader) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: p.name,
        role: p.role,
    })
}

/// The `/api/` routes.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/accounts", get(accounts::list))
        .route("/api/accounts/{user}/unlock", post(accounts::unlock))
        .route("/api/accounts/{user}/lock", post(accounts::lock))
        .route("/api/ratelimit/{kind}/{name}", get(ratelimit::show))
        .route("/api/ratelimit/{kind}/{name}/reset", post(ratelimit::reset))
        .route("/api/quarantine", get(quarantine::list))
        .route("/api/quarantine/bulk", post(bulk::bulk))
        .route("/api/quarantine/{id}", get(quarantine::show))
        .route("/api/quarantine/{id}/raw", get(quarantine::raw))
        .route("/api/quarantine/{id}/release", post(release::release))
        .route("/api/quarantine/{id}/resolve", post(release::resolve))
        .route("/api/quarantine/{id}/delete", post(delete::delete))
        .route("/api/senders", get(senders::list))
        .route(
            "/api/senders/{list}",
            post(senders::add).delete(senders::remove),
        )
        .route("/api/history", get(history::list))
        .route("/api/stats", get(stats::summary))
        .route("/api/stats/hourly", get(stats::hourly))
        .route("/api/actions", get(audit::list))
        .route("/api/policy", get(policy::list))
        .route("/api/policy/{scope}", get(policy::show))
        .route(
            "/api/policy/{scope}/{key}",
            put(policy::set).delete(policy::unset),
        )
}
