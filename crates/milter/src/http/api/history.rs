//! `GET /api/history` (`read`): the last scans, newest first, kept across
//! restarts (the state store's scan history, `[state] history` records).
//!
//! Query: `limit` (1–[`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `before` (the
//! previous page's `next`). Answer: `{"records": [record…], "next"}`; a record is
//! `time`, `time_utc`, `queue_id`, `sender`, `recipients` (the first ten),
//! `recipient_count`, `client_addr`, `helo`, `auth_user`, `action` (what
//! happened: `deliver`, `quarantine`, `reject`, `locked`, `oversize`,
//! `fallback`, …), `score`, `hits` (`[keyword, count]`, strongest first), `size`,
//! and `entry` (the quarantine entry, when the message was kept).
//!
//! The service writes scans in batches, so the newest second of scans may not
//! be listed yet.

use super::query::Query;
use super::store::blocking;
use crate::accounts::format_time;
use crate::http::auth::Reader;
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::quarantine::ScanRecord;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use std::sync::Arc;

/// Records on a page when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 50;
/// Most records on a page.
pub const MAX_LIMIT: usize = 1000;

/// A scan as listed.
#[derive(Debug, Serialize)]
pub struct RecordView {
    /// The record.
    #[serde(flatten)]
    pub record: ScanRecord,
    /// Its time in UTC.
    pub time_utc: String,
}

/// `GET /api/history`.
#[derive(Debug, Serialize)]
pub struct HistoryAnswer {
    /// The records, newest first.
    pub records: Vec<RecordView>,
    /// The cursor for the next page (`before`), when there is one.
    pub next: Option<String>,
}

/// `GET /api/history`.
pub(crate) async fn list(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let q = Query::parse(raw.as_deref(), &["limit", "before"])?;
    let limit = q.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = q.parsed::<u64>("before", "a cursor from `next`")?;
    let store = Arc::clone(state.store());
    let page = blocking(move || Ok(store.history_page(limit, before)?)).await?;
    Ok(Json(HistoryAnswer {
        records: page
            .records
            .into_iter()
            .map(|record| RecordView {
                time_utc: format_time(record.time),
                record,
            })
            .collect(),
        // A string: the cursor is a 64-bit number, beyond what JavaScript's
        // numbers hold exactly.
        next: page.next.map(|n| n.to_string()),
    }))
}
