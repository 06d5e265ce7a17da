//! What every console handler needs from a request: who is signed in (the
//! [`Signed`] extractor, which sends a browser without a session to the login
//! page), the form of a `POST` with its CSRF token checked ([`Signed::form`]),
//! the role an action needs ([`Signed::require_admin`]), and the headers every
//! answer carries ([`security_headers`]).

use super::csrf;
use super::form::Form;
use super::i18n::Lang;
use super::layout;
use super::session::{COOKIE, SessionUser, cookie};
use crate::http::auth::Peer;
use crate::http::state::HttpState;
use crate::users::Role;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The headers on every console answer. The policy allows this origin's
/// script, style and images only: no inline script or style, no frames, forms
/// posting only here.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// Adds [`SECURITY_HEADERS`], and `Cache-Control: no-store` unless the
/// handler chose (the assets are cached).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        h.insert(k, HeaderValue::from_static(v));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The client's address.
pub fn peer(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<Peer>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip())
}

/// The client's address, as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(peer(parts)))
    }
}

/// True when the listener speaks TLS (the cookies are then `Secure`).
pub fn secure(state: &HttpState) -> bool {
    state
        .service
        .current()
        .settings
        .http
        .as_ref()
        .is_some_and(|h| h.has_tls())
}

/// A `303 See Other` to `to` (a path of this site).
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `to` if it is a path of this site (`/…`, not `//host`), else `/`.
pub fn local_path(to: &str) -> &str {
    if to.starts_with('/')
        && !to.starts_with("//")
        && !to.starts_with("/\\")
        && !to.chars().any(|c| c.is_control() || c == '\\')
    {
        to
    } else {
        "/"
    }
}

/// A signed-in request: the session's user and the page language.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The user, with the role in force.
    pub user: SessionUser,
    /// The session cookie's token.
    pub token: String,
    /// The language of the pages.
    pub lang: Lang,
    /// The requested path with its query, for links back.
    pub path: String,
}

// The errors are the answers themselves, made once per request: boxing them
// would buy nothing.
#[allow(clippy::result_large_err)]
impl Signed {
    /// The form in `body` if it carries the session's CSRF token; 403 if not.
    pub fn form(&self, body: &[u8]) -> Result<Form, Response> {
        let form = Form::parse(body)
            .map_err(|e| layout::error_page(self, StatusCode::BAD_REQUEST, &e).into_response())?;
        if !csrf::valid(&form, &self.user.csrf) {
            return Err(layout::error_page(
                self,
                StatusCode::FORBIDDEN,
                self.lang.t("error.csrf"),
            ));
        }
        Ok(form)
    }

    /// Ok for an admin; 403 for the other roles.
    pub fn require_admin(&self) -> Result<(), Response> {
        if self.user.role >= Role::Admin {
            Ok(())
        } else {
            Err(layout::error_page(
                self,
                StatusCode::FORBIDDEN,
                self.lang.t("error.role"),
            ))
        }
    }

    /// True when the user may act (and sees the action buttons).
    pub fn can_act(&self) -> bool {
        self.user.role >= Role::Admin
    }
}

impl FromRequestParts<Arc<HttpState>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<HttpState>,
    ) -> Result<Self, Self::Rejection> {
        let lang = Lang::of(&parts.headers);
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let to_login = || {
            let back = if parts.method == axum::http::Method::GET {
                super::form::query(&[("next", local_path(&path))])
            } else {
                String::new()
            };
            if back.is_empty() {
                redirect("/login")
            } else {
                redirect(&format!("/login?{back}"))
            }
        };
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(to_login());
        };
        let file = state.users_file.as_deref();
        let user = state
            .console
            .sessions
            .get(token, Instant::now(), |name| state.auth.role_of(name, file));
        match user {
            Some(user) => Ok(Signed {
                user,
                token: token.to_string(),
                lang,
                path,
            }),
            None => Err(to_login()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/reports?x=1"), "/reports?x=1");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "",
            "x",
            "/a\nb",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }
}
