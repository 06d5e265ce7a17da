//! The HTTP listener's counters, rendered with the service's other metrics
//! (`--metrics`): answers by status code, connections accepted and refused for
//! want of a slot, and failed authentications. Scans over HTTP are counted with
//! the milter's messages (`chaff_milter_messages_total`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The status codes counted on their own; the others are counted as `other`.
pub const CODES: [u16; 12] = [200, 400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503];

/// The HTTP listener's counters.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    answers: [AtomicU64; CODES.len() + 1],
    connections: AtomicU64,
    refused: AtomicU64,
    auth_failures: AtomicU64,
}

impl HttpMetrics {
    /// Counts an answer with this status.
    pub fn answer(&self, status: u16) {
        let i = CODES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(CODES.len());
        self.answers[i].fetch_add(1, Relaxed);
    }

    /// Counts an accepted connection.
    pub fn connection(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    /// Counts a connection closed at once: every slot taken.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    /// Counts a failed authentication.
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }

    /// Answers counted with this status (`None`: the codes not in [`CODES`]).
    pub fn answers(&self, status: Option<u16>) -> u64 {
        let i = status
            .and_then(|s| CODES.iter().position(|&c| c == s))
            .unwrap_or(CODES.len());
        self.answers[i].load(Relaxed)
    }

    /// Appends the counters in Prometheus' text format.
    pub fn render(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP chaff_http_requests_total HTTP answers, by status code.\n\
             # TYPE chaff_http_requests_total counter"
        );
        for (i, code) in CODES.iter().enumerate() {
            let _ = writeln!(
                s,
                "chaff_http_requests_total{{code=\"{code}\"}} {}",
                self.answers[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "chaff_http_requests_total{{code=\"other\"}} {}",
            self.answers[CODES.len()].load(Relaxed)
        );
        for (name, help, v) in [
            (
                "chaff_http_connections_total",
                "HTTP connections accepted.",
                &self.connections,
            ),
            (
                "chaff_http_connections_refused_total",
                "HTTP connections closed at once: every slot (http.max_connections) taken.",
                &self.refused,
            ),
            (
                "chaff_http_auth_failures_total",
                "Requests whose credentials were wrong.",
                &self.auth_failures,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_code() {
        let m = HttpMetrics::default();
        m.answer(200);
        m.answer(200);
        m.answer(418);
        m.auth_failure();
        assert_eq!(m.answers(Some(200)), 2);
        assert_eq!(m.answers(None), 1);
        let mut s = String::new();
        m.render(&mut s);
        assert!(
            s.contains("chaff_http_requests_total{code=\"200\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("chaff_http_requests_total{code=\"other\"} 1\n"),
            "{s}"
        );
        assert!(s.contains("chaff_http_auth_failures_total 1\n"), "{s}");
    }
}
