//! The last scans (the state store's scan history, the API's `GET
//! /api/history`), newest first and paged: what happened to each message and
//! why (score, strongest hits). A message that was kept opens as its entry in
//! the spam report list, with its verdict explained and its text; from here
//! an admin can learn it as ham or spam at once.

use super::explain::{action_name, score};
use super::form::query;
use super::layout::{Nav, csrf_field, error_page, notice, page};
use super::request::Signed;
use crate::http::api::history as api;
use crate::http::auth::Reader;
use crate::http::error::Json;
use crate::http::state::HttpState;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use maud::html;
use std::sync::Arc;

/// `GET /history`.
pub async fn page_of(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let l = s.lang;
    let mut before = String::new();
    let mut ok = None;
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "before" => before = v.trim().to_string(),
            "ok" => ok = Some(v.into_owned()),
            _ => {}
        }
    }
    let q = query(&[("before", &before)]);
    let answer = api::list(Reader(s.user.principal()), State(state), RawQuery(Some(q))).await;
    let a = match answer {
        Ok(Json(a)) => a,
        Err(e) => return error_page(&s, e.status, &e.message),
    };
    let body = html! {
        (notice(&s, ok.as_deref()))
        p.muted { (l.t("history.note")) }
        div.table { table {
            thead { tr {
                th { (l.t("reports.time")) } th { (l.t("history.outcome")) } th.num { (l.t("reports.score")) }
                th { (l.t("reports.sender")) } th.wide { (l.t("reports.rcpt")) } th { (l.t("history.why")) }
                th { span.muted { (l.t("history.open")) } }
            } }
            tbody { @for r in &a.records { @let rec = &r.record; tr {
                td { (r.time_utc.get(..19).unwrap_or(&r.time_utc)) }
                td { (action_name(l, &rec.action)) }
                td.num { (score(rec.score)) }
                td.addr { (if rec.sender.is_empty() { "<>" } else { &rec.sender }) }
                td.addr.wide {
                    (rec.recipients.join(", "))
                    @if rec.recipient_count > rec.recipients.len() { " +" (rec.recipient_count - rec.recipients.len()) }
                }
                td {
                    @if rec.hits.is_empty() { span.muted { (l.t("verdict.no_hits")) } }
                    @for (i, (k, n)) in rec.hits.iter().enumerate() {
                        @if i > 0 { ", " }
                        (k) " ×" (n)
                    }
                }
                td {
                    @if let Some(id) = rec.entry {
                        a href={ "/reports/" (id.to_string()) } { (l.t("history.explain")) }
                        @if s.can_act() {
                            form method="post" action="/reports/act" {
                                (csrf_field(&s))
                                input type="hidden" name="id" value=(id.to_string());
                                input type="hidden" name="back" value="/history";
                                button.secondary type="submit" name="act" value="learn_ham" { (l.t("act.learn_ham")) }
                                " "
                                button.secondary type="submit" name="act" value="learn_spam" { (l.t("act.learn_spam")) }
                            }
                        }
                    } @else {
                        span.muted { (l.t("history.not_kept")) }
                    }
                }
            } } }
        } }
        @if a.records.is_empty() { p.muted { (l.t("history.empty")) } }
        nav.pager aria-label=(l.t("reports.pages")) {
            @if !before.is_empty() { a href="/history" { (l.t("reports.first")) } }
            @if let Some(n) = &a.next { a href={ "/history?" (query(&[("before", n)])) } rel="next" { (l.t("reports.next")) } }
        }
    };
    page(&s, Nav::History, l.t("nav.history"), body)
}
