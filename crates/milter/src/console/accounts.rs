//! Locked accounts (smtp 盗号发送垃圾邮件账户列表): who, since when, why, and
//! the message that tipped the lock; unlocking, and locking by hand.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /accounts` | `read` | the list (the API's `GET /api/accounts`) |
//! | `POST /accounts` | `admin` | `act=unlock` with `user`, or `act=lock` with `user` and `reason` (the API's handlers, so the same checks, log lines and action log entries) |
//!
//! The messages that caused a lock are listed from the lock record itself
//! ([`crate::accounts::LockRecord::messages`]): each rejected message's time,
//! queue id and score, with a link to its entry in the spam report list when it
//! was kept (`[quarantine] keep_rejected`), however old the lock. A lock
//! recorded before lock records kept them (or made by hand, or by a rate limit)
//! falls back to the scan history (the state store's, `[state] history`
//! records): the account's rejected (and, once locked, refused) messages of the
//! lock's window, newest first, which the history may have dropped since. At
//! most [`MAX_HISTORY_READ`] records are read per page.

use super::explain::{action_name, score};
use super::layout::{Nav, csrf_field, error_page, notice, page};
use super::request::{Signed, redirect};
use crate::accounts::format_time;
use crate::http::api::accounts as api;
use crate::http::api::store::blocking;
use crate::http::auth::{Admin, Reader};
use crate::http::error::Json;
use crate::http::state::HttpState;
use crate::quarantine::ScanRecord;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use std::collections::HashMap;
use std::sync::Arc;

/// Most scan records read to find the messages behind the locks.
pub const MAX_HISTORY_READ: usize = 10_000;
/// Most messages shown per account.
pub const MAX_SHOWN: usize = 20;

/// Each account's rejected or refused messages of its lock's window (`(user,
/// from, to)`), newest first, from the scan history.
async fn messages_behind(
    state: &Arc<HttpState>,
    windows: Vec<(String, u64, u64)>,
) -> HashMap<String, Vec<ScanRecord>> {
    if windows.is_empty() {
        return HashMap::new();
    }
    let store = Arc::clone(state.store());
    blocking(move || {
        let mut found: HashMap<String, Vec<ScanRecord>> = HashMap::new();
        let earliest = windows.iter().map(|w| w.1).min().unwrap_or(0);
        let mut before = None;
        let mut read = 0;
        'walk: loop {
            let page = store.history_page(1000, before)?;
            for r in page.records {
                read += 1;
                if r.time < earliest || read > MAX_HISTORY_READ {
                    break 'walk;
                }
                let Some(user) = r.auth_user.as_deref() else {
                    continue;
                };
                if !matches!(r.action.as_str(), "reject" | "locked") {
                    continue;
                }
                if let Some((u, _, _)) = windows.iter().find(|(u, from, to)| {
                    u.eq_ignore_ascii_case(user) && r.time >= *from && r.time <= *to
                }) {
                    let list = found.entry(u.clone()).or_default();
                    if list.len() < MAX_SHOWN {
                        list.push(r);
                    }
                }
            }
            match page.next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        Ok(found)
    })
    .await
    .unwrap_or_default()
}

/// `GET /accounts`.
pub async fn page_of(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let l = s.lang;
    let ok = form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "ok")
        .map(|(_, v)| v.into_owned());
    let list = match api::list(Reader(s.user.principal()), State(Arc::clone(&state))).await {
        Ok(Json(list)) => list.locked,
        Err(e) => return error_page(&s, e.status, &e.message),
    };
    // A lock's window: the rejects counted before it, and what was refused
    // while it held (up to now).
    let now = crate::accounts::now_secs();
    let windows = list
        .iter()
        .filter(|a| a.lock.messages.is_empty())
        .map(|a| {
            let from = a.lock.locked_at.saturating_sub(a.lock.window_secs);
            (a.user.clone(), from, now)
        })
        .collect();
    let behind = messages_behind(&state, windows).await;
    let body = html! {
        (notice(&s, ok.as_deref()))
        @if list.is_empty() { p.muted { (l.t("accounts.none")) } } @else {
            div.table { table {
                thead { tr {
                    th { (l.t("accounts.user")) } th { (l.t("accounts.since")) } th { (l.t("accounts.reason")) }
                    th.num { (l.t("accounts.rejects")) } th { (l.t("accounts.evidence")) }
                    @if s.can_act() { th { span.muted { (l.t("accounts.action")) } } }
                } }
                tbody { @for a in &list { tr {
                    td.addr { (a.user) }
                    td { (a.locked_at_utc) }
                    td { (a.lock.reason) }
                    td.num { (a.lock.rejects) }
                    td {
                        @if let Some(q) = &a.lock.last_queue_id { (l.t("accounts.queue_id")) " " code { (q) } }
                        @if let Some(sc) = a.lock.last_score { " · " (format!("{sc:.2}")) }
                    }
                    @if s.can_act() { td {
                        form method="post" action="/accounts" {
                            (csrf_field(&s))
                            input type="hidden" name="user" value=(a.user);
                            button type="submit" name="act" value="unlock" aria-label=(format!("{} {}", l.t("accounts.unlock"), a.user)) { (l.t("accounts.unlock")) }
                        }
                    } }
                } } }
            } }
            @for a in &list {
                @if !a.lock.messages.is_empty() {
                    h2 { (l.t("accounts.messages")) " · " (a.user) }
                    div.table { table {
                        thead { tr {
                            th { (l.t("reports.time")) } th { (l.t("reports.queue_id")) }
                            th.num { (l.t("reports.score")) } th { (l.t("history.open")) }
                        } }
                        tbody { @for m in a.lock.messages.iter().rev().take(MAX_SHOWN) { tr {
                            td { (format_time(m.at)) }
                            td { code { (m.queue_id.as_deref().unwrap_or("–")) } }
                            td.num { (score(m.score)) }
                            td { @match m.entry {
                                Some(id) => a href={ "/reports/" (id.to_string()) } { (l.t("history.explain")) },
                                None => span.muted { (l.t("history.not_kept")) },
                            } }
                        } } }
                    } }
                }
                @if let Some(msgs) = behind.get(&a.user) {
                    h2 { (l.t("accounts.messages")) " · " (a.user) }
                    div.table { table {
                        thead { tr {
                            th { (l.t("reports.time")) } th { (l.t("history.outcome")) } th { (l.t("reports.queue_id")) }
                            th.num { (l.t("reports.score")) } th { (l.t("history.why")) } th { (l.t("history.open")) }
                        } }
                        tbody { @for r in msgs { tr {
                            td { (format_time(r.time)) }
                            td { (action_name(l, &r.action)) }
                            td { code { (r.queue_id.as_deref().unwrap_or("–")) } }
                            td.num { (score(r.score)) }
                            td { @for (i, (k, n)) in r.hits.iter().enumerate() { @if i > 0 { ", " } (k) " ×" (n) } }
                            td { @match r.entry {
                                Some(id) => a href={ "/reports/" (id.to_string()) } { (l.t("history.explain")) },
                                None => span.muted { (l.t("history.not_kept")) },
                            } }
                        } } }
                    } }
                }
            }
        }
        @if s.can_act() {
            h2 { (l.t("accounts.lock_title")) }
            form method="post" action="/accounts" {
                (csrf_field(&s))
                div { label for="lock-user" { (l.t("accounts.user")) } input #lock-user type="text" name="user" required maxlength="256"; }
                div { label for="lock-reason" { (l.t("accounts.reason")) } input #lock-reason type="text" name="reason" maxlength="500"; }
                div.actions { button type="submit" name="act" value="lock" { (l.t("accounts.lock")) } }
            }
        }
    };
    page(&s, Nav::Accounts, l.t("nav.accounts"), body)
}

/// `POST /accounts`.
pub async fn act(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    body: axum::body::Bytes,
) -> Response {
    let form = match s.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = s.require_admin() {
        return r;
    }
    let user = form.text("user").unwrap_or("").to_string();
    let who = Admin(s.user.principal());
    let r = match form.get("act") {
        Some("unlock") => api::unlock(who, State(state), Path(user))
            .await
            .map(|_| "ok.unlock"),
        Some("lock") => {
            let body = match form.text("reason") {
                Some(r) => serde_json::json!({ "reason": r }).to_string(),
                None => String::new(),
            };
            api::lock(who, State(state), Path(user), body.into())
                .await
                .map(|_| "ok.lock")
        }
        _ => return error_page(&s, StatusCode::BAD_REQUEST, "`act`: unlock or lock"),
    };
    match r {
        Ok(key) => redirect(&format!("/accounts?ok={key}")),
        Err(e) => error_page(&s, e.status, &e.message),
    }
}
