//! The allow and block lists (白名单, 黑名单): the entries of the configuration
//! file and those stored by admins; adding and removing stored ones, applied at
//! once (the API's `senders` handlers: the same validation, canonical form,
//! warning for an allow entry that can never apply, and reload).
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /senders` | `read` | both lists, with where each entry comes from |
//! | `POST /senders` | `admin` | `act=add` with `list` (`allow`, `block`), `entry`, `comment`; `act=remove` with `list` and `entry` |

use super::form::query;
use super::layout::{Nav, csrf_field, error_page, notice, page};
use super::request::{Signed, redirect};
use crate::http::api::senders::{self as api, AddRequest, ListedEntry, RemoveRequest};
use crate::http::auth::{Admin, Reader};
use crate::http::error::Json;
use crate::http::state::HttpState;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use std::sync::Arc;

fn table(s: &Signed, list: &str, entries: &[ListedEntry]) -> Markup {
    let l = s.lang;
    html! {
        @if entries.is_empty() { p.muted { (l.t("senders.empty")) } } @else {
            div.table { table {
                thead { tr {
                    th { (l.t("senders.entry")) } th { (l.t("senders.source")) } th.wide { (l.t("senders.comment")) }
                    th.wide { (l.t("senders.by")) }
                    @if s.can_act() { th { span.muted { (l.t("senders.action")) } } }
                } }
                tbody { @for e in entries { tr {
                    td.addr { code { (e.entry) } }
                    td { (if e.source == "config" { l.t("senders.from_config") } else { l.t("senders.from_store") }) }
                    td.wide { (e.comment.as_deref().unwrap_or("")) }
                    td.wide { (e.by.as_deref().unwrap_or("")) " " (e.at_utc.as_deref().unwrap_or("")) }
                    @if s.can_act() { td {
                        @if e.source == "store" {
                            form method="post" action="/senders" {
                                (csrf_field(s))
                                input type="hidden" name="list" value=(list);
                                input type="hidden" name="entry" value=(e.entry);
                                button.secondary type="submit" name="act" value="remove" aria-label=(format!("{} {}", l.t("senders.remove"), e.entry)) { (l.t("senders.remove")) }
                            }
                        }
                    } }
                } } }
            } }
        }
    }
}

/// `GET /senders`.
pub async fn page_of(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let l = s.lang;
    let mut ok = None;
    let mut warning = None;
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "ok" => ok = Some(v.into_owned()),
            "warning" => warning = Some(v.into_owned()),
            _ => {}
        }
    }
    let lists = match api::list(Reader(s.user.principal()), State(state)).await {
        Ok(Json(a)) => a,
        Err(e) => return error_page(&s, e.status, &e.message),
    };
    let body = html! {
        (notice(&s, ok.as_deref()))
        @if warning.is_some() { p.warning role="alert" { (l.t("senders.never_applies")) } }
        @if s.can_act() {
            h2 { (l.t("senders.add_title")) }
            form method="post" action="/senders" {
                (csrf_field(&s))
                div {
                    label for="s-list" { (l.t("senders.list")) }
                    select #s-list name="list" {
                        option value="allow" { (l.t("senders.allow")) }
                        option value="block" { (l.t("senders.block")) }
                    }
                }
                div {
                    label for="s-entry" { (l.t("senders.entry")) }
                    input #s-entry type="text" name="entry" required maxlength="2048" placeholder="boss@example.com from 192.0.2.0/24";
                    p.muted { (l.t("senders.entry_help")) }
                }
                div { label for="s-comment" { (l.t("senders.comment")) } input #s-comment type="text" name="comment" maxlength="500"; }
                div.actions { button type="submit" name="act" value="add" { (l.t("senders.add")) } }
            }
        }
        h2 { (l.t("senders.allow")) }
        (table(&s, "allow", &lists.allow))
        h2 { (l.t("senders.block")) }
        (table(&s, "block", &lists.block))
    };
    page(&s, Nav::Senders, l.t("nav.senders"), body)
}

/// `POST /senders`.
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
    let list = form.get("list").unwrap_or("").to_string();
    let entry = form.get("entry").unwrap_or("").to_string();
    let who = Admin(s.user.principal());
    let r = match form.get("act") {
        Some("add") => {
            let comment = form.get("comment").unwrap_or("").trim().to_string();
            api::add(
                who,
                State(state),
                Path(list),
                Json(AddRequest { entry, comment }),
            )
            .await
            .map(|Json(e)| ("ok.add", e.warning.is_some()))
        }
        Some("remove") => api::remove(who, State(state), Path(list), Json(RemoveRequest { entry }))
            .await
            .map(|_| ("ok.remove", false)),
        _ => return error_page(&s, StatusCode::BAD_REQUEST, "`act`: add or remove"),
    };
    match r {
        Ok((key, warned)) => {
            let w = if warned { "1" } else { "" };
            redirect(&format!(
                "/senders?{}",
                query(&[("ok", key), ("warning", w)])
            ))
        }
        Err(e) => error_page(&s, e.status, &e.message),
    }
}
