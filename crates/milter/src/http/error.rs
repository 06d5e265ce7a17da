//! Errors of the HTTP listener, answered as JSON: `{"error": "…"}` with the status
//! that says what the client can do about it (400 bad input naming the header or
//! field, 401 no or wrong credentials, 403 a role that may not, 404, 409, 413,
//! 429 with `Retry-After`, 503…).
//!
//! Handlers return `Result<_, ApiError>`; [`Json`] is axum's JSON extractor with
//! its rejections turned into an [`ApiError`] naming the field, so every error of
//! the listener has the same shape.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the `error` field.
    pub message: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// More fields for the body, beside `error` (a 409 says the entry's state,
    /// who and when).
    pub detail: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            detail: None,
        }
    }

    /// The error with more fields in its body (`detail`'s keys; `error` is
    /// always the message).
    pub fn with_detail(mut self, detail: serde_json::Map<String, serde_json::Value>) -> ApiError {
        self.detail = Some(detail);
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 naming a request header: `header `IP`: …`.
    pub fn bad_header(name: &str, why: impl std::fmt::Display) -> ApiError {
        ApiError::bad_request(format!("header `{name}`: {why}"))
    }

    /// 401: credentials are missing or wrong (the answer carries
    /// `WWW-Authenticate`).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the user's role may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the request conflicts with the state it acts on.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 413: the body is over `limit` bytes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 429: wait `retry_after` before trying again.
    pub fn too_many(message: impl Into<String>, retry_after: std::time::Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.as_secs_f64().ceil() as u64),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 503: the service cannot do this now; try again later.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// 500: something that should not fail did (logged by the caller).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = self.detail.as_ref().map(|d| {
            let mut d = d.clone();
            d.remove("error");
            d
        });
        let body = serde_json::to_string(&Body {
            error: &self.message,
            detail: detail.as_ref(),
        })
        .unwrap_or_else(|_| "{\"error\":\"unprintable error\"}".into());
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"chaff\", Basic realm=\"chaff\""),
            );
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.max(1).to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// axum's JSON extractor, its rejections answered as [`ApiError`]s: 400 naming
/// the field for malformed or mistyped JSON, 415 without a JSON content type, 413
/// over the body limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection as R;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(R::JsonDataError(e)) => Err(ApiError::bad_request(format!(
                "JSON: {}",
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
            ))),
            Err(R::JsonSyntaxError(e)) => Err(ApiError::bad_request(format!(
                "malformed JSON: {}",
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
            ))),
            Err(R::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected `Content-Type: application/json`",
            )),
            Err(e) => Err(ApiError::new(e.status(), e.body_text())),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_json_with_the_right_headers() {
        let r = ApiError::unauthorized("no credentials").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let body = axum::body::to_bytes(r.into_body(), 1 << 10).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"no credentials"}"#);
        let r =
            ApiError::too_many("slow down", std::time::Duration::from_millis(1500)).into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let e = ApiError::bad_header("IP", "not an address");
        assert_eq!(e.message, "header `IP`: not an address");
        let mut more = serde_json::Map::new();
        more.insert("by".into(), "http:ann".into());
        more.insert("error".into(), "not this one".into());
        let r = ApiError::conflict("taken")
            .with_detail(more)
            .into_response();
        let body = axum::body::to_bytes(r.into_body(), 1 << 10).await.unwrap();
        assert_eq!(&body[..], br#"{"error":"taken","by":"http:ann"}"#);
    }

    #[tokio::test]
    async fn json_rejections_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Want {
            id: u64,
        }
        let req = |body: &'static str, ct: Option<&str>| {
            let mut b = Request::builder().method("POST").uri("/");
            if let Some(ct) = ct {
                b = b.header(header::CONTENT_TYPE, ct);
            }
            b.body(axum::body::Body::from(body)).unwrap()
        };
        let e = Json::<Want>::from_request(req(r#"{"id":"x"}"#, Some("application/json")), &())
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("id"), "{e}");
        let e = Json::<Want>::from_request(req("{", Some("application/json")), &())
            .await
            .unwrap_err();
        assert!(e.message.starts_with("malformed JSON"), "{e}");
        let e = Json::<Want>::from_request(req("{}", None), &())
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
