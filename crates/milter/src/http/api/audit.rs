//! `GET /api/actions` (`admin`): the admin action log, newest first: who did
//! what, when, to which entry (releases and their steps, deletions, learning,
//! sender list edits, account locks and unlocks through the API, purges).
//! Users of the API appear as `http:NAME`, the commands as `cli:USER`.
//!
//! Query: `limit` (1–[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]). Answer:
//! `{"actions": [{"at", "at_utc", "by", "what", "id", "detail"}…]}`.

use super::query::Query;
use super::store::blocking;
use crate::accounts::format_time;
use crate::http::auth::Admin;
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::quarantine::AdminAction;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use std::sync::Arc;

/// Actions listed when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most actions listed.
pub const MAX_LIMIT: usize = 1000;

/// An action as listed.
#[derive(Debug, Serialize)]
pub struct ActionView {
    /// The action.
    #[serde(flatten)]
    pub action: AdminAction,
    /// Its time in UTC.
    pub at_utc: String,
}

/// `GET /api/actions`.
#[derive(Debug, Serialize)]
pub struct ActionsAnswer {
    /// Newest first.
    pub actions: Vec<ActionView>,
}

/// `GET /api/actions`.
pub(crate) async fn list(
    Admin(_): Admin,
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ActionsAnswer>, ApiError> {
    let q = Query::parse(raw.as_deref(), &["limit"])?;
    let limit = q.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let store = Arc::clone(state.store());
    let actions = blocking(move || Ok(store.actions(limit)?)).await?;
    Ok(Json(ActionsAnswer {
        actions: actions
            .into_iter()
            .map(|action| ActionView {
                at_utc: format_time(action.at),
                action,
            })
            .collect(),
    }))
}
