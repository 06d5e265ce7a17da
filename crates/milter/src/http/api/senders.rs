//! `/api/senders`: the allow and block lists as the service applies them: the
//! entries of `chaff.toml` (`[senders]`, the baseline, never rewritten by the
//! service) and those an admin added, kept in the state store (module
//! `quarantine::senders`).
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/senders` | `read` | `{"allow": [entry…], "block": [entry…], "revision"}`; an entry is `{"entry", "source": "config"}` or `{"entry", "source": "store", "by", "at", "at_utc", "comment"}` |
//! | `POST /api/senders/{allow,block}` | `admin` | body `{"entry": "…", "comment": "…"}`: `{"list", "entry" (canonical), "added", "applied", "warning"?}` |
//! | `DELETE /api/senders/{allow,block}` | `admin` | body `{"entry": "…"}`: `{"list", "entry", "removed": true, "applied"}`; 404 when not a stored entry; 409 when it is one of `chaff.toml` |
//!
//! An entry is checked by the configuration's own parsers (`AllowEntry::parse`,
//! `SenderPattern::parse`): refused, the answer is 400 naming `entry` with the
//! parser's message. A change is applied at once: the handler reloads the
//! engine as SIGHUP does (`Service::reload_if_senders_changed`) before it
//! answers; `applied` says whether the engine in force has it (a reload that
//! fails keeps the previous engine, and the change waits for the next reload).

use super::store::{blocking, by};
use crate::accounts::format_time;
use crate::http::auth::{Admin, Reader};
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::quarantine::{SenderList, canonical_entry, now_ms};
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::info;

/// Longest comment accepted, in characters (what the store keeps).
pub const MAX_COMMENT_CHARS: usize = 500;
/// Longest entry accepted, in bytes.
pub const MAX_ENTRY_BYTES: usize = 2048;

/// One entry of a list.
#[derive(Debug, Clone, Serialize)]
pub struct ListedEntry {
    /// The entry.
    pub entry: String,
    /// `config` (`chaff.toml`) or `store` (added by an admin).
    pub source: &'static str,
    /// Who added it (stored entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When (stored entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// The same in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_utc: Option<String>,
    /// Why (stored entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `GET /api/senders`.
#[derive(Debug, Serialize)]
pub struct SendersAnswer {
    /// The allow list: the file's entries, then the stored ones.
    pub allow: Vec<ListedEntry>,
    /// The block list, likewise.
    pub block: Vec<ListedEntry>,
    /// The stored lists' revision the engine in force applies.
    pub revision: u64,
}

/// The body of an addition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// The entry, as `[senders]` takes it.
    pub entry: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// The body of a removal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// The entry.
    pub entry: String,
}

/// The answer to an edit.
#[derive(Debug, Serialize)]
pub struct Edited {
    /// `allow` or `block`.
    pub list: SenderList,
    /// The entry, in its canonical form.
    pub entry: String,
    /// Added now (false: it was stored already).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<bool>,
    /// Removed now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<bool>,
    /// The engine in force has the change.
    pub applied: bool,
    /// Something the admin should know (an allow entry that can never apply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

fn list_of(name: &str) -> Result<SenderList, ApiError> {
    match name {
        "allow" => Ok(SenderList::Allow),
        "block" => Ok(SenderList::Block),
        _ => Err(ApiError::not_found(format!(
            "no list `{}`: use allow or block",
            name.chars().take(32).collect::<String>()
        ))),
    }
}

fn check_entry(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.len() > MAX_ENTRY_BYTES || text.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "`entry`: 1 to {MAX_ENTRY_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// The file's entries of `list`, canonical, from the generation in force.
fn file_entries(state: &HttpState, list: SenderList) -> Vec<String> {
    let g = state.service.current();
    let (allow, block) = g.file_senders();
    match list {
        SenderList::Allow => allow
            .iter()
            .map(|a| {
                let mut s = a.pattern.as_str().to_string();
                if !a.networks.is_empty() {
                    let nets: Vec<String> = a.networks.iter().map(ToString::to_string).collect();
                    s.push_str(" from ");
                    s.push_str(&nets.join(", "));
                }
                s
            })
            .collect(),
        SenderList::Block => block.iter().map(|b| b.as_str().to_string()).collect(),
    }
}

/// Reloads the engine if the stored lists changed (on a blocking thread: it
/// builds an engine); whether the engine in force now applies revision `rev`.
async fn apply(state: &Arc<HttpState>) -> Result<bool, ApiError> {
    let svc = Arc::clone(&state.service);
    blocking(move || {
        svc.reload_if_senders_changed();
        let rev = svc.state().senders_revision()?;
        Ok(svc.current().senders_revision() == rev)
    })
    .await
}

/// `GET /api/senders`.
pub(crate) async fn list(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
) -> Result<Json<SendersAnswer>, ApiError> {
    let store = Arc::clone(state.store());
    let stored = blocking(move || Ok(store.senders()?)).await?;
    let listed = |list: SenderList| {
        let file = file_entries(&state, list)
            .into_iter()
            .map(|entry| ListedEntry {
                entry,
                source: "config",
                by: None,
                at: None,
                at_utc: None,
                comment: None,
            });
        let kept = stored
            .iter()
            .filter(|e| e.list == list)
            .map(|e| ListedEntry {
                entry: e.entry.clone(),
                source: "store",
                by: Some(e.by.clone()),
                at: Some(e.at),
                at_utc: Some(format_time(e.at)),
                comment: Some(e.comment.clone()),
            });
        file.chain(kept).collect()
    };
    Ok(Json(SendersAnswer {
        allow: listed(SenderList::Allow),
        block: listed(SenderList::Block),
        revision: state.service.current().senders_revision(),
    }))
}

/// `POST /api/senders/{list}`.
pub(crate) async fn add(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path(list): Path<String>,
    Json(req): Json<AddRequest>,
) -> Result<Json<Edited>, ApiError> {
    let list = list_of(&list)?;
    check_entry(&req.entry)?;
    if req.comment.chars().count() > MAX_COMMENT_CHARS || req.comment.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "`comment`: at most {MAX_COMMENT_CHARS} characters without control characters"
        )));
    }
    let entry = canonical_entry(list, &req.entry)?;
    let warning = {
        let g = state.service.current();
        let c = g.engine.config();
        (list == SenderList::Allow
            && !entry.contains(" from ")
            && c.authserv_ids.is_empty()
            && !c.allow_unverified)
            .then(|| {
                format!(
                    "{entry} never applies: it lists no network (`from NETWORK`) and no \
                     `[senders] authserv_id` is set, so nothing can prove the sender"
                )
            })
    };
    let (store, b, e, comment) = (
        Arc::clone(state.store()),
        by(&who),
        entry.clone(),
        req.comment.clone(),
    );
    let added =
        blocking(move || Ok(store.add_sender(list, &e, &b, &comment, now_ms() / 1000)?)).await?;
    let applied = apply(&state).await?;
    info!(
        by = who.name,
        list = list.as_str(),
        entry,
        added,
        applied,
        comment = req.comment,
        "sender entry added through the API"
    );
    Ok(Json(Edited {
        list,
        entry,
        added: Some(added),
        removed: None,
        applied,
        warning,
    }))
}

/// `DELETE /api/senders/{list}`.
pub(crate) async fn remove(
    Admin(who): Admin,
    State(state): State<Arc<HttpState>>,
    Path(list): Path<String>,
    Json(req): Json<RemoveRequest>,
) -> Result<Json<Edited>, ApiError> {
    let list = list_of(&list)?;
    check_entry(&req.entry)?;
    let entry = canonical_entry(list, &req.entry)?;
    let (store, b, e) = (Arc::clone(state.store()), by(&who), entry.clone());
    let removed = blocking(move || Ok(store.remove_sender(list, &e, &b, now_ms() / 1000)?)).await?;
    if !removed {
        if file_entries(&state, list).contains(&entry) {
            return Err(ApiError::conflict(format!(
                "{} {entry} is in the configuration file, which the service never rewrites: \
                 remove it there and reload",
                list.as_str()
            )));
        }
        return Err(ApiError::not_found(format!(
            "{} {entry} is not in the list",
            list.as_str()
        )));
    }
    let applied = apply(&state).await?;
    info!(
        by = who.name,
        list = list.as_str(),
        entry,
        applied,
        "sender entry removed through the API"
    );
    Ok(Json(Edited {
        list,
        entry,
        added: None,
        removed: Some(true),
        applied,
        warning: None,
    }))
}
