//! The spam report list (垃圾邮件报告列表): the quarantine, filtered and paged;
//! one entry's preview; and the actions on entries.
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /reports` | `read` | the list: filters `rcpt`, `sender`, `subject`, `since`, `until` (dates), `min_score`, `state`, `action`, paged by `before` (as `GET /api/quarantine`) |
//! | `GET /reports/{id}` | `read` | the entry: envelope, state, verdict explained, decoded text with hits highlighted, headers |
//! | `POST /reports/act` | `admin` | `act` on the entries `id` (one or a selection of up to 200): `release` (with `learn_ham`, `allow_sender`, `force`), `delete` (with `learn_spam`), `learn_ham`, `learn_spam`, `allow` (allow the sender from its client address) |
//!
//! The list and the entry are the API's own handlers (`http::api::quarantine`);
//! a release is the API's `release_entries` (`resend::release_entry`), a delete
//! its `delete_entries`, an allow entry the API's `senders::add` with the entry
//! `resend::allow_entry` forms; learning an entry without releasing or deleting
//! it uses `http::learn::with_model` like every learn. Each is logged with the
//! user's name and written to the action log as `http:NAME`.

use super::explain::{self, action_name};
use super::form::{Form, query};
use super::layout::{Nav, csrf_field, error_page, notice, page};
use super::request::{Signed, local_path, redirect};
use crate::http::api::bulk::MAX_IDS;
use crate::http::api::delete::delete_entries;
use crate::http::api::quarantine::{self as api, EntryView, entry_id};
use crate::http::api::query::Query;
use crate::http::api::release::release_entries;
use crate::http::api::senders::{self, AddRequest};
use crate::http::api::store::{blocking, by};
use crate::http::auth::{Admin, Principal, Reader};
use crate::http::error::{ApiError, Json};
use crate::http::learn::with_model;
use crate::http::state::HttpState;
use crate::quarantine::{AdminAction, EntryId, now_ms};
use crate::resend::{ResendOptions, allow_entry};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use std::sync::Arc;
use tracing::info;

/// The list's filters, named as the API's query parameters.
const FILTERS: [&str; 8] = [
    "rcpt",
    "sender",
    "subject",
    "since",
    "until",
    "min_score",
    "state",
    "action",
];
const STATES: [&str; 5] = ["held", "releasing", "in_doubt", "released", "deleted"];
const ACTIONS: [&str; 2] = ["quarantine", "reject"];

fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.trim().to_string()))
        .collect()
}

fn value<'a>(p: &'a [(String, String)], name: &str) -> &'a str {
    p.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Most entries read for one page of the list: a filter that no index serves
/// (a subject search) reads every summary of its time range, 3.4 µs each, so
/// a page stops after this many (about 70 ms) and offers to search on.
pub const MAX_EXAMINED: u64 = 20_000;

/// One page of the list for the API's query parameters `q` (the API's own
/// parsing, so the same 400s), reading at most [`MAX_EXAMINED`] summaries.
async fn page_of(
    state: &Arc<HttpState>,
    q: &[(&str, &str)],
    now: u64,
) -> Result<crate::quarantine::Page, ApiError> {
    let mut known: Vec<&str> = FILTERS.to_vec();
    known.push("before");
    let text = query(q);
    let q = Query::parse(Some(&text), &known)?;
    let filter = api::filter(&q, now)?;
    let before = q
        .get("before")
        .map(|b| {
            b.trim()
                .parse::<EntryId>()
                .map_err(|e| ApiError::bad_request(format!("`before`: {}", e.0)))
        })
        .transpose()?;
    let store = Arc::clone(state.store());
    blocking(move || {
        Ok(store.list_bounded(&filter, api::DEFAULT_LIMIT, before, now, MAX_EXAMINED)?)
    })
    .await
}

/// The state's name in `lang`.
fn state_name(s: &Signed, name: &str) -> String {
    s.lang
        .lookup(&format!("state.{name}"))
        .map_or_else(|| name.to_string(), str::to_string)
}

fn entry_state(e: &EntryView) -> &str {
    e.state.get("state").and_then(|v| v.as_str()).unwrap_or("")
}

fn filters_form(s: &Signed, p: &[(String, String)]) -> Markup {
    let l = s.lang;
    let text = |name: &'static str, key: &'static str, kind: &'static str| {
        html! {
            div {
                label for={ "f-" (name) } { (l.t(key)) }
                input id={ "f-" (name) } type=(kind) name=(name) value=(value(p, name));
            }
        }
    };
    html! {
        form.filters method="get" action="/reports" role="search" {
            (text("rcpt", "reports.rcpt", "search"))
            (text("sender", "reports.sender", "search"))
            (text("subject", "reports.subject", "search"))
            (text("since", "reports.since", "date"))
            (text("until", "reports.until", "date"))
            div {
                label for="f-min_score" { (l.t("reports.min_score")) }
                input #f-min_score type="number" step="any" name="min_score" value=(value(p, "min_score"));
            }
            div {
                label for="f-state" { (l.t("reports.state")) }
                select #f-state name="state" {
                    option value="" { (l.t("reports.any")) }
                    @for st in STATES {
                        option value=(st) selected[value(p, "state") == st] { (state_name(s, st)) }
                    }
                }
            }
            div {
                label for="f-action" { (l.t("reports.action")) }
                select #f-action name="action" {
                    option value="" { (l.t("reports.any")) }
                    @for a in ACTIONS {
                        option value=(a) selected[value(p, "action") == a] { (action_name(l, a)) }
                    }
                }
            }
            div { button type="submit" { (l.t("reports.search")) } }
        }
    }
}

/// The action buttons for entries (a selection, or one with `ids`).
fn action_buttons(s: &Signed, one: Option<&EntryView>) -> Markup {
    let l = s.lang;
    let held = one.is_none_or(|e| matches!(entry_state(e), "held" | "in_doubt"));
    html! {
        div.actions {
            @if held {
                button type="submit" name="act" value="release" { (l.t("act.release")) }
                label.inline { input type="checkbox" name="learn_ham" value="1"; (l.t("act.and_learn_ham")) }
                label.inline { input type="checkbox" name="allow_sender" value="1"; (l.t("act.and_allow")) }
                @if one.is_some_and(|e| entry_state(e) == "in_doubt") {
                    label.inline { input type="checkbox" name="force" value="1"; (l.t("act.force")) }
                }
            }
        }
        div.actions {
            button.secondary type="submit" name="act" value="learn_ham" { (l.t("act.learn_ham")) }
            button.secondary type="submit" name="act" value="learn_spam" { (l.t("act.learn_spam")) }
            button.secondary type="submit" name="act" value="allow" { (l.t("act.allow")) }
            button.danger type="submit" name="act" value="delete" data-confirm=(l.t("act.confirm_delete")) { (l.t("act.delete")) }
            label.inline { input type="checkbox" name="learn_spam" value="1"; (l.t("act.and_learn_spam")) }
        }
    }
}

/// `GET /reports`.
pub async fn list(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let l = s.lang;
    let p = pairs(raw.as_deref());
    let mut api_query: Vec<(&str, &str)> = FILTERS
        .iter()
        .map(|f| (*f, value(&p, f)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let filters_only = query(&api_query);
    let before = value(&p, "before");
    if !before.is_empty() {
        api_query.push(("before", before));
    }
    let now = now_ms() / 1000;
    let answer = page_of(&state, &api_query, now).await;
    let (entries, next, cut_short, error) = match answer {
        Ok(p) => (
            p.entries
                .iter()
                .map(|e| EntryView::of(e, now))
                .collect::<Vec<_>>(),
            p.next,
            p.cut_short,
            None,
        ),
        Err(e) => (Vec::new(), None, false, Some(e)),
    };
    let back = if filters_only.is_empty() {
        "/reports".to_string()
    } else {
        format!("/reports?{filters_only}")
    };
    let body = html! {
        (notice(&s, Some(value(&p, "ok"))))
        (filters_form(&s, &p))
        @if let Some(e) = &error { p.error role="alert" { (e.message) } }
        form method="post" action="/reports/act" {
            (csrf_field(&s))
            input type="hidden" name="back" value=(back);
            @if s.can_act() && !entries.is_empty() { (action_buttons(&s, None)) }
            div.table { table.reports {
                caption.muted { (l.t("reports.caption")) }
                thead { tr {
                    @if s.can_act() { th { input type="checkbox" data-select-all aria-label=(l.t("reports.select_all")); } }
                    th { (l.t("reports.time")) }
                    th { (l.t("reports.sender")) }
                    th.wide { (l.t("reports.rcpt")) }
                    th { (l.t("reports.subject")) }
                    th.num { (l.t("reports.score")) }
                    th { (l.t("reports.state")) }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            @if s.can_act() {
                                td { input type="checkbox" name="id" value=(e.id.to_string()) aria-label=(format!("{} {}", l.t("reports.select"), e.subject)); }
                            }
                            td { time datetime=(e.time_utc) { (e.time_utc.get(..16).unwrap_or(&e.time_utc)) } }
                            td.addr { (if e.sender.is_empty() { "<>" } else { &e.sender }) }
                            td.addr.wide { (e.recipients.join(", ")) }
                            td.subject { a href={ "/reports/" (e.id.to_string()) } { (if e.subject.is_empty() { l.t("reports.no_subject") } else { &e.subject }) } }
                            td.num { (format!("{:.2}", e.score)) }
                            td.state { (state_name(&s, entry_state(e))) }
                        }
                    }
                }
            } }
            @if entries.is_empty() && error.is_none() && !cut_short { p.muted { (l.t("reports.empty")) } }
            @if cut_short { p.warning role="status" { (l.t("reports.cut_short").replace("{n}", &MAX_EXAMINED.to_string())) } }
        }
        nav.pager aria-label=(l.t("reports.pages")) {
            @if !before.is_empty() { a href=(back) { (l.t("reports.first")) } }
            @if let Some(n) = next {
                @let q = { let mut q = api_query.clone(); q.retain(|(k, _)| *k != "before"); let n = n.to_string(); q.push(("before", &n)); query(&q) };
                a href={ "/reports?" (q) } rel="next" { (if cut_short { l.t("reports.search_on") } else { l.t("reports.next") }) }
            }
        }
    };
    let mut r = page(&s, Nav::Reports, l.t("nav.reports"), body);
    if let Some(e) = error {
        *r.status_mut() = e.status;
    }
    r
}

/// `GET /reports/{id}`.
pub async fn show(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
) -> Response {
    let l = s.lang;
    let answer = api::show(Reader(s.user.principal()), State(state), Path(id)).await;
    let a = match answer {
        Ok(Json(a)) => a,
        Err(e) => return error_page(&s, e.status, &e.message),
    };
    let e = &a.entry;
    let id = e.id.to_string();
    let st = entry_state(e);
    let by = e.state.get("by").and_then(|v| v.as_str());
    let at = e.state.get("at_utc").and_then(|v| v.as_str());
    let title = if e.subject.is_empty() {
        l.t("reports.no_subject").to_string()
    } else {
        e.subject.clone()
    };
    let ok = s
        .path
        .split_once("ok=")
        .map(|(_, k)| k.split('&').next().unwrap_or(""));
    let body = html! {
        (notice(&s, ok))
        p { a href="/reports" { "← " (l.t("nav.reports")) } }
        dl.facts {
            dt { (l.t("reports.id")) } dd { code { (id) } }
            dt { (l.t("reports.time")) } dd { (e.time_utc) }
            dt { (l.t("reports.sender")) } dd { (if e.sender.is_empty() { "<>" } else { &e.sender }) }
            dt { (l.t("reports.rcpt")) } dd { (e.recipients.join(", ")) }
            dt { (l.t("reports.client")) } dd {
                (a.envelope.client_addr.as_deref().unwrap_or("–"))
                @if let Some(n) = &a.envelope.client_name { " (" (n) ")" }
            }
            @if let Some(u) = &e.auth_user { dt { (l.t("reports.auth_user")) } dd { (u) } }
            @if let Some(q) = &e.queue_id { dt { (l.t("reports.queue_id")) } dd { (q) } }
            dt { (l.t("reports.score")) } dd { (format!("{:.2}", e.score)) }
            dt { (l.t("reports.state")) } dd {
                (state_name(&s, st))
                @if let (Some(by), Some(at)) = (by, at) { " · " (by) " · " (at) }
            }
        }
        @if s.can_act() && st != "deleted" && st != "releasing" {
            form method="post" action="/reports/act" {
                (csrf_field(&s))
                input type="hidden" name="id" value=(id);
                input type="hidden" name="back" value={ "/reports/" (id) };
                (action_buttons(&s, Some(e)))
            }
        }
        h2 { (l.t("reports.why")) }
        (explain::verdict(l, &a.verdict))
        @match &a.preview {
            Some(p) => (explain::preview(l, p)),
            None => p.muted { (l.t("reports.deleted")) },
        }
    };
    page(&s, Nav::Reports, &title, body)
}

/// What one action did to one entry: a short line, or the error.
type Outcome = (String, Result<String, ApiError>);

/// Learns the messages of `ids` as spam or ham in one update of the model,
/// logging each as `learn-spam` or `learn-ham`.
async fn learn_entries(
    state: &Arc<HttpState>,
    who: &Principal,
    ids: Vec<EntryId>,
    spam: bool,
) -> Result<Vec<Outcome>, ApiError> {
    let store = Arc::clone(state.store());
    let (results, model) = with_model(state, move |model, engine| {
        let mut out = Vec::new();
        for id in ids {
            let r = match store.message(id) {
                Ok(Some(raw)) => {
                    let learned = model.learn(engine, &raw, spam);
                    Ok((learned.before, learned.after))
                }
                Ok(None) => Err(ApiError::new(
                    StatusCode::GONE,
                    format!("{id}: no message (deleted, or no such entry)"),
                )),
                Err(e) => Err(e.into()),
            };
            out.push((id, r));
        }
        let path = engine.config().model.as_ref();
        (
            out,
            path.map(|p| p.display().to_string()).unwrap_or_default(),
        )
    })
    .await?;
    let (s, b) = (Arc::clone(state.store()), by(who));
    let what = if spam { "learn-spam" } else { "learn-ham" };
    let learned: Vec<EntryId> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(id, _)| *id)
        .collect();
    blocking(move || {
        let now = now_ms() / 1000;
        for id in learned {
            s.log_action(&AdminAction {
                at: now,
                by: b.clone(),
                what: what.into(),
                id: Some(id),
                detail: model.clone(),
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(results
        .into_iter()
        .map(|(id, r)| {
            if r.is_ok() {
                info!(by = who.name, entry = %id, what, "quarantine entry learned through the console");
            }
            (
                id.to_string(),
                r.map(|(before, after)| format!("{before:.2} → {after:.2}")),
            )
        })
        .collect())
}

/// Allows the sender of each of `ids` from its client address, through the
/// API's `senders::add` (validated, stored, applied at once).
async fn allow_senders(state: &Arc<HttpState>, who: &Principal, ids: Vec<EntryId>) -> Vec<Outcome> {
    let mut out = Vec::new();
    for id in ids {
        let store = Arc::clone(state.store());
        let entry = blocking(move || {
            let e = store
                .get(id)?
                .ok_or_else(|| ApiError::not_found(format!("no quarantine entry {id}")))?;
            allow_entry(
                &e.detail.envelope.sender,
                e.detail.envelope.client_addr.as_deref(),
            )
            .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))
        })
        .await;
        let r = match entry {
            Ok(entry) => senders::add(
                Admin(who.clone()),
                State(Arc::clone(state)),
                Path("allow".to_string()),
                Json(AddRequest {
                    entry,
                    comment: format!("allowed from quarantine entry {id} in the console"),
                }),
            )
            .await
            .map(|Json(e)| e.entry),
            Err(e) => Err(e),
        };
        out.push((id.to_string(), r));
    }
    out
}

/// Does `act` to `ids` for `who`: each entry's outcome, in order.
async fn perform(
    state: &Arc<HttpState>,
    who: &Principal,
    act: &str,
    form: &Form,
    ids: Vec<EntryId>,
) -> Result<Vec<Outcome>, ApiError> {
    let line = |r: Result<EntryView, ApiError>| {
        r.map(|e| {
            e.state
                .get("state")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        })
    };
    match act {
        "release" => {
            let opts = ResendOptions {
                force: form.checked("force"),
                learn_ham: form.checked("learn_ham"),
                allow_sender: form.checked("allow_sender"),
            };
            Ok(release_entries(state, who, ids, opts)
                .await?
                .into_iter()
                .map(|(id, r)| {
                    (
                        id.to_string(),
                        r.map(|d| {
                            let mut t = d.delivery;
                            for p in d.problems {
                                t.push_str(" · ");
                                t.push_str(&p);
                            }
                            t
                        }),
                    )
                })
                .collect())
        }
        "delete" => Ok(delete_entries(state, who, ids, form.checked("learn_spam"))
            .await?
            .into_iter()
            .map(|(id, r)| (id.to_string(), line(r.map(|d| d.entry))))
            .collect()),
        "learn_ham" => learn_entries(state, who, ids, false).await,
        "learn_spam" => learn_entries(state, who, ids, true).await,
        "allow" => Ok(allow_senders(state, who, ids).await),
        _ => Err(ApiError::bad_request(format!(
            "`act`: `{}` is not one of release, delete, learn_ham, learn_spam, allow",
            act.chars().take(32).collect::<String>()
        ))),
    }
}

/// `POST /reports/act`.
pub async fn act(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    body: axum::body::Bytes,
) -> Response {
    let l = s.lang;
    let form = match s.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(r) = s.require_admin() {
        return r;
    }
    let back = local_path(form.get("back").unwrap_or("/reports")).to_string();
    let texts = form.all("id");
    if texts.is_empty() {
        return error_page(&s, StatusCode::BAD_REQUEST, l.t("error.no_selection"));
    }
    if texts.len() > MAX_IDS {
        return error_page(
            &s,
            StatusCode::BAD_REQUEST,
            &format!("`id`: 1 to {MAX_IDS}"),
        );
    }
    let mut ids = Vec::new();
    for t in texts {
        match entry_id(t) {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(e) => return error_page(&s, e.status, &e.message),
        }
    }
    let act = form.get("act").unwrap_or("");
    let who = s.user.principal();
    let outcomes = match perform(&state, &who, act, &form, ids).await {
        Ok(o) => o,
        Err(e) => return error_page(&s, e.status, &e.message),
    };
    if outcomes.iter().all(|(_, r)| r.is_ok()) {
        let key = format!("ok.{act}");
        let sep = if back.contains('?') { '&' } else { '?' };
        return redirect(&format!("{back}{sep}{}", query(&[("ok", &key)])));
    }
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    let status = outcomes
        .iter()
        .find_map(|(_, r)| r.as_ref().err().map(|e| e.status))
        .filter(|_| outcomes.len() == 1)
        .unwrap_or(StatusCode::OK);
    let body = html! {
        p.warning role="alert" { (l.t("act.some_failed").replace("{n}", &failed.to_string()).replace("{total}", &outcomes.len().to_string())) }
        div.table { table {
            thead { tr { th { (l.t("reports.id")) } th { (l.t("act.outcome")) } } }
            tbody { @for (id, r) in &outcomes { tr {
                td { a href={ "/reports/" (id) } { code { (id) } } }
                td { @match r { Ok(t) => span { "✓ " (t) }, Err(e) => span.score-high { (e.status.as_u16()) " " (e.message) } } }
            } } }
        } }
        p { a href=(back) { (l.t("act.back")) } }
    };
    let mut r = page(&s, Nav::Reports, l.t("act.title"), body);
    *r.status_mut() = status;
    r
}
