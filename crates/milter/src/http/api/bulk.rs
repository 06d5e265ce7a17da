//! `POST /api/quarantine/bulk` (`admin`): the console's bulk actions on a
//! selection, with a result per entry.
//!
//! Body: `{"ids": [ID…], "action": "release" | "delete", …options}`: for
//! `delete`, `learn_spam`; for `release`, `learn_ham`, `allow_sender` and
//! `force` (as the single calls take them). At most [`MAX_IDS`] ids, each acted
//! on once, in order. Answer: `{"results": [{"id", "status", …}], "ok",
//! "failed"}`: each result is what the single call would answer for its entry,
//! with its HTTP status in `status` (200, or 400, 404, 409 with the entry's
//! state, who and when, 502, 503, with `error`). A failure to learn (no model,
//! model busy) fails the whole request before anything is deleted.
//!
//! Releases go one after the other (each waits for the relay or Postfix): a
//! large selection may take longer than `[http] request_timeout_secs`; the
//! releases go on to the end, and the list shows how each ended.

use super::delete::delete_entries;
use super::quarantine::entry_id;
use super::release::release_entries;
use crate::http::auth::Admin;
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::quarantine::EntryId;
use crate::resend::ResendOptions;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Most ids in one request.
pub const MAX_IDS: usize = 200;

/// What to do to the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Release each (`learn_ham`, `allow_sender`, `force`).
    Release,
    /// Delete each (`learn_spam`).
    Delete,
}

/// The body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// The entries.
    pub ids: Vec<String>,
    /// What to do.
    pub action: BulkAction,
    /// Delete: learn each as spam first.
    #[serde(default)]
    pub learn_spam: bool,
    /// Release: learn each as ham once released.
    #[serde(default)]
    pub learn_ham: bool,
    /// Release: allow each one's sender from its client address.
    #[serde(default)]
    pub allow_sender: bool,
    /// Release: release entries whose earlier release is in doubt.
    #[serde(default)]
    pub force: bool,
}

/// `POST /api/quarantine/bulk`.
#[derive(Debug, Serialize)]
pub struct BulkAnswer {
    /// One per distinct id, in order.
    pub results: Vec<Map<String, Value>>,
    /// Entries acted on.
    pub ok: usize,
    /// Entries refused or failed.
    pub failed: usize,
}

/// One entry's result: the single call's answer or error, with `id` and
/// `status`.
pub(crate) fn result_of<T: Serialize>(id: &str, r: Result<T, ApiError>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    match r {
        Ok(v) => {
            m.insert("status".into(), 200.into());
            if let Ok(Value::Object(o)) = serde_json::to_value(v) {
                for (k, v) in o {
                    m.entry(k).or_insert(v);
                }
            }
        }
        Err(e) => {
            m.insert("status".into(), e.status.as_u16().into());
            m.insert("error".into(), e.message.into());
            for (k, v) in e.detail.unwrap_or_default() {
                m.entry(k).or_insert(v);
            }
        }
    }
    m
}

/// `POST /api/quarantine/bulk`.
pub(crate) async fn bulk(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Json(req): Json<BulkRequest>,
) -> Result<Json<BulkAnswer>, ApiError> {
    if req.ids.is_empty() || req.ids.len() > MAX_IDS {
        return Err(ApiError::bad_request(format!(
            "`ids`: 1 to {MAX_IDS} entry ids"
        )));
    }
    let misplaced = match req.action {
        BulkAction::Delete => [
            ("learn_ham", req.learn_ham),
            ("allow_sender", req.allow_sender),
            ("force", req.force),
        ]
        .into_iter()
        .find(|(_, on)| *on),
        BulkAction::Release => [("learn_spam", req.learn_spam)]
            .into_iter()
            .find(|(_, on)| *on),
    };
    if let Some((field, _)) = misplaced {
        return Err(ApiError::bad_request(format!(
            "`{field}`: not an option of this action"
        )));
    }
    // Each distinct id once, in order; a malformed one answered on its own.
    let mut seen = std::collections::HashSet::new();
    let mut order: Vec<(String, Result<EntryId, ApiError>)> = Vec::new();
    for text in req.ids {
        if seen.insert(text.clone()) {
            let id = entry_id(&text);
            order.push((text, id));
        }
    }
    let valid: Vec<EntryId> = order
        .iter()
        .filter_map(|(_, id)| id.as_ref().ok().copied())
        .collect();
    let mut done: Vec<(EntryId, Map<String, Value>)> = match req.action {
        BulkAction::Delete => delete_entries(&state, &who, valid, req.learn_spam)
            .await?
            .into_iter()
            .map(|(id, r)| (id, result_of(&id.to_string(), r)))
            .collect(),
        BulkAction::Release => {
            let opts = ResendOptions {
                force: req.force,
                learn_ham: req.learn_ham,
                allow_sender: req.allow_sender,
            };
            release_entries(&state, &who, valid, opts)
                .await?
                .into_iter()
                .map(|(id, r)| (id, result_of(&id.to_string(), r)))
                .collect()
        }
    };
    let results: Vec<Map<String, Value>> = order
        .into_iter()
        .map(|(text, id)| match id {
            Ok(id) => done
                .iter()
                .position(|(d, _)| *d == id)
                .map(|i| done.swap_remove(i).1)
                .unwrap_or_else(|| result_of::<()>(&text, Err(ApiError::internal("not acted on")))),
            Err(e) => result_of::<()>(&text, Err(e)),
        })
        .collect();
    let ok = results.iter().filter(|r| r["status"] == 200).count();
    Ok(Json(BulkAnswer {
        failed: results.len() - ok,
        ok,
        results,
    }))
}
