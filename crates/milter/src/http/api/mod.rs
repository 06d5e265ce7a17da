//! The admin API: JSON under `/api/`: `GET /api/whoami` (any user), and the
//! locked accounts ([`accounts`]).
//!
//! Each endpoint is a handler taking the role it needs as an extractor
//! ([`Reader`], [`Scanner`](super::auth::Scanner), [`Admin`](super::auth::Admin):
//! 401 without credentials, 403 for a lower role), the state as
//! `State<Arc<HttpState>>`, and JSON bodies through [`super::error::Json`] (400
//! naming the field); it returns `Result<_, ApiError>`. Add a route to
//! [`routes`]; the router's limits (body size, time) and authentication apply to it
//! like to every other.
//!
//! ```text
//! async fn unlock(Admin(who): Admin, State(s): State<Arc<HttpState>>,
//!                 Path(name): Path<String>) -> Result<Json<Unlocked>, ApiError>
//! routes().route("/api/accounts/{name}/unlock", post(unlock))
//! ```

pub mod accounts;

use super::auth::Reader;
use super::error::Json;
use super::state::HttpState;
use axum::Router;
use axum::routing::{get, post};
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
}
