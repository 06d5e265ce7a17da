//! Signing in and out, and choosing the language.
//!
//! | route | what |
//! |---|---|
//! | `GET /login` | the form (name, password), with its double-submit CSRF cookie |
//! | `POST /login` | checks the name and password against the users file (Argon2id) with the API's delays after failed attempts (per source address and per user, growing, never a lockout); opens a session |
//! | `POST /logout` | ends the session (CSRF token needed) |
//! | `GET /lang?to=TAG&back=PATH` | sets the language cookie and goes back |

use super::csrf;
use super::form::Form;
use super::i18n::{self, Lang};
use super::layout::{document, language_switch};
use super::request::{ClientAddr, Signed, local_path, redirect, secure};
use super::session::{self, COOKIE, cookie, random_token, set_cookie};
use crate::http::auth::Credentials;
use crate::http::state::HttpState;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::html;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;

/// Longest name or password read from the form, in bytes.
const MAX_FIELD: usize = 1024;

fn next_of(raw: Option<&str>) -> String {
    raw.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "next")
            .map(|(_, v)| local_path(&v).to_string())
    })
    .unwrap_or_else(|| "/".to_string())
}

fn login_page(
    lang: Lang,
    token: &str,
    next: &str,
    error: Option<&str>,
    name: &str,
    secure_cookie: bool,
    status: StatusCode,
) -> Response {
    let body = html! {
        div.login {
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form method="post" action="/login" {
                input type="hidden" name=(csrf::FIELD) value=(token);
                input type="hidden" name="next" value=(next);
                div {
                    label for="name" { (lang.t("login.name")) }
                    input #name type="text" name="name" value=(name) autocomplete="username" required autofocus;
                }
                div {
                    label for="password" { (lang.t("login.password")) }
                    input #password type="password" name="password" autocomplete="current-password" required;
                }
                button type="submit" { (lang.t("login.submit")) }
            }
            p.muted { (lang.t("login.hint")) }
        }
    };
    let header = html! {
        header.top {
            span.brand { "chaff" }
            div.who { (language_switch(lang, &format!("/login?{}", super::form::query(&[("next", next)])))) }
        }
    };
    let mut r =
        Html(document(lang, lang.t("login.title"), header, body).into_string()).into_response();
    *r.status_mut() = status;
    if let Ok(v) =
        HeaderValue::from_str(&set_cookie(csrf::LOGIN_COOKIE, token, secure_cookie, None))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /login`.
pub async fn form(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let lang = Lang::of(&headers);
    let Ok(token) = random_token() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let next = next_of(raw.as_deref());
    login_page(
        lang,
        &token,
        &next,
        None,
        "",
        secure(&state),
        StatusCode::OK,
    )
}

/// `POST /login`.
pub async fn submit(
    State(state): State<Arc<HttpState>>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lang = Lang::of(&headers);
    let secure_cookie = secure(&state);
    let Ok(fresh) = random_token() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let form = Form::parse(&body).unwrap_or_default();
    let next = form
        .get("next")
        .map(|n| local_path(n).to_string())
        .unwrap_or_else(|| "/".into());
    let name = form.get("name").unwrap_or("").trim().to_string();
    let password = form.get("password").unwrap_or("").to_string();
    let expected = cookie(&headers, csrf::LOGIN_COOKIE).unwrap_or("");
    if !csrf::valid(&form, expected) {
        return login_page(
            lang,
            &fresh,
            &next,
            Some(lang.t("error.csrf")),
            "",
            secure_cookie,
            StatusCode::FORBIDDEN,
        );
    }
    if name.is_empty() || name.len() > MAX_FIELD || password.len() > MAX_FIELD {
        return login_page(
            lang,
            &fresh,
            &next,
            Some(lang.t("login.wrong")),
            "",
            secure_cookie,
            StatusCode::UNAUTHORIZED,
        );
    }
    let creds = Credentials::Password {
        name: name.clone(),
        password,
    };
    let checked = state
        .auth
        .check(creds, peer, state.users_file.as_deref())
        .await;
    match checked {
        Ok(p) => {
            let Ok((token, _)) = state.console.sessions.open(&p, Instant::now()) else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            info!(user = p.name, role = %p.role, peer = %peer, "console login");
            let mut r = redirect(&next);
            let h = r.headers_mut();
            for c in [
                set_cookie(COOKIE, &token, secure_cookie, None),
                set_cookie(csrf::LOGIN_COOKIE, "", secure_cookie, Some(0)),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    h.append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                state.service.metrics().http.auth_failure();
            }
            let message = match e.retry_after {
                Some(secs) if e.status == StatusCode::TOO_MANY_REQUESTS => {
                    lang.t("login.wait").replace("{secs}", &secs.to_string())
                }
                _ if state.users_file.is_none() => lang.t("login.no_users").to_string(),
                _ if e.status == StatusCode::UNAUTHORIZED => lang.t("login.wrong").to_string(),
                _ => e.message.clone(),
            };
            let mut r = login_page(
                lang,
                &fresh,
                &next,
                Some(&message),
                &name,
                secure_cookie,
                e.status,
            );
            if let Some(secs) = e.retry_after
                && let Ok(v) = HeaderValue::from_str(&secs.to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<Arc<HttpState>>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = signed.form(&body) {
        return r;
    }
    state.console.sessions.close(&signed.token);
    info!(user = signed.user.name, "console logout");
    let mut r = redirect("/login");
    if let Ok(v) = HeaderValue::from_str(&set_cookie(COOKIE, "", secure(&state), Some(0))) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /lang?to=TAG&back=PATH`: keeps the language for a year.
pub async fn switch_language(
    State(state): State<Arc<HttpState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut to = None;
    let mut back = "/".to_string();
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "to" => to = Lang::from_tag(&v),
            "back" => back = local_path(&v).to_string(),
            _ => {}
        }
    }
    let mut r = redirect(&back);
    if let Some(l) = to
        && let Ok(v) = HeaderValue::from_str(&session::set_cookie(
            i18n::COOKIE,
            l.tag(),
            secure(&state),
            Some(365 * 86_400),
        ))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
