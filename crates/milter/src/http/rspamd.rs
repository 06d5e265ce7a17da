//! Rspamd's scanning protocol: `POST /checkv2` (and the older `/check`), so that
//! `rspamc`, Exim's `spam` condition, Haraka, OpenSMTPD filters and the other
//! integrations that speak Rspamd work with chaff unchanged; and `GET /ping`.
//!
//! The request is the raw message as the body and the envelope in headers: `From`,
//! `Rcpt` (one per recipient, repeatable), `IP`, `Helo`, `Hostname`, `User`,
//! `Queue-Id`, `Deliver-To`; the others Rspamd clients send (`Pass`, `Flags`,
//! `Settings-ID`, `Log-Tag`, `MTA-Name`, `Filename`, …) are accepted and ignored.
//! A malformed one that chaff reads is a 400 naming it.
//!
//! `User` (the SMTP AUTH login) makes the message outbound: the `[outbound]`
//! thresholds apply, a locked account is refused, and a reject counts toward the
//! account's lock, exactly as for the milter. Since whoever can reach the port could
//! otherwise lock any account, the header is honoured only for requests
//! authenticated as a `scan` or `admin` user, and ignored (logged at debug level)
//! for the others.
//!
//! The message is decided by the milter's own path (`Service::decide`: inline for
//! small inbound mail, else the scan threads under `scan_timeout_ms`, with the
//! fallback answer when a scan fails) and counted and logged as milter mail is.
//! The reply (`/checkv2`):
//!
//! | field | value |
//! |---|---|
//! | `action` | deliver → `no action`, quarantine → `add header`, reject and locked account → `reject`, deferred (busy, store unusable, fallback `tempfail`) → `soft reject` |
//! | `score`, `required_score` | the score and the reject threshold in force (inbound or `[outbound]`) |
//! | `symbols` | one per keyword hit (`KW_…`: score = what it added, options = category and count), `CHAFF_MODEL` for the classifier's points (options: its strongest tokens), and one per reason that is not the score (`CHAFF_ALLOW_LISTED`, `CHAFF_ACCOUNT_LOCKED`, …), `CHAFF_POLICY` (stored policies that applied) and `CHAFF_SENDER_MISMATCH` (an authenticated sender who does not match the login: its points, the login and the senders); the scores add up to `score` |
//! | `messages.smtp_message` | the SMTP reply for `reject` and `soft reject` (`557 5.7.1 forbid to send spam mail` by default) |
//! | `milter` | `add_headers`: the milter's score and status headers; `remove_headers`: the same names, so forged copies go |
//! | `is_skipped` | true when chaff could not decide (the fallback answer) |
//! | `time_real`, `message-id` | seconds from request to answer; the message's `Message-ID` without `<>`, if it has one |
//!
//! `/check` answers the same in Rspamd's version 1 form: the result under
//! `default`, with `is_spam`, and the symbols beside the other fields.

use super::auth::Caller;
use super::body::{BodyError, content_length, read_message};
use super::error::ApiError;
use super::state::HttpState;
use crate::policy::{self, Decision, Outcome};
use crate::service::Generation;
use crate::session::ClientInfo;
use crate::session::ScanJob;
use crate::users::Role;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chaff::{Envelope, Reason, Reply};
use serde_json::{Map, Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::debug;

/// Longest envelope header value read (`From`, `Rcpt`, `User`, `Queue-Id`), in
/// bytes: an address is at most 256 (RFC 5321).
pub const MAX_ENVELOPE_VALUE: usize = 1024;

/// The answer to `GET /ping`, as Rspamd gives it.
pub(crate) async fn ping() -> &'static str {
    "pong\r\n"
}

/// One envelope header as text: trimmed, UTF-8, at most [`MAX_ENVELOPE_VALUE`].
fn value<'a>(name: &str, v: &'a axum::http::HeaderValue) -> Result<&'a str, ApiError> {
    let s = std::str::from_utf8(v.as_bytes())
        .map_err(|_| ApiError::bad_header(name, "not UTF-8"))?
        .trim();
    if s.len() > MAX_ENVELOPE_VALUE {
        return Err(ApiError::bad_header(
            name,
            format!("longer than {MAX_ENVELOPE_VALUE} bytes"),
        ));
    }
    Ok(s)
}

/// An address without its angle brackets.
fn address(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// The envelope of a scan request. `User` is read only when `with_user` (the
/// caller may apply outbound policy); otherwise it is ignored.
pub fn envelope(headers: &HeaderMap, with_user: bool) -> Result<Envelope, ApiError> {
    let mut env = Envelope::default();
    if let Some(v) = headers.get("from") {
        env.sender = Some(address(value("From", v)?));
    }
    for v in headers.get_all("rcpt") {
        // One recipient per header, as rspamc sends them; a comma-separated list is
        // read too.
        for r in value("Rcpt", v)?.split(',') {
            let r = address(r);
            if !r.is_empty() {
                env.recipients.push(r);
            }
        }
    }
    if let Some(v) = headers.get("ip") {
        let s = value("IP", v)?;
        let bare = s
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(s);
        let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
        env.client_addr = Some(
            bare.parse::<IpAddr>()
                .map_err(|_| ApiError::bad_header("IP", format!("`{s}` is not an IP address")))?,
        );
    }
    if let Some(v) = headers.get("queue-id") {
        let q = value("Queue-Id", v)?;
        if !q.is_empty() {
            env.queue_id = Some(q.to_string());
        }
    }
    if let Some(v) = headers.get("user") {
        let u = value("User", v)?;
        if with_user {
            if !u.is_empty() {
                env.auth_user = Some(u.to_string());
            }
        } else {
            debug!(
                user = u,
                "User header ignored: the request is not from a scan or admin user"
            );
        }
    }
    Ok(env)
}

/// The `Message-ID` of a message's header block, without `<>`, unfolded; at most
/// 998 bytes.
pub fn message_id(raw: &[u8]) -> Option<String> {
    let (end, _) = chaff::text::header_end(raw);
    let head = &raw[..end];
    let mut lines = head.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"message-id")
        {
            continue;
        }
        let mut v = line[colon + 1..].to_vec();
        while let Some(next) = lines.peek() {
            if matches!(next.first(), Some(b' ' | b'\t')) {
                v.extend_from_slice(next);
                lines.next();
            } else {
                break;
            }
        }
        let v = String::from_utf8_lossy(&v);
        let id = address(v.trim());
        if id.is_empty() {
            return None;
        }
        let mut id: String = id.chars().filter(|c| !c.is_control()).collect();
        if id.len() > 998 {
            let mut cut = 998;
            while !id.is_char_boundary(cut) {
                cut -= 1;
            }
            id.truncate(cut);
        }
        return Some(id);
    }
    None
}

/// A request header as text, trimmed and bounded (longer values are cut at a
/// character boundary); `None` when absent, empty or not UTF-8.
fn text_header(headers: &HeaderMap, name: &str) -> Option<String> {
    const MAX: usize = 255;
    let v = headers.get(name)?.to_str().ok()?.trim();
    if v.is_empty() {
        return None;
    }
    let mut cut = v.len().min(MAX);
    while !v.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(v[..cut].to_string())
}

/// Rspamd's name for what happens to the message.
pub fn action_name(d: &Decision, settings_fallback: crate::config::Fallback) -> &'static str {
    use crate::config::Fallback;
    match d.outcome {
        Outcome::Deliver => "no action",
        Outcome::Quarantine => "add header",
        Outcome::Reject | Outcome::Locked | Outcome::Oversize => "reject",
        Outcome::Busy
        | Outcome::StoreTempfail
        | Outcome::QuarantineTempfail
        | Outcome::RateLimited => "soft reject",
        Outcome::Fallback => match d.fallback.unwrap_or(settings_fallback) {
            Fallback::Accept => "no action",
            Fallback::Tempfail => "soft reject",
            Fallback::Reject => "reject",
        },
    }
}

/// The reply of a fallback answer that refuses, as Postfix words its own.
fn fallback_reply(d: &Decision, f: crate::config::Fallback) -> Option<Reply> {
    use crate::config::Fallback;
    match d.fallback.unwrap_or(f) {
        Fallback::Accept => None,
        Fallback::Tempfail => {
            Reply::parse("451 4.3.0 chaff: cannot scan now, try again later").ok()
        }
        Fallback::Reject => Reply::parse("550 5.7.1 chaff: message refused").ok(),
    }
}

/// A symbol's name for a keyword: `KW_` and the keyword, Latin letters in upper
/// case and spaces as `_` (`KW_VIAGRA`, `KW_代开`).
pub fn keyword_symbol(keyword: &str) -> String {
    let mut s = String::with_capacity(3 + keyword.len());
    s.push_str("KW_");
    for c in keyword.chars() {
        if c.is_whitespace() {
            s.push('_');
        } else {
            s.extend(c.to_uppercase());
        }
    }
    s
}

fn symbol(name: &str, score: f64, metric_score: f64, options: Vec<String>) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(name));
    o.insert("score".into(), json!(score));
    o.insert("metric_score".into(), json!(metric_score));
    if !options.is_empty() {
        o.insert("options".into(), json!(options));
    }
    Value::Object(o)
}

/// Scores are given as computed, unrounded, so that a client rounding them (rspamc
/// prints two decimals) shows what `chaff score` shows; times to the microsecond.
fn micros(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The symbols of a decision; their scores add up to the score.
fn symbols(d: &Decision, g: &Generation, env: &Envelope) -> Map<String, Value> {
    let mut out = Map::new();
    // A name already taken (two keywords that read alike in upper case) gets `_2`.
    let mut add = |name: &str, score: f64, metric_score: f64, options: Vec<String>| {
        let mut key = name.to_string();
        let mut n = 2;
        while out.contains_key(&key) {
            key = format!("{name}_{n}");
            n += 1;
        }
        let v = symbol(&key, score, metric_score, options);
        out.insert(key, v);
    };
    if let Some(v) = &d.verdict {
        let mut keywords = 0.0;
        for h in &v.hits {
            keywords += h.contribution;
            add(
                &keyword_symbol(&h.keyword),
                h.contribution,
                h.weight,
                vec![h.category.clone(), format!("x{}", h.count)],
            );
        }
        let scored = matches!(v.reason, Reason::Score { .. } | Reason::AllowListed { .. });
        if scored && g.engine.config().model.is_some() {
            let options = v
                .tokens
                .iter()
                .map(|t| format!("{}:{:+.2}", t.token, t.weight))
                .collect();
            // Points a policy added (a sender who does not match the login)
            // have their own symbol.
            let policy: f64 = d.policy.iter().map(|m| m.score).sum();
            let points = v.score - keywords - policy;
            add("CHAFF_MODEL", points, points, options);
        }
        match &v.reason {
            Reason::AllowListed { entry, proof } => add(
                "CHAFF_ALLOW_LISTED",
                0.0,
                0.0,
                vec![entry.clone(), proof.to_string()],
            ),
            Reason::BlockListed { entry } => {
                add("CHAFF_BLOCK_LISTED", 0.0, 0.0, vec![entry.clone()])
            }
            Reason::Oversize { size, limit, .. } => add(
                "CHAFF_OVERSIZE",
                0.0,
                0.0,
                vec![size.to_string(), limit.to_string()],
            ),
            Reason::Failed { error } => add("CHAFF_SCAN_FAILED", 0.0, 0.0, vec![error.clone()]),
            _ => {}
        }
        if v.truncated {
            add("CHAFF_TRUNCATED", 0.0, 0.0, vec![]);
        }
    }
    // `CHAFF_POLICY` (options: the stored policies' scopes) and
    // `CHAFF_SENDER_MISMATCH` (options: the login, its domain, the senders that
    // did not match; score: the points added).
    for m in &d.policy {
        add(m.symbol, m.score, m.score, m.options.clone());
    }
    if let Some(user) = env.auth_user.as_deref() {
        add("CHAFF_OUTBOUND", 0.0, 0.0, vec![user.to_string()]);
    }
    match d.outcome {
        Outcome::Locked => {
            let mut options = vec![env.auth_user.clone().unwrap_or_default()];
            if let Some(l) = &d.lock {
                options.push(l.reason.clone());
            }
            add("CHAFF_ACCOUNT_LOCKED", 0.0, 0.0, options);
        }
        Outcome::Busy => add("CHAFF_BUSY", 0.0, 0.0, vec![]),
        Outcome::StoreTempfail => add("CHAFF_STORE_UNAVAILABLE", 0.0, 0.0, vec![]),
        Outcome::RateLimited => add(
            "CHAFF_RATE_LIMITED",
            0.0,
            0.0,
            d.error.iter().cloned().collect(),
        ),
        Outcome::Fallback => add(
            "CHAFF_FALLBACK",
            0.0,
            0.0,
            d.error.clone().into_iter().collect(),
        ),
        _ => {}
    }
    if d.newly_locked {
        add(
            "CHAFF_ACCOUNT_LOCKED_NOW",
            0.0,
            0.0,
            env.auth_user.clone().into_iter().collect(),
        );
    }
    out
}

/// The protocol's two reply forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `/checkv2`.
    V2,
    /// `/check`: the result under `default`.
    V1,
}

/// The Rspamd reply for a decision on a message sent with `env`.
pub fn reply(
    d: &Decision,
    g: &Generation,
    env: &Envelope,
    message_id: Option<&str>,
    started: Instant,
    form: Form,
) -> Value {
    let settings = &g.settings;
    let action = action_name(d, settings.milter.fallback);
    let thresholds = match d.verdict.as_ref().map(|v| &v.reason) {
        Some(Reason::Score { quarantine, reject }) => (*quarantine, *reject),
        _ => {
            let t = g.engine.config().thresholds_for(env.is_outbound());
            (t.quarantine, t.reject)
        }
    };
    let score = d.verdict.as_ref().map_or(0.0, |v| v.score);
    let mut messages = Map::new();
    let smtp = match action {
        "reject" => d
            .reply
            .clone()
            .or_else(|| fallback_reply(d, settings.milter.fallback))
            .or_else(|| Some(settings.reject_reply.clone())),
        "soft reject" => d
            .reply
            .clone()
            .or_else(|| fallback_reply(d, settings.milter.fallback)),
        _ => None,
    };
    if let Some(r) = smtp {
        messages.insert("smtp_message".into(), json!(r.as_str()));
    }
    let mut result = Map::new();
    result.insert("is_skipped".into(), json!(d.outcome == Outcome::Fallback));
    result.insert("score".into(), json!(score));
    result.insert("required_score".into(), json!(thresholds.1));
    result.insert("action".into(), json!(action));
    let symbols = symbols(d, g, env);
    let mut top = Map::new();
    match form {
        Form::V2 => {
            top.extend(result);
            top.insert("symbols".into(), Value::Object(symbols));
        }
        Form::V1 => {
            result.insert("is_spam".into(), json!(action != "no action"));
            result.extend(symbols);
            top.insert("default".into(), Value::Object(result));
        }
    }
    top.insert("messages".into(), Value::Object(messages));
    if let Some(id) = message_id {
        top.insert("message-id".into(), json!(id));
    }
    top.insert(
        "time_real".into(),
        json!(micros(started.elapsed().as_secs_f64())),
    );
    if let (Some(v), Outcome::Deliver | Outcome::Quarantine) = (&d.verdict, d.outcome) {
        let m = &settings.milter;
        let mut add = Map::new();
        add.insert(m.score_header.clone(), json!(policy::score_value(v)));
        add.insert(
            m.status_header.clone(),
            json!(policy::status_value(v, m.status_hits, m.status_tokens)),
        );
        let mut remove = Map::new();
        remove.insert(m.score_header.clone(), json!(0));
        remove.insert(m.status_header.clone(), json!(0));
        let milter = json!({"add_headers": add, "remove_headers": remove});
        let key = if form == Form::V2 {
            "milter"
        } else {
            "rmilter"
        };
        top.insert(key.into(), milter);
    }
    Value::Object(top)
}

/// `POST /checkv2`.
pub(crate) async fn checkv2(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_as(state, caller, headers, body, Form::V2).await
}

/// `POST /check`.
pub(crate) async fn check(
    State(state): State<Arc<HttpState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_as(state, caller, headers, body, Form::V1).await
}

async fn check_as(
    state: Arc<HttpState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    form: Form,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let g = state.service.current();
    let anonymous_ok = g.settings.http.as_ref().is_none_or(|h| h.anonymous_scan);
    if caller.user.is_none() && !anonymous_ok {
        caller.require(Role::Read)?;
    }
    let env = envelope(&headers, caller.has(Role::Scan))?;
    // For the history and kept entries, as the milter records CONNECT and HELO.
    let client = ClientInfo {
        name: text_header(&headers, "Hostname"),
        helo: text_header(&headers, "Helo"),
    };
    let declared = content_length(&headers)?;
    let limit = g.settings.max_message_size;
    let d = match read_message(body, declared, limit, state.service.budget()).await {
        Ok((raw, reservation)) => {
            let id = message_id(&raw);
            let size = raw.len();
            let job = Box::new(ScanJob {
                raw,
                envelope: env.clone(),
                reservation,
                // Release tokens are the milter's: mail released from the
                // quarantine goes back through the MTA's milter, not this protocol.
                release_tokens: Vec::new(),
            });
            // The client is told the action and keeps or files the message itself:
            // nothing here is held for it. With `[quarantine] keep_rejected` a
            // rejected message is kept as the milter keeps one.
            let d = state
                .service
                .decide(Arc::clone(&g), job, &client, false)
                .await;
            state.service.record(&d, &env, size, &client);
            return Ok(json_response(reply(
                &d,
                &g,
                &env,
                id.as_deref(),
                started,
                form,
            )));
        }
        Err(BodyError::Busy) => Decision::busy(),
        Err(e) => return Err(e.into()),
    };
    // Busy: answered like the milter's 451, as a soft reject the MTA defers.
    state.service.record(
        &d,
        &env,
        usize::try_from(declared.unwrap_or(0)).unwrap_or(0),
        &client,
    );
    let mut r = json_response(reply(&d, &g, &env, None, started, form));
    // The rest of the body was not read: the connection cannot be reused.
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    Ok(r)
}

/// A JSON body as the answer.
pub(crate) fn json_response(v: Value) -> Response {
    let body = serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn every_outcome_has_rspamds_action_name() {
        use crate::config::Fallback;
        use crate::settings::Settings;
        let mut s = Settings::default();
        let with = |o: Outcome| Decision {
            outcome: o,
            ..Decision::busy()
        };
        for (o, want) in [
            (Outcome::Deliver, "no action"),
            (Outcome::Quarantine, "add header"),
            (Outcome::Reject, "reject"),
            (Outcome::Locked, "reject"),
            (Outcome::Oversize, "reject"),
            (Outcome::Busy, "soft reject"),
            (Outcome::StoreTempfail, "soft reject"),
            (Outcome::QuarantineTempfail, "soft reject"),
        ] {
            assert_eq!(action_name(&with(o), Fallback::Accept), want, "{o}");
        }
        for (f, want) in [
            (Fallback::Accept, "no action"),
            (Fallback::Tempfail, "soft reject"),
            (Fallback::Reject, "reject"),
        ] {
            s.milter.fallback = f;
            let d = Decision::fallback(&s, "x".into());
            assert_eq!(action_name(&d, Fallback::Accept), want, "{f:?}");
        }
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_envelope_comes_from_rspamds_headers() {
        let h = headers(&[
            ("From", b"<a@example.com>"),
            ("Rcpt", b"<b@example.org>"),
            ("Rcpt", b"c@example.org, <d@example.org>"),
            ("IP", b"192.0.2.1"),
            ("Helo", b"mx.example.com"),
            ("Hostname", b"mx.example.com"),
            ("User", b"alice"),
            ("Queue-Id", b"4AB12"),
            ("Deliver-To", b"b@example.org"),
            ("Pass", b"all"),
            ("Flags", b"body_block"),
        ]);
        let e = envelope(&h, true).unwrap();
        assert_eq!(e.sender.as_deref(), Some("a@example.com"));
        assert_eq!(
            e.recipients,
            ["b@example.org", "c@example.org", "d@example.org"]
        );
        assert_eq!(e.client_addr, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(e.auth_user.as_deref(), Some("alice"));
        assert_eq!(e.queue_id.as_deref(), Some("4AB12"));
        // Not allowed to apply outbound policy: User is ignored.
        assert_eq!(envelope(&h, false).unwrap().auth_user, None);
        // A bounce, and IPv6 forms.
        let e = envelope(
            &headers(&[("From", b"<>"), ("IP", b"[IPv6:2001:db8::1]")]),
            true,
        )
        .unwrap();
        assert_eq!(e.sender.as_deref(), Some(""));
        assert_eq!(e.client_addr, Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn malformed_headers_are_400_naming_the_header() {
        let e = envelope(&headers(&[("IP", b"not-an-ip")]), false).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("header `IP`"), "{e}");
        let e = envelope(&headers(&[("From", b"\xff\xfe")]), false).unwrap_err();
        assert!(e.message.starts_with("header `From`: not UTF-8"), "{e}");
        let long = vec![b'a'; MAX_ENVELOPE_VALUE + 1];
        let e = envelope(&headers(&[("Rcpt", &long)]), false).unwrap_err();
        assert!(e.message.starts_with("header `Rcpt`"), "{e}");
    }

    #[test]
    fn message_ids_are_read_unfolded_without_brackets() {
        assert_eq!(
            message_id(b"Subject: x\r\nMessage-ID:\r\n <abc@example.com>\r\n\r\nbody").as_deref(),
            Some("abc@example.com")
        );
        assert_eq!(message_id(b"message-id: <x@y>\n\n").as_deref(), Some("x@y"));
        assert_eq!(message_id(b"Subject: x\n\nMessage-ID: <in body>\n"), None);
        assert_eq!(message_id(b""), None);
    }

    #[test]
    fn keyword_symbols_are_named_in_upper_case() {
        assert_eq!(keyword_symbol("viagra"), "KW_VIAGRA");
        assert_eq!(keyword_symbol("代开"), "KW_代开");
        assert_eq!(keyword_symbol("free sex"), "KW_FREE_SEX");
    }

    proptest::proptest! {
        #[test]
        fn any_header_block_gives_a_bounded_message_id_or_none(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4000)) {
            if let Some(id) = message_id(&raw) {
                proptest::prop_assert!(id.len() <= 998 && !id.is_empty());
                proptest::prop_assert!(!id.chars().any(char::is_control));
            }
        }

        #[test]
        fn any_envelope_headers_give_an_envelope_or_a_400(
            from in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            ip in "[0-9a-fA-F:.\\[\\]IPv]{0,60}",
            user in proptest::collection::vec(0x20u8..0x7f, 0..2000),
        ) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&from) {
                h.insert("from", v);
            }
            if let Ok(v) = HeaderValue::from_str(&ip) {
                h.insert("ip", v);
            }
            if let Ok(v) = HeaderValue::from_bytes(&user) {
                h.insert("user", v);
            }
            match envelope(&h, true) {
                Ok(e) => proptest::prop_assert!(
                    e.auth_user.as_ref().is_none_or(|u| u.len() <= MAX_ENVELOPE_VALUE)
                ),
                Err(e) => {
                    proptest::prop_assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
                    proptest::prop_assert!(e.message.starts_with("header `"));
                }
            }
        }
    }
}
