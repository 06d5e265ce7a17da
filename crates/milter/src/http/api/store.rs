//! The handlers' way to the state store: its work runs on tokio's blocking
//! threads (redb reads and writes files, and a commit waits for the disk's
//! syncs), never on a network thread; its errors become answers (404 for an
//! unknown entry, 409 with the entry's state, who and when, 503 when the store
//! is unusable); and the name an API user acts under in the store's action log,
//! `http:NAME`.

use crate::accounts::format_time;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::quarantine::{EntryState, SendersError, StateError, StoreError};
use serde_json::{Map, Value};
use tracing::error;

/// Runs `f` on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error!(error = %e, "an API task failed");
        ApiError::internal(format!("the request's task failed: {e}"))
    })?
}

/// The name `p` acts under in the store's action log.
pub fn by(p: &Principal) -> String {
    format!("http:{}", p.name)
}

/// An entry's state as an answer's fields: `state` (its name), and `by`, `at`,
/// `at_utc`, `how` where the state has them (for a release in doubt, why).
pub fn state_fields(s: &EntryState, now: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("state".into(), s.name(now).into());
    let (by, at, how) = match s {
        EntryState::Held => (None, None, None),
        EntryState::Releasing { by, at, doubt, .. } => (Some(by), Some(*at), doubt.as_ref()),
        EntryState::Deleted { by, at } => (Some(by), Some(*at), None),
        EntryState::Released { by, at, how } => (Some(by), Some(*at), Some(how)),
    };
    if let Some(by) = by {
        m.insert("by".into(), by.clone().into());
    }
    if let Some(at) = at {
        m.insert("at".into(), at.into());
        m.insert("at_utc".into(), format_time(at).into());
    }
    if let Some(how) = how {
        m.insert("how".into(), how.clone().into());
    }
    m
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        error!(error = %e, "state store failed an API request");
        ApiError::unavailable(format!("state store: {e}"))
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        match e {
            StateError::NotFound(id) => ApiError::not_found(format!("no quarantine entry {id}")),
            StateError::Conflict { ref state, now, .. } => {
                let detail = state_fields(state, now);
                ApiError::conflict(e.to_string()).with_detail(detail)
            }
            StateError::Store(s) => s.into(),
        }
    }
}

impl From<SendersError> for ApiError {
    fn from(e: SendersError) -> ApiError {
        match e {
            SendersError::Invalid { message, .. } => {
                ApiError::bad_request(format!("`entry`: {message}"))
            }
            SendersError::Full(_) => ApiError::conflict(e.to_string()),
            SendersError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::EntryId;
    use axum::http::StatusCode;

    #[test]
    fn state_errors_become_404_and_409_with_who_and_when() {
        let id = EntryId::from_u64(1 << 40);
        let e: ApiError = StateError::NotFound(id).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = StateError::Conflict {
            id,
            state: EntryState::Released {
                by: "http:ann".into(),
                at: 1_700_000_000,
                how: "250 ok".into(),
            },
            now: 1_700_000_100,
        }
        .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(e.message.contains("already released by http:ann"), "{e}");
        let d = e.detail.unwrap();
        assert_eq!(d["state"], "released");
        assert_eq!(d["by"], "http:ann");
        assert_eq!(d["at"], 1_700_000_000);
        assert_eq!(d["at_utc"], "2023-11-14 22:13:20 UTC");
        let e: ApiError = SendersError::Invalid {
            list: "allow",
            message: "bad".into(),
        }
        .into();
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::BAD_REQUEST, "`entry`: bad")
        );
    }
}
