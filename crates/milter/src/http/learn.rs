//! `POST /learnspam` and `POST /learnham`: Rspamd's learning commands, what
//! `rspamc learn_spam` and `learn_ham` send, for users with the `scan` role or
//! above.
//!
//! The message is learned into the configured model file (`model = "PATH"`) as
//! `chaff learn` does (`chaff_train::learn::ModelFile`: read under a lock,
//! updated, replaced atomically), with the running engine reading the mail, so
//! the features are those a scan sees. Learn requests of this process queue on
//! one lock; other processes (`chaff learn`) are waited for up to
//! [`LEARN_LOCK_WAIT`]. The engine picks the replaced model up on its next scan
//! after `[classifier] reload_interval_ms`, as for any replacement. The reply is
//! Rspamd's `{"success": true}`, with the message's score before and after.

use super::auth::Caller;
use super::body::{content_length, read_message};
use super::error::ApiError;
use super::rspamd::json_response;
use super::state::HttpState;
use crate::users::Role;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chaff_train::learn::{ModelFile, ModelFileError};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

/// Longest wait for another process that holds the model file's lock.
pub const LEARN_LOCK_WAIT: Duration = Duration::from_secs(20);

/// `POST /learnspam`.
pub(crate) async fn learn_spam(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    learn(state, caller, headers, body, true).await
}

/// `POST /learnham`.
pub(crate) async fn learn_ham(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    learn(state, caller, headers, body, false).await
}

async fn learn(
    state: Arc<HttpState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    spam: bool,
) -> Result<Response, ApiError> {
    let user = caller.require(Role::Scan)?.name.clone();
    let g = state.service.current();
    let Some(path) = g.engine.config().model.clone() else {
        return Err(ApiError::conflict(
            "no model to learn into: set `model = \"PATH\"` in the configuration",
        ));
    };
    let declared = content_length(&headers)?;
    let (raw, reservation) = read_message(
        body,
        declared,
        g.settings.max_message_size,
        state.service.budget(),
    )
    .await?;
    let size = raw.len();
    let label = if spam { "spam" } else { "ham" };
    let learned = with_model(&state, move |model, engine| {
        let _reservation = reservation;
        Some(model.learn(engine, &raw, spam))
    })
    .await;
    match learned {
        Ok(Some(l)) => {
            info!(
                user,
                label,
                size,
                before = format!("{:.2}", l.before),
                after = format!("{:.2}", l.after),
                steps = l.steps,
                model = %path.display(),
                "learned"
            );
            Ok(json_response(json!({
                "success": true,
                "score_before": l.before,
                "score_after": l.after,
            })))
        }
        Ok(None) => Err(ApiError::internal("nothing was learned")),
        Err(e) if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE => Err(e),
        Err(e) => {
            error!(user, label, error = %e, "learning failed");
            Err(e)
        }
    }
}

/// Runs `f` on the configured model file, opened for learning (read under its
/// lock), on a blocking thread, and saves it (atomic replace) when `f` returns:
/// `/learnspam` and `/learnham` learn one message so, the admin API's delete with
/// `learn_spam` and release with `learn_ham` each message of a request, in one
/// read–learn–replace. 409 without a model, 503 while another process holds the
/// model longer than [`LEARN_LOCK_WAIT`]. Requests of this process take turns
/// on [`HttpState`]'s learning lock.
pub(crate) async fn with_model<T: Send + 'static>(
    state: &Arc<HttpState>,
    f: impl FnOnce(&mut ModelFile, &chaff::Engine) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let g = state.service.current();
    let Some(path) = g.engine.config().model.clone() else {
        return Err(ApiError::conflict(
            "no model to learn into: set `model = \"PATH\"` in the configuration",
        ));
    };
    let _turn = state.learning.lock().await;
    let learned = tokio::task::spawn_blocking(move || {
        let mut model = ModelFile::open_within(&path, LEARN_LOCK_WAIT)?;
        let out = f(&mut model, &g.engine);
        model.save()?;
        Ok::<_, ModelFileError>(out)
    })
    .await
    .map_err(|e| ApiError::internal(format!("learning failed: {e}")))?;
    learned.map_err(|e| match e {
        ModelFileError::Busy(..) => ApiError::unavailable(e.to_string()),
        e => ApiError::internal(format!("learning failed: {e}")),
    })
}
