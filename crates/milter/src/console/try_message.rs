//! "Try a message": paste a message (or pick a file, which the page's script
//! reads into the form) and see the verdict the engine in force gives it,
//! explained, with its decoded text and hits highlighted. Nothing is kept, no
//! account is counted, nothing is learned: the engine scans it alone, on a
//! blocking thread, at most [`MAX_CONCURRENT`] at once, and the message is at
//! most `[limits] max_message_size` bytes.

use super::explain;
use super::layout::{Nav, csrf_field, error_page, page};
use super::request::Signed;
use crate::http::state::HttpState;
use crate::quarantine::{Preview, StoredVerdict};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use std::sync::Arc;

/// Most trial scans at once; more wait their turn.
pub const MAX_CONCURRENT: usize = 2;
static SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT);

fn form_of(s: &Signed, max: usize, message: &str, sender: &str, rcpt: &str) -> Markup {
    let l = s.lang;
    html! {
        form method="post" action="/try" {
            (csrf_field(s))
            div {
                label for="message" { (l.t("try.message")) }
                textarea #message name="message" data-max=(max) required { (message) }
            }
            div {
                label for="upload" { (l.t("try.upload")) }
                input #upload type="file" accept=".eml,message/rfc822,text/plain";
                span #upload-note.muted aria-live="polite" data-too-large=(l.t("try.too_large")) {}
            }
            div.cards {
                div { label for="t-sender" { (l.t("try.sender")) } input #t-sender type="text" name="sender" value=(sender); }
                div { label for="t-rcpt" { (l.t("try.rcpt")) } input #t-rcpt type="text" name="rcpt" value=(rcpt); }
            }
            div.actions { button type="submit" { (l.t("try.submit")) } }
            p.muted { (l.t("try.note")) }
        }
    }
}

fn max_size(state: &HttpState) -> usize {
    state.service.current().settings.max_message_size
}

/// `GET /try`.
pub async fn form(s: Signed, State(state): State<Arc<HttpState>>) -> Response {
    let body = form_of(&s, max_size(&state), "", "", "");
    page(&s, Nav::Try, s.lang.t("nav.try"), body)
}

/// `POST /try`.
pub async fn submit(
    s: Signed,
    State(state): State<Arc<HttpState>>,
    body: axum::body::Bytes,
) -> Response {
    let l = s.lang;
    let form = match s.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let max = max_size(&state);
    let message = form.get("message").unwrap_or("").to_string();
    let sender = form.text("sender").unwrap_or("").to_string();
    let rcpt = form.text("rcpt").unwrap_or("").to_string();
    if message.trim().is_empty() {
        return error_page(&s, StatusCode::BAD_REQUEST, l.t("try.empty"));
    }
    if message.len() > max {
        return error_page(&s, StatusCode::PAYLOAD_TOO_LARGE, l.t("try.too_large"));
    }
    let Ok(_turn) = SCANS.acquire().await else {
        return error_page(&s, StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let g = state.service.current();
    let envelope = chaff::Envelope {
        sender: (!sender.is_empty()).then(|| sender.clone()),
        recipients: if rcpt.is_empty() {
            Vec::new()
        } else {
            vec![rcpt.clone()]
        },
        ..chaff::Envelope::default()
    };
    let raw = message.clone().into_bytes();
    let scanned = tokio::task::spawn_blocking(move || {
        let v = g.engine.scan(&raw, &envelope);
        (StoredVerdict::of(&v), Preview::of(&raw, &g.engine))
    })
    .await;
    let (verdict, preview) = match scanned {
        Ok(x) => x,
        Err(e) => return error_page(&s, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let body = html! {
        h2 { (l.t("try.verdict")) }
        (explain::verdict(l, &verdict))
        (explain::preview(l, &preview))
        h2 { (l.t("try.again")) }
        (form_of(&s, max, &message, &sender, &rcpt))
    };
    page(&s, Nav::Try, l.t("nav.try"), body)
}
