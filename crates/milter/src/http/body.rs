//! Reading a message from a request body: never more than the size limit
//! (`[limits] max_message_size`; 413 beyond it, at once when `Content-Length` says
//! so), and drawn from the same buffer budget as the milter's connections
//! (`[milter] max_buffered_bytes`), so HTTP and milter mail together never buffer
//! more than it. The bytes go back to the budget when the scan job holding the
//! [`Reservation`] is dropped.

use super::error::ApiError;
use crate::budget::{Budget, Reservation};
use axum::body::Body;
use axum::http::HeaderMap;
use http_body_util::BodyExt;
use std::sync::Arc;

/// Why a message body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the size limit: 413.
    TooLarge(usize),
    /// The buffer budget is spent: the message gets the busy answer.
    Busy,
    /// The client sent something that is not a body (a broken chunked encoding,
    /// a connection closed early).
    Broken(String),
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge(limit) => ApiError::too_large(limit),
            BodyError::Busy => ApiError::unavailable(
                "too much mail in flight (`[milter] max_buffered_bytes`); try again later",
            ),
            BodyError::Broken(why) => ApiError::bad_request(format!("reading the body: {why}")),
        }
    }
}

/// The `Content-Length` a request declares, if any (a malformed one is a 400).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .map(|v| {
            std::str::from_utf8(v.as_bytes())
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_header("Content-Length", "not a number"))
        })
        .transpose()
}

/// True when `e` (or what it wraps) is a body-length limit error.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Reads the whole body, at most `limit` bytes, drawing them from `budget`.
pub(crate) async fn read_message(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    budget: &Arc<Budget>,
) -> Result<(Vec<u8>, Reservation), BodyError> {
    let mut reservation = budget.reservation();
    let mut raw = Vec::new();
    if let Some(n) = declared {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > limit {
            return Err(BodyError::TooLarge(limit));
        }
        if !reservation.grow(n) {
            return Err(BodyError::Busy);
        }
        raw.reserve_exact(n);
    }
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let inner = e.into_inner();
            if is_length_limit(inner.as_ref()) {
                BodyError::TooLarge(limit)
            } else {
                BodyError::Broken(inner.to_string())
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = raw.len() + data.len();
        if total > limit {
            return Err(BodyError::TooLarge(limit));
        }
        if total > reservation.held() && !reservation.grow(total - reservation.held()) {
            return Err(BodyError::Busy);
        }
        raw.extend_from_slice(&data);
    }
    Ok((raw, reservation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes_stream::chunks;

    mod bytes_stream {
        use axum::body::Body;

        /// A body of several chunks and no length, like a chunked request.
        pub fn chunks(parts: &[&'static [u8]]) -> Body {
            let frames: Vec<Result<hyper::body::Frame<axum::body::Bytes>, std::io::Error>> = parts
                .iter()
                .map(|p| Ok(hyper::body::Frame::data(axum::body::Bytes::from_static(p))))
                .collect();
            Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
                frames,
            )))
        }
    }

    #[tokio::test]
    async fn bodies_are_read_within_the_limit_and_the_budget() {
        let budget = Budget::new(100);
        let (raw, r) = read_message(Body::from("hello"), Some(5), 10, &budget)
            .await
            .unwrap();
        assert_eq!((&raw[..], r.held(), budget.used()), (&b"hello"[..], 5, 5));
        drop(r);
        assert_eq!(budget.used(), 0);
        // Declared too large: refused unread.
        assert!(matches!(
            read_message(Body::from("x"), Some(11), 10, &budget).await,
            Err(BodyError::TooLarge(10))
        ));
        // Chunked, growing past the limit.
        assert!(matches!(
            read_message(chunks(&[b"123456", b"789012"]), None, 10, &budget).await,
            Err(BodyError::TooLarge(10))
        ));
        let (raw, _r) = read_message(chunks(&[b"12345", b"67890"]), None, 10, &budget)
            .await
            .unwrap();
        assert_eq!(raw, b"1234567890");
        // The budget is shared: a second message that does not fit is busy.
        let small = Budget::new(8);
        let (_, held) = read_message(Body::from("12345"), Some(5), 10, &small)
            .await
            .unwrap();
        assert!(matches!(
            read_message(Body::from("12345"), Some(5), 10, &small).await,
            Err(BodyError::Busy)
        ));
        assert!(matches!(
            read_message(chunks(&[b"12", b"345"]), None, 10, &small).await,
            Err(BodyError::Busy)
        ));
        drop(held);
        assert_eq!(small.used(), 0);
    }
}
