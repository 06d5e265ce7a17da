//! The routes and the limits every request is held to.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /ping` | anyone | `pong` |
//! | `POST /checkv2`, `POST /check` | anyone (unless `anonymous_scan = false`); `User:` honoured for `scan`, `admin` | scan ([`super::rspamd`]) |
//! | `POST /learnspam`, `POST /learnham` | `scan`, `admin` | learn (module `learn`) |
//! | `/api/…` | by endpoint | the admin API ([`super::api`]) |
//! | `/`, `/login`, `/reports`, … | console users (session cookie) | the admin console ([`crate::console`]) |
//!
//! Every request: a body over `[limits] max_message_size` is refused with 413
//! (before reading it when `Content-Length` says so), and a request not answered
//! within `[http] request_timeout_secs` of its headers gets 503 and its
//! connection is closed. Header and write time limits are the server's
//! (`super::server`).

use super::error::ApiError;
use super::state::HttpState;
use super::{api, learn, rspamd};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// The listener's router, with its state and limits.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/ping", get(rspamd::ping))
        .route("/checkv2", post(rspamd::checkv2))
        .route("/check", post(rspamd::check))
        .route("/learnspam", post(learn::learn_spam))
        .route("/learnham", post(learn::learn_ham))
        .merge(api::routes())
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), limits))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}

/// The size and time limits, around every handler.
async fn limits(State(state): State<Arc<HttpState>>, req: Request, next: Next) -> Response {
    let g = state.service.current();
    let limit = g.settings.max_message_size;
    let timeout = Duration::from_secs(
        g.settings
            .http
            .as_ref()
            .map_or(60, |h| h.request_timeout_secs),
    );
    drop(g);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        state
            .service
            .metrics()
            .http
            .answer(StatusCode::PAYLOAD_TOO_LARGE.as_u16());
        let mut r = ApiError::too_large(limit).into_response();
        // The body was not read: the connection cannot carry another request.
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, limit)));
    let path = req.uri().path().to_string();
    let metrics = &state.service.metrics().http;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => {
            metrics.answer(r.status().as_u16());
            r
        }
        Err(_) => {
            metrics.answer(StatusCode::SERVICE_UNAVAILABLE.as_u16());
            warn!(
                path,
                timeout_secs = timeout.as_secs(),
                "HTTP request not answered in time (http.request_timeout_secs)"
            );
            let mut r = ApiError::unavailable(format!(
                "the request was not answered within {} s",
                timeout.as_secs()
            ))
            .into_response();
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            r
        }
    }
}
