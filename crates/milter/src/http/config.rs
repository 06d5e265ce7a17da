//! The `[http]` and `[users]` tables of `chaff.toml`.
//!
//! The HTTP listener runs when the file has an `[http]` table (even an empty one:
//! `listen` then defaults to Rspamd's `127.0.0.1:11333`) or `chaff milter` is
//! given `--http HOST:PORT`; otherwise nothing listens for HTTP, so several
//! services (and the tests that run several at once) never compete for 11333.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The default listen address: Rspamd's normal worker port, on loopback, so
/// existing integrations work unchanged.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:11333";

/// Settings of the HTTP listener (`[http]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to listen: an IP address and port (`127.0.0.1:11333`, `[::1]:11333`).
    /// Anything but a loopback address needs TLS and a users file.
    pub listen: String,
    /// The certificate chain (PEM) for TLS; with `tls_key`. Re-read on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) for TLS; with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Longest time to receive a request's headers, in seconds, counted from the
    /// connection's start or the end of its previous response: a kept-alive
    /// connection quiet for longer is closed. Also bounds the TLS handshake.
    pub header_timeout_secs: u64,
    /// Longest time from a request's headers to its answer, in seconds: reading the
    /// body and handling it (a scan has its own `[milter] scan_timeout_ms` within).
    pub request_timeout_secs: u64,
    /// Longest wait for the client to take an answer's bytes, in seconds.
    pub write_timeout_secs: u64,
    /// Most HTTP connections open at once; a new one beyond is closed at once.
    pub max_connections: usize,
    /// Whether a request without credentials may scan (without its `User:`
    /// header, which only `scan` and `admin` users may apply). True by default, as
    /// in Rspamd, whose MTA integrations send no credentials.
    pub anonymous_scan: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: DEFAULT_LISTEN.into(),
            tls_cert: None,
            tls_key: None,
            header_timeout_secs: 30,
            request_timeout_secs: 60,
            write_timeout_secs: 30,
            max_connections: 256,
            anonymous_scan: true,
        }
    }
}

/// Most HTTP connections a configuration may ask for.
pub const MAX_HTTP_CONNECTIONS: usize = 65_536;

/// Reads an HTTP listen address: an IP address and a port.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("`{s}` is not an IP address and port, such as 127.0.0.1:11333 or [::1]:11333")
    })
}

impl HttpConfig {
    /// Checks the values; on error the offending field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        parse_listen(&self.listen).map_err(|e| ("http.listen", e))?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(("http.tls_key", "is needed with http.tls_cert".into()));
            }
            (None, Some(_)) => {
                return Err(("http.tls_cert", "is needed with http.tls_key".into()));
            }
            _ => {}
        }
        for (field, v) in [
            ("http.header_timeout_secs", self.header_timeout_secs),
            ("http.request_timeout_secs", self.request_timeout_secs),
            ("http.write_timeout_secs", self.write_timeout_secs),
            ("http.max_connections", self.max_connections as u64),
        ] {
            if v == 0 {
                return Err((field, "must be greater than 0".into()));
            }
        }
        if self.max_connections > MAX_HTTP_CONNECTIONS {
            return Err((
                "http.max_connections",
                format!("at most {MAX_HTTP_CONNECTIONS}"),
            ));
        }
        Ok(())
    }

    /// True when TLS is configured.
    pub fn has_tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

/// Who may use the HTTP listener (`[users]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// The users file (see [`crate::users`]); relative to the configuration file's
    /// directory. Without one, requests without credentials may scan and nothing
    /// else is allowed.
    pub file: Option<PathBuf>,
}

/// The rule for where the listener may be reached from: a loopback address, or
/// any address with TLS and users configured. `addr` is the address actually used
/// (the configuration's or `--http`'s).
pub fn check_exposure(
    addr: SocketAddr,
    http: &HttpConfig,
    users: &UsersConfig,
) -> Result<(), String> {
    if addr.ip().is_loopback() || (http.has_tls() && users.file.is_some()) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !http.has_tls() {
        missing.push("TLS (`tls_cert` and `tls_key` in [http])");
    }
    if users.file.is_none() {
        missing.push("users (`file` in [users])");
    }
    Err(format!(
        "refusing to listen for HTTP on {addr}, which is not a loopback address, without {}: \
         anyone who can reach it could scan and learn; configure them or listen on 127.0.0.1",
        missing.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_listen_on_rspamds_port() {
        let c = HttpConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(parse_listen(&c.listen).unwrap().port(), 11333);
    }

    #[test]
    fn bad_values_name_their_field() {
        let field = |c: HttpConfig| c.check().unwrap_err().0;
        let c = HttpConfig {
            listen: "localhost:11333".into(),
            ..HttpConfig::default()
        };
        assert_eq!(field(c), "http.listen");
        let c = HttpConfig {
            tls_cert: Some("c.pem".into()),
            ..HttpConfig::default()
        };
        assert_eq!(field(c), "http.tls_key");
        let c = HttpConfig {
            tls_key: Some("k.pem".into()),
            ..HttpConfig::default()
        };
        assert_eq!(field(c), "http.tls_cert");
        let c = HttpConfig {
            request_timeout_secs: 0,
            ..HttpConfig::default()
        };
        assert_eq!(field(c), "http.request_timeout_secs");
        let c = HttpConfig {
            max_connections: MAX_HTTP_CONNECTIONS + 1,
            ..HttpConfig::default()
        };
        assert_eq!(field(c), "http.max_connections");
        assert!(toml::from_str::<HttpConfig>("listn = \"x\"").is_err());
    }

    #[test]
    fn only_loopback_is_allowed_without_tls_and_users() {
        let plain = HttpConfig::default();
        let no_users = UsersConfig::default();
        let users = UsersConfig {
            file: Some("users.toml".into()),
        };
        let tls = HttpConfig {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..HttpConfig::default()
        };
        let lo: SocketAddr = "127.0.0.1:11333".parse().unwrap();
        let lo6: SocketAddr = "[::1]:11333".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:11333".parse().unwrap();
        assert!(check_exposure(lo, &plain, &no_users).is_ok());
        assert!(check_exposure(lo6, &plain, &no_users).is_ok());
        let e = check_exposure(any, &plain, &no_users).unwrap_err();
        assert!(e.contains("TLS") && e.contains("users"), "{e}");
        let e = check_exposure(any, &tls, &no_users).unwrap_err();
        assert!(!e.contains("TLS (") && e.contains("users"), "{e}");
        assert!(
            check_exposure(any, &plain, &users)
                .unwrap_err()
                .contains("TLS")
        );
        assert!(check_exposure(any, &tls, &users).is_ok());
    }
}
