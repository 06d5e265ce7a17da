//! `POST /api/quarantine/{id}/delete` (`admin`): deletes an entry's message
//! (the record stays, `deleted` with who and when, until retention drops it),
//! optionally learning it as spam first.
//!
//! Body: `{"learn_spam": false}` (`{}` for the defaults). Answer: the entry as
//! the list shows it, and with `learn_spam`, `learned: {"score_before",
//! "score_after"}`. 404 for an unknown entry; 409 with its state, who and when
//! for one deleted already or being released.
//!
//! With `learn_spam` the message is learned before it is deleted: when the model
//! cannot be updated (no `model`, 409; busy, 503), nothing is deleted.

use super::quarantine::{EntryView, entry_id};
use super::store::{blocking, by};
use crate::http::auth::{Admin, Principal};
use crate::http::error::{ApiError, Json};
use crate::http::learn::with_model;
use crate::http::state::HttpState;
use crate::quarantine::{AdminAction, EntryId, StateError, now_ms};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{info, warn};

/// The body of a delete.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeleteRequest {
    /// Learn the message as spam first.
    pub learn_spam: bool,
}

/// What learning a message did to its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LearnedView {
    /// The model's score for it before.
    pub score_before: f64,
    /// After.
    pub score_after: f64,
}

/// A deleted entry.
#[derive(Debug, Serialize)]
pub struct Deleted {
    /// The entry, now `deleted`.
    #[serde(flatten)]
    pub entry: EntryView,
    /// With `learn_spam`: what learning did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<LearnedView>,
}

/// Deletes each of `ids` for `who`, learning their messages as spam first (in
/// one update of the model) with `learn_spam`; each id's outcome, in order. The
/// outer error is a failure to learn: then nothing was deleted.
pub(crate) async fn delete_entries(
    state: &Arc<HttpState>,
    who: &Principal,
    ids: Vec<EntryId>,
    learn_spam: bool,
) -> Result<Vec<(EntryId, Result<Deleted, ApiError>)>, ApiError> {
    let by = by(who);
    let store = Arc::clone(state.store());
    let mut learned: HashMap<EntryId, LearnedView> = HashMap::new();
    if learn_spam {
        // Only the messages that will be deleted: held, released or in doubt.
        let store = Arc::clone(&store);
        let targets = ids.clone();
        let (found, model) = with_model(state, move |model, engine| {
            let now = now_ms() / 1000;
            let mut found = Vec::new();
            for id in targets {
                let deletable =
                    matches!(store.get(id), Ok(Some(e)) if e.summary.state.can_delete(now));
                if let (true, Ok(Some(raw))) = (deletable, store.message(id)) {
                    let l = model.learn(engine, &raw, true);
                    found.push((
                        id,
                        LearnedView {
                            score_before: l.before,
                            score_after: l.after,
                        },
                    ));
                }
            }
            let path = engine.config().model.as_ref();
            (
                found,
                path.map(|p| p.display().to_string()).unwrap_or_default(),
            )
        })
        .await?;
        let (s, b) = (Arc::clone(state.store()), by.clone());
        let logged: Vec<EntryId> = found.iter().map(|(id, _)| *id).collect();
        blocking(move || {
            let now = now_ms() / 1000;
            for id in logged {
                s.log_action(&AdminAction {
                    at: now,
                    by: b.clone(),
                    what: "learn-spam".into(),
                    id: Some(id),
                    detail: model.clone(),
                })?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| warn!(error = %e, "learning not recorded in the action log"));
        learned.extend(found);
    }
    let results = blocking(move || {
        let now = now_ms() / 1000;
        Ok(ids
            .into_iter()
            .map(|id| {
                let r = store
                    .delete(id, &by, now)
                    .map(|s| EntryView::of(&s, now))
                    .map_err(ApiError::from);
                (id, r)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(results
        .into_iter()
        .map(|(id, r)| {
            let r = r.map(|entry| {
                let learned = learned.get(&id).copied();
                info!(
                    by = who.name,
                    entry = %id,
                    learned_spam = learned.is_some(),
                    "quarantine entry deleted through the API"
                );
                Deleted { entry, learned }
            });
            (id, r)
        })
        .collect())
}

/// `POST /api/quarantine/{id}/delete`.
pub(crate) async fn delete(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
    Json(req): Json<DeleteRequest>,
) -> Result<Json<Deleted>, ApiError> {
    let id = entry_id(&id)?;
    if req.learn_spam {
        // An unknown or undeletable entry is refused before the model is touched.
        let store = Arc::clone(state.store());
        blocking(move || {
            let now = now_ms() / 1000;
            match store.get(id)? {
                None => Err(StateError::NotFound(id).into()),
                Some(e) if !e.summary.state.can_delete(now) => Err(StateError::Conflict {
                    id,
                    state: e.summary.state,
                    now,
                }
                .into()),
                Some(_) => Ok(()),
            }
        })
        .await?;
    }
    let mut results = delete_entries(&state, &who, vec![id], req.learn_spam).await?;
    match results.pop() {
        Some((_, r)) => r.map(Json),
        None => Err(ApiError::internal("nothing was deleted")),
    }
}
