//! Reading the quarantine (the spam report list): the filtered, paged list, one
//! entry with its verdict and decoded text, and the raw message.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/quarantine` | `read` | `{"entries": [entry…], "next": ID or null}`, newest first |
//! | `GET /api/quarantine/{id}` | `read` | the entry, `envelope`, `verdict` (hits, reason, tokens), `preview` (headers, decoded text, hit positions; null once deleted) |
//! | `GET /api/quarantine/{id}/raw` | `scan`, `admin` | the message as received, `message/rfc822`; 410 once deleted |
//!
//! The list's query: `limit` (1–[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]),
//! `before` (the previous page's `next`), `since` and `until` (a duration back
//! from now such as `7d`, seconds since 1970, RFC 3339, or a UTC date), `sender`
//! and `rcpt` (an address, `@domain` or domain; `<>` for the null sender),
//! `action` (`quarantine`, `reject`), `min_score`, `subject` (contains, any
//! case), `state` (`held`, `releasing`, `in_doubt`, `released`, `deleted`).
//!
//! An entry in the list: `id`, `time`, `time_utc`, `host`, `sender`,
//! `recipients`, `subject`, `score`, `action`, `told` (what the MTA was told:
//! `hold`, `discard`, `reject`), `size`, `queue_id`, `auth_user`, `client_addr`,
//! and `state`: `{"state": NAME, "by", "at", "at_utc", "how"}` (who and when,
//! where the state has them).

use super::query::Query;
use super::store::{blocking, state_fields};
use crate::accounts::format_time;
use crate::http::auth::{Reader, Scanner};
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::quarantine::{
    EntryId, Filter, Preview, StateFilter, StoredEnvelope, StoredVerdict, Summary, Told, now_ms,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Entries on a page when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 50;
/// Most entries on a page.
pub const MAX_LIMIT: usize = 200;

/// An entry as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// The id.
    pub id: EntryId,
    /// When it was kept (seconds since the epoch).
    pub time: u64,
    /// The same in UTC.
    pub time_utc: String,
    /// The host whose service kept it.
    pub host: String,
    /// `MAIL FROM` (empty: the null sender).
    pub sender: String,
    /// `RCPT TO`.
    pub recipients: Vec<String>,
    /// The decoded subject.
    pub subject: String,
    /// The score.
    pub score: f64,
    /// The verdict's action.
    pub action: String,
    /// What the MTA was told.
    pub told: Told,
    /// The message's size in bytes.
    pub size: u64,
    /// The MTA's queue id.
    pub queue_id: Option<String>,
    /// The SMTP AUTH login.
    pub auth_user: Option<String>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// Where it stands: `{"state", "by", "at", "at_utc", "how"}`.
    pub state: Map<String, Value>,
}

impl EntryView {
    /// The view of `s` at `now` (which decides whether a release is in doubt).
    pub fn of(s: &Summary, now: u64) -> EntryView {
        EntryView {
            id: s.id,
            time: s.time,
            time_utc: format_time(s.time),
            host: s.host.clone(),
            sender: s.sender.clone(),
            recipients: s.recipients.clone(),
            subject: s.subject.clone(),
            score: s.score,
            action: s.action.clone(),
            told: s.told,
            size: s.size,
            queue_id: s.queue_id.clone(),
            auth_user: s.auth_user.clone(),
            client_addr: s.client_addr.clone(),
            state: state_fields(&s.state, now),
        }
    }
}

/// `GET /api/quarantine`.
#[derive(Debug, Serialize)]
pub struct ListAnswer {
    /// The page, newest first.
    pub entries: Vec<EntryView>,
    /// The cursor for the next page (`before`), when there is one.
    pub next: Option<EntryId>,
}

/// `GET /api/quarantine/{id}`.
#[derive(Debug, Serialize)]
pub struct ShowAnswer {
    /// What the list shows.
    #[serde(flatten)]
    pub entry: EntryView,
    /// The whole envelope (with the client's name and HELO).
    pub envelope: StoredEnvelope,
    /// The verdict: score, action, reason, hits with their locations, tokens.
    pub verdict: StoredVerdict,
    /// The message as an admin reads it; null once deleted.
    pub preview: Option<Preview>,
}

/// Reads an entry id from the path (400 naming `id` when malformed).
pub fn entry_id(text: &str) -> Result<EntryId, ApiError> {
    text.parse::<EntryId>()
        .map_err(|e| ApiError::bad_request(format!("`id`: {}", e.0)))
}

/// The list's filter from the query.
pub(crate) fn filter(q: &Query, now: u64) -> Result<Filter, ApiError> {
    let action = q.text("action")?;
    if let Some(a) = &action
        && chaff::Action::from_name(a).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "`action`: `{a}` is not one of deliver, quarantine, reject"
        )));
    }
    let state = q
        .text("state")?
        .map(|s| {
            StateFilter::parse(&s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`state`: `{s}` is not one of held, releasing, in_doubt, released, deleted"
                ))
            })
        })
        .transpose()?;
    Ok(Filter {
        since: q.time("since", now)?,
        until: q.time("until", now)?,
        sender: q.text("sender")?,
        rcpt: q.text("rcpt")?,
        action,
        min_score: q.number("min_score")?,
        subject: q.text("subject")?,
        state,
    })
}

/// `GET /api/quarantine`.
pub(crate) async fn list(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ListAnswer>, ApiError> {
    let q = Query::parse(
        raw.as_deref(),
        &[
            "limit",
            "before",
            "since",
            "until",
            "sender",
            "rcpt",
            "action",
            "min_score",
            "subject",
            "state",
        ],
    )?;
    let now = now_ms() / 1000;
    let filter = filter(&q, now)?;
    let limit = q.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = q
        .get("before")
        .map(|b| {
            b.trim()
                .parse::<EntryId>()
                .map_err(|e| ApiError::bad_request(format!("`before`: {}", e.0)))
        })
        .transpose()?;
    let store = Arc::clone(state.store());
    let page = blocking(move || Ok(store.list(&filter, limit, before, now)?)).await?;
    Ok(Json(ListAnswer {
        entries: page.entries.iter().map(|s| EntryView::of(s, now)).collect(),
        next: page.next,
    }))
}

/// `GET /api/quarantine/{id}`.
pub(crate) async fn show(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
) -> Result<Json<ShowAnswer>, ApiError> {
    let id = entry_id(&id)?;
    let now = now_ms() / 1000;
    let store = Arc::clone(state.store());
    let generation = state.service.current();
    blocking(move || {
        let entry = store
            .get(id)?
            .ok_or_else(|| ApiError::not_found(format!("no quarantine entry {id}")))?;
        let preview = store
            .message(id)?
            .map(|raw| Preview::of(&raw, &generation.engine));
        Ok(Json(ShowAnswer {
            entry: EntryView::of(&entry.summary, now),
            envelope: entry.detail.envelope,
            verdict: entry.detail.verdict,
            preview,
        }))
    })
    .await
}

/// `GET /api/quarantine/{id}/raw`: the message as received, for users with the
/// `scan` role or above (the `read` role sees the decoded text only).
pub(crate) async fn raw(
    Scanner(_): Scanner,
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = entry_id(&id)?;
    let store = Arc::clone(state.store());
    let now = now_ms() / 1000;
    let message = blocking(move || {
        let Some(entry) = store.get(id)? else {
            return Err(ApiError::not_found(format!("no quarantine entry {id}")));
        };
        match store.message(id)? {
            Some(m) => Ok(m),
            None => Err(ApiError::new(
                axum::http::StatusCode::GONE,
                format!("{id}: the message was deleted"),
            )
            .with_detail(state_fields(&entry.summary.state, now))),
        }
    })
    .await?;
    let mut r = message.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    // Never rendered by a browser: saved as a file.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.eml\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
