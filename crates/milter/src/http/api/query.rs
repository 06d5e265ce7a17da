//! Query strings of the admin API (`?since=7d&rcpt=boss%40example.org`), read
//! so that every error is a 400 naming its parameter: an unknown parameter, one
//! given twice, a number that is not one, a time in no known form
//! ([`crate::time`]), a limit out of range, text too long or with control
//! characters.

use crate::http::error::ApiError;
use std::str::FromStr;

/// Longest text parameter accepted, in characters (an address is at most 320
/// bytes; a subject search longer than a stored subject finds nothing).
pub const MAX_TEXT_CHARS: usize = 320;

/// A parsed query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Reads `raw` (without the `?`), accepting only the parameters in `known`.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !known.contains(&k.as_ref()) {
                let list = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(ApiError::bad_request(format!(
                    "query: unknown parameter `{}` (known: {list})",
                    k.chars().take(64).collect::<String>()
                )));
            }
            if pairs.iter().any(|(p, _)| *p == k) {
                return Err(ApiError::bad_request(format!(
                    "`{k}`: given more than once"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Query { pairs })
    }

    /// The value of `name`, as given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` as text: trimmed, not empty, at most [`MAX_TEXT_CHARS`]
    /// characters, no control characters.
    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let v = v.trim();
        if v.is_empty() {
            return Err(ApiError::bad_request(format!("`{name}`: empty")));
        }
        if v.chars().count() > MAX_TEXT_CHARS || v.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "`{name}`: at most {MAX_TEXT_CHARS} characters without control characters"
            )));
        }
        Ok(Some(v.to_string()))
    }

    /// `name` parsed as a `T`.
    pub fn parsed<T: FromStr>(&self, name: &str, what: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("`{name}`: `{v}` is not {what}")))
            })
            .transpose()
    }

    /// `name` as a finite number.
    pub fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.parsed::<f64>(name, "a number")? {
            Some(n) if !n.is_finite() => Err(ApiError::bad_request(format!(
                "`{name}`: must be a finite number"
            ))),
            n => Ok(n),
        }
    }

    /// `limit`: `default` when absent, else 1 to `max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.parsed::<usize>("limit", "a whole number")? {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(format!(
                "`limit`: {n} is out of range (1 to {max})"
            ))),
        }
    }

    /// `name` as a point in time (seconds since the epoch), in any form
    /// [`crate::time::parse_point`] reads, durations counted back from `now`.
    pub fn time(&self, name: &str, now: u64) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                crate::time::parse_point(v, now)
                    .map_err(|e| ApiError::bad_request(format!("`{name}`: {e}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_parameter() {
        let q = Query::parse(
            Some("limit=5&rcpt=a%40b.example&since=7d"),
            &["limit", "rcpt", "since"],
        )
        .unwrap();
        assert_eq!(q.limit(50, 200).unwrap(), 5);
        assert_eq!(q.text("rcpt").unwrap().as_deref(), Some("a@b.example"));
        assert_eq!(
            q.time("since", 1_000_000).unwrap(),
            Some(1_000_000 - 7 * 86_400)
        );
        assert_eq!(q.text("absent").unwrap(), None);
        let e = Query::parse(Some("limt=5"), &["limit"]).unwrap_err();
        assert!(e.message.contains("`limt`"), "{e}");
        let e = Query::parse(Some("limit=5&limit=6"), &["limit"]).unwrap_err();
        assert!(e.message.starts_with("`limit`"), "{e}");
        for (q, field) in [
            ("limit=0", "`limit`"),
            ("limit=201", "`limit`"),
            ("limit=x", "`limit`"),
            ("min_score=abc", "`min_score`"),
            ("min_score=NaN", "`min_score`"),
            ("since=tomorrow", "`since`"),
            ("rcpt=", "`rcpt`"),
            ("rcpt=a%0Ab", "`rcpt`"),
        ] {
            let p = Query::parse(Some(q), &["limit", "min_score", "since", "rcpt"]).unwrap();
            let e = p
                .limit(50, 200)
                .err()
                .or_else(|| p.number("min_score").err())
                .or_else(|| p.time("since", 0).err())
                .or_else(|| p.text("rcpt").err())
                .unwrap_or_else(|| panic!("{q} accepted"));
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(field), "{q}: {e}");
        }
        assert_eq!(Query::parse(None, &[]).unwrap().limit(50, 200).unwrap(), 50);
    }
}
