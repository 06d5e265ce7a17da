//! `/api/ratelimit`: a subject's sending-rate use against its `[ratelimit]`
//! limits, and clearing it, on whichever backend holds the counters (the
//! service's memory, or Redis shared by every host).
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/ratelimit/{kind}/{name}` | `read` | `{"kind", "name", "limits": [{"window_secs", "measure", "used", "limit"}]}` |
//! | `POST /api/ratelimit/{kind}/{name}/reset` | `admin` | `{"kind", "name", "reset": true}` |
//!
//! `kind` is `account`, `sender_domain` or `client`.

use crate::http::auth::{Admin, Reader};
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::state::ratelimit::Subject;
use axum::extract::{Path, State};
use serde::Serialize;
use std::sync::Arc;
use tracing::info;

/// One limit's use.
#[derive(Debug, Serialize)]
pub struct Use {
    /// The window, in seconds.
    pub window_secs: u64,
    /// `messages` or `recipients`.
    pub measure: &'static str,
    /// The use now (the sliding-window estimate, rounded up).
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// The answer to both routes.
#[derive(Debug, Serialize)]
pub struct Usage {
    /// The subject's kind.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Its limits with their use (`GET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<Use>>,
    /// Cleared (`POST …/reset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
}

fn subject(kind: &str, name: &str) -> Result<Subject, ApiError> {
    if name.trim().is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`name`: 1 to 256 bytes without control characters",
        ));
    }
    match kind {
        "account" => Ok(Subject::Account(name.to_string())),
        "sender_domain" => Ok(Subject::Domain(name.trim().to_lowercase())),
        "client" => name
            .trim()
            .parse()
            .map(Subject::Client)
            .map_err(|_| ApiError::bad_request(format!("`{name}` is not an address"))),
        _ => Err(ApiError::bad_request(
            "kind must be `account`, `sender_domain` or `client`",
        )),
    }
}

/// `GET /api/ratelimit/{kind}/{name}`.
pub(crate) async fn show(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Json<Usage>, ApiError> {
    let s = subject(&kind, &name)?;
    let svc = Arc::clone(&state.service);
    let s2 = s.clone();
    let rows = tokio::task::spawn_blocking(move || {
        let cfg = svc.current().settings.ratelimit.clone();
        match svc.locks() {
            Some(l) => l
                .usage(&cfg, Some(svc.limiter()), &s2)
                .map_err(|e| ApiError::unavailable(format!("state backend: {e}"))),
            None => Err(ApiError::unavailable("no state backend")),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("state task: {e}")))??;
    Ok(Json(Usage {
        kind: s.kind(),
        name: s.name(),
        limits: Some(
            rows.into_iter()
                .map(|(w, m, used, limit)| Use {
                    window_secs: w.as_secs(),
                    measure: m.as_str(),
                    used,
                    limit,
                })
                .collect(),
        ),
        reset: None,
    }))
}

/// `POST /api/ratelimit/{kind}/{name}/reset`.
pub(crate) async fn reset(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Json<Usage>, ApiError> {
    let s = subject(&kind, &name)?;
    let svc = Arc::clone(&state.service);
    let s2 = s.clone();
    tokio::task::spawn_blocking(move || {
        let cfg = svc.current().settings.ratelimit.clone();
        match svc.locks() {
            Some(l) => l
                .reset(&cfg, Some(svc.limiter()), &s2)
                .map_err(|e| ApiError::unavailable(format!("state backend: {e}"))),
            None => Err(ApiError::unavailable("no state backend")),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("state task: {e}")))??;
    info!(by = who.name, kind = s.kind(), name = %s.name(), "rate counters cleared through the API");
    Ok(Json(Usage {
        kind: s.kind(),
        name: s.name(),
        limits: None,
        reset: Some(true),
    }))
}
