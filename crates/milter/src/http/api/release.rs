//! Releasing ("resending", 重新发送) quarantined mail, and settling releases
//! in doubt.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `POST /api/quarantine/{id}/release` | `admin` | body `{"learn_ham": false, "allow_sender": false, "force": false}` (`{}` for the defaults): the entry, now `released`, with `delivery` (what the relay or Postfix did), `learned` (`score_before`, `score_after`), `allowed` (the allow entry), `problems` (options that failed after the release) |
//! | `POST /api/quarantine/{id}/resolve` | `admin` | body `{"delivered": bool}`: an in-doubt release settled after checking the mailbox and the MTA's log: `released`, or `held` to release anew |
//!
//! A release is `chaff_milter::resend::release_entry`, the code `chaff
//! quarantine release` runs, on a blocking thread (it waits for the relay or
//! Postfix): the entry is claimed with a compare-and-set, so of two releases at
//! the same moment one delivers and the other gets 409 with who and when;
//! an entry released, being released, in doubt (without `force`) or deleted is
//! 409 too. When nothing was delivered (relay down or refusing, `postsuper`
//! failed) the answer is 502 (422 for an envelope or queue id that cannot be
//! used, 500 for chaff's own setup: no release key, no root for `postsuper`)
//! and the entry is held again, to release later; when the delivery may or may
//! not have happened, 502 and the entry is in doubt. Every error answer carries
//! the entry's state after it (`state`, `by`, `at`). `allow_sender` adds
//! `SENDER from CLIENT_ADDR` to the stored allow list, applied at once.

use super::delete::LearnedView;
use super::quarantine::{EntryView, entry_id};
use super::store::{blocking, by, state_fields};
use crate::http::auth::{Admin, Principal};
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::quarantine::{EntryId, StateError, now_ms};
use crate::resend::{self, ResendError, ResendOptions};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::{info, warn};

/// A release that delivered.
#[derive(Debug, Serialize)]
pub struct Released {
    /// The entry, now `released`.
    #[serde(flatten)]
    pub entry: EntryView,
    /// What the delivery did: the relay's reply (and recipients it refused), or
    /// where the held queue file went.
    pub delivery: String,
    /// With `learn_ham`: what learning did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<LearnedView>,
    /// With `allow_sender`: the allow entry, added now or there already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
    /// Options that failed after the release (which stands), each with what to
    /// do instead.
    pub problems: Vec<String>,
}

/// `ResendError` as an answer: its status and message, with the entry's state
/// after it (read from `store` unless the error carries it).
fn answer_of(e: ResendError, store: &crate::quarantine::StateStore, id: EntryId) -> ApiError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    match e {
        ResendError::State(s) => s.into(),
        e => {
            let now = now_ms() / 1000;
            let err = ApiError::new(status, e.to_string());
            match store.get(id) {
                Ok(Some(entry)) => err.with_detail(state_fields(&entry.summary.state, now)),
                _ => err,
            }
        }
    }
}

/// Releases each of `ids` for `who` with `opts`, one after the other; each
/// one's outcome, in order. With `allow_sender`, the engine is reloaded with the
/// new allow entries before this returns.
pub(crate) async fn release_entries(
    state: &Arc<HttpState>,
    who: &Principal,
    ids: Vec<EntryId>,
    opts: ResendOptions,
) -> Result<Vec<(EntryId, Result<Released, ApiError>)>, ApiError> {
    let generation = state.service.current();
    let config = resend::release_config(&generation.settings).map_err(|e| {
        ApiError::internal(format!(
            "release key ({}): {e}",
            generation.settings.release_key().display()
        ))
    })?;
    let svc = Arc::clone(&state.service);
    let by = by(who);
    let results = blocking(move || {
        let store = svc.state();
        let mut out = Vec::with_capacity(ids.len());
        let mut allowed_any = false;
        for id in ids {
            let now = now_ms() / 1000;
            let r = resend::release_entry(store, &generation.engine, &config, id, &by, &opts, now);
            let r = match r {
                Ok(done) => {
                    allowed_any |= done.allowed.is_some();
                    Ok(Released {
                        entry: EntryView::of(&done.summary, now_ms() / 1000),
                        delivery: done.delivery,
                        learned: done.learned.map(|(score_before, score_after)| LearnedView {
                            score_before,
                            score_after,
                        }),
                        allowed: done.allowed,
                        problems: done.problems,
                    })
                }
                Err(e) => Err(answer_of(e, store, id)),
            };
            out.push((id, r));
        }
        if allowed_any {
            svc.reload_if_senders_changed();
        }
        Ok(out)
    })
    .await?;
    for (id, r) in &results {
        match r {
            Ok(done) => info!(
                by = who.name,
                entry = %id,
                delivery = done.delivery,
                learned_ham = done.learned.is_some(),
                allowed = done.allowed.as_deref(),
                "quarantine entry released through the API"
            ),
            Err(e) => warn!(
                by = who.name,
                entry = %id,
                status = e.status.as_u16(),
                error = e.message,
                "quarantine entry not released through the API"
            ),
        }
    }
    Ok(results)
}

/// `POST /api/quarantine/{id}/release`.
pub(crate) async fn release(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
    Json(opts): Json<ResendOptions>,
) -> Result<Json<Released>, ApiError> {
    let id = entry_id(&id)?;
    let mut results = release_entries(&state, &who, vec![id], opts).await?;
    match results.pop() {
        Some((_, r)) => r.map(Json),
        None => Err(ApiError::internal("nothing was released")),
    }
}

/// The body of a resolve.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The message was delivered (seen in the mailbox or the MTA's log): mark
    /// the entry released; false: held again, to release anew.
    pub delivered: bool,
}

/// `POST /api/quarantine/{id}/resolve`.
pub(crate) async fn resolve(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
    Json(req): Json<ResolveRequest>,
) -> Result<Json<EntryView>, ApiError> {
    let id = entry_id(&id)?;
    let (store, b) = (Arc::clone(state.store()), by(&who));
    let view = blocking(move || {
        let now = now_ms() / 1000;
        let s = store
            .resolve_in_doubt(id, &b, req.delivered, now)
            .map_err(|e: StateError| ApiError::from(e))?;
        Ok(EntryView::of(&s, now))
    })
    .await?;
    info!(
        by = who.name,
        entry = %id,
        delivered = req.delivered,
        "in-doubt release settled through the API"
    );
    Ok(Json(view))
}
