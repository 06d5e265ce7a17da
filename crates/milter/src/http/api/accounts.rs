//! `/api/accounts`: the accounts locked for sending spam, as `chaff accounts`
//! shows and changes them, on the service's own lock store.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/accounts` | `read` | `{"locked": [{"user", "locked_at", "locked_at_utc", "reason", "rejects", "window_secs", "last_queue_id", "last_score"}]}` |
//! | `POST /api/accounts/{user}/unlock` | `admin` | `{"user", "unlocked": true}`; 404 if it was not locked |
//! | `POST /api/accounts/{user}/lock` | `admin` | body `{"reason": "…"}` (optional); `{"user", "locked": true}`; 409 if already locked |
//!
//! An unlock takes effect at the account's next message; every change is logged
//! with the name of the user who made it, and written to the state store's
//! action log as `http:NAME` (`account-lock`, `account-unlock`).

use crate::accounts::{self, LockRecord};
use crate::http::auth::{Admin, Reader};
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::state::{Locks, LocksError};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::{info, warn};

/// Writes an account change to the state store's action log (the change is
/// made already: a failure to log it is logged, not answered).
async fn audit(state: &Arc<HttpState>, who: &crate::http::Principal, what: &str, detail: String) {
    let store = Arc::clone(state.store());
    let action = crate::quarantine::AdminAction {
        at: accounts::now_secs(),
        by: super::store::by(who),
        what: what.to_string(),
        id: None,
        detail,
    };
    let logged = super::store::blocking(move || Ok(store.log_action(&action)?)).await;
    if let Err(e) = logged {
        warn!(error = %e, "account change not written to the action log");
    }
}

/// Longest lock reason accepted, in bytes.
pub const MAX_REASON: usize = 500;

/// One locked account.
#[derive(Debug, Serialize)]
pub struct Locked {
    /// The account.
    pub user: String,
    /// The lock.
    #[serde(flatten)]
    pub lock: LockRecord,
    /// `locked_at` as UTC time.
    pub locked_at_utc: String,
}

/// `GET /api/accounts`.
#[derive(Debug, Serialize)]
pub struct LockedList {
    /// The locked accounts, by name.
    pub locked: Vec<Locked>,
}

/// The body of a lock request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockRequest {
    /// Why, for the list.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The result of a lock or unlock.
#[derive(Debug, Serialize)]
pub struct Changed {
    /// The account.
    pub user: String,
    /// Locked now (for a lock), or unlocked now (for an unlock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Unlocked now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlocked: Option<bool>,
}

/// Runs `f` on the lock store on a blocking thread (redb reads and writes files).
async fn with_store<T: Send + 'static>(
    state: &Arc<HttpState>,
    f: impl FnOnce(&Locks<'_>) -> Result<T, LocksError> + Send + 'static,
) -> Result<T, ApiError> {
    let svc = Arc::clone(&state.service);
    tokio::task::spawn_blocking(move || match svc.locks() {
        Some(locks) => f(&locks).map_err(|e| ApiError::unavailable(format!("lock store: {e}"))),
        None => Err(ApiError::unavailable("no lock store")),
    })
    .await
    .map_err(|e| ApiError::internal(format!("lock store task: {e}")))?
}

fn check_user(user: &str) -> Result<(), ApiError> {
    if user.trim().is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "`user`: an account name of 1 to 256 bytes without control characters",
        ));
    }
    Ok(())
}

/// `GET /api/accounts`.
pub(crate) async fn list(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
) -> Result<Json<LockedList>, ApiError> {
    let rows = with_store(&state, |l| l.list()).await?;
    Ok(Json(LockedList {
        locked: rows
            .into_iter()
            .map(|(user, lock)| Locked {
                user,
                locked_at_utc: accounts::format_time(lock.locked_at),
                lock,
            })
            .collect(),
    }))
}

/// `POST /api/accounts/{user}/unlock`.
pub(crate) async fn unlock(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path(user): Path<String>,
) -> Result<Json<Changed>, ApiError> {
    check_user(&user)?;
    let u = user.clone();
    let was = with_store(&state, move |s| s.unlock(&u)).await?;
    if !was {
        return Err(ApiError::not_found(format!(
            "account `{user}` is not locked"
        )));
    }
    info!(
        by = who.name,
        account = user,
        "account unlocked through the API"
    );
    audit(&state, &who, "account-unlock", user.clone()).await;
    Ok(Json(Changed {
        user,
        locked: None,
        unlocked: Some(true),
    }))
}

/// `POST /api/accounts/{user}/lock`.
pub(crate) async fn lock(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Changed>, ApiError> {
    check_user(&user)?;
    // The body is optional: none, or `{"reason": "…"}`.
    let request: LockRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LockRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("JSON: {e}")))?
    };
    let reason = request
        .reason
        .unwrap_or_else(|| format!("locked by {} through the API", who.name));
    if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`reason`: at most {MAX_REASON} bytes without control characters"
        )));
    }
    let (u, r) = (user.clone(), reason.clone());
    let made = with_store(&state, move |s| s.lock(&u, accounts::now_secs(), &r)).await?;
    if !made {
        return Err(ApiError::conflict(format!(
            "account `{user}` is already locked"
        )));
    }
    info!(
        by = who.name,
        account = user,
        reason,
        "account locked through the API"
    );
    audit(&state, &who, "account-lock", format!("{user}: {reason}")).await;
    Ok(Json(Changed {
        user,
        locked: Some(true),
        unlocked: None,
    }))
}
