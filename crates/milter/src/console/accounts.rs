//! Locked accounts (smtp 盗号发送垃圾邮件账户列表): who, since when, why, and
//! the message that tipped the lock; unlocking, and locking by hand.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /accounts` | `read` | the list (the API's `GET /api/accounts`) |
//! | `POST /accounts` | `admin` | `act=unlock` with `user`, or `act=lock` with `user` and `reason` (the API's handlers, so the same checks, log lines and action log entries) |

use super::layout::{Nav, csrf_field, error_page, notice, page};
use super::request::{Signed, redirect};
use crate::http::api::accounts as api;
use crate::http::auth::{Admin, Reader};
use crate::http::error::Json;
use crate::http::state::HttpState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use std::sync::Arc;

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
    let list = match api::list(Reader(s.user.principal()), State(state)).await {
        Ok(Json(list)) => list.locked,
        Err(e) => return error_page(&s, e.status, &e.message),
    };
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
