//! The milter's checked view of a configuration: what it needs to answer an MTA,
//! derived once from a checked [`ServiceConfig`] at start and at every reload.

use crate::config::{AccountsConfig, MilterConfig, QuarantineConfig, ServiceConfig, StateConfig};
use crate::http::config::{HttpConfig, UsersConfig};
use crate::site_policy::Policy;
use chaff::Reply;
use std::path::PathBuf;
use std::time::Duration;

/// What the service needs from a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The `[milter]` table.
    pub milter: MilterConfig,
    /// The `[accounts]` table, `db` absolute when the file was read.
    pub accounts: AccountsConfig,
    /// The `[state]` table, `path` absolute when the file was read.
    pub state: StateConfig,
    /// The `[quarantine]` table.
    pub quarantine: QuarantineConfig,
    /// Largest message buffered and scanned, in bytes.
    pub max_message_size: usize,
    /// The reply for rejected mail and locked accounts.
    pub reject_reply: Reply,
    /// The reply for oversize mail.
    pub oversize_reply: Reply,
    /// The `[http]` table, if the file has one.
    pub http: Option<HttpConfig>,
    /// The `[users]` table.
    pub users: UsersConfig,
    /// The `[policy]` table, checked.
    pub policy: Policy,
    /// The `[ratelimit]` table.
    pub ratelimit: crate::config::RateLimitConfig,
    /// The reply to mail over a rate limit (`[ratelimit] reply`).
    pub ratelimit_reply: Reply,
}

impl Settings {
    /// The settings of a configuration, which must have passed
    /// [`ServiceConfig::check`] (as [`ServiceConfig::load`] makes sure); the error
    /// names the field.
    pub fn from_config(config: &ServiceConfig) -> Result<Settings, (&'static str, String)> {
        config.check()?;
        Ok(Settings {
            milter: config.milter.clone(),
            accounts: config.accounts.clone(),
            state: config.state.clone(),
            quarantine: config.quarantine.clone(),
            max_message_size: config.engine.max_message_size,
            reject_reply: config.engine.reject_reply.clone(),
            oversize_reply: config.engine.oversize_reply.clone(),
            http: config.http.clone(),
            users: config.users.clone(),
            policy: config.policy.checked(config.accounts.realm.as_deref())?,
            ratelimit: config.ratelimit.clone(),
            ratelimit_reply: Reply::parse(&config.ratelimit.reply)
                .map_err(|e| ("ratelimit.reply", e.to_string()))?,
        })
    }

    /// The release key file: `[quarantine] release_key`, or `release.key`
    /// beside the state store (`[state] path`).
    pub fn release_key(&self) -> PathBuf {
        self.quarantine
            .release_key
            .clone()
            .unwrap_or_else(|| self.state.path.with_file_name("release.key"))
    }

    /// The scan time limit.
    pub fn scan_timeout(&self) -> Duration {
        Duration::from_millis(self.milter.scan_timeout_ms)
    }

    /// The longest quiet time between packets of a negotiated connection.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.milter.read_timeout_secs)
    }

    /// The time from accept to the end of option negotiation.
    pub fn negotiate_timeout(&self) -> Duration {
        Duration::from_secs(self.milter.negotiate_timeout_secs)
    }

    /// The time for a packet from its first byte.
    pub fn packet_timeout(&self) -> Duration {
        Duration::from_secs(self.milter.packet_timeout_secs)
    }

    /// The time for a message from its first command to its end.
    pub fn message_timeout(&self) -> Duration {
        Duration::from_secs(self.milter.message_timeout_secs)
    }

    /// The wait to send an answer.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.milter.write_timeout_secs)
    }
}

impl Default for Settings {
    fn default() -> Self {
        let config = ServiceConfig::default();
        Settings {
            milter: config.milter,
            accounts: config.accounts,
            state: config.state,
            quarantine: config.quarantine,
            max_message_size: config.engine.max_message_size,
            reject_reply: config.engine.reject_reply,
            http: config.http,
            users: config.users,
            policy: Policy::default(),
            // The default reply parses (a unit test says so).
            ratelimit_reply: Reply::parse(&config.ratelimit.reply)
                .unwrap_or_else(|_| config.engine.oversize_reply.clone()),
            oversize_reply: config.engine.oversize_reply,
            ratelimit: config.ratelimit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaff::config::ConfigFile;
    use std::path::Path;

    fn load(text: &str) -> Result<ServiceConfig, chaff::ConfigError> {
        ServiceConfig::from_file(&ConfigFile::from_toml(
            text,
            Path::new("/etc/chaff/chaff.toml"),
        )?)
    }

    #[test]
    fn defaults_check_out() {
        let s = Settings::default();
        assert_eq!(s.reject_reply, "557 5.7.1 forbid to send spam mail");
        assert_eq!(
            s.oversize_reply,
            "552 5.3.4 Message size exceeds fixed limit"
        );
        assert_eq!(Settings::from_config(&ServiceConfig::default()), Ok(s));
    }

    #[test]
    fn bad_replies_and_unknown_tables_are_refused_with_the_field() {
        let e = load("[replies]\nreject = \"250 fine\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("replies.reject"));
        assert_eq!(e.file, Path::new("/etc/chaff/chaff.toml"));
        let e = load("[thresholds]\nreject = 20\n\n[miltr]\nx = 1\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(4), Some("miltr")));
        let e = load("[milter]\nstatus_hits = \"three\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = load("[accounts]\nlock_after = 5\nwindow_secs = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("accounts.window_secs"))
        );
        let e = load("[accounts]\nlock_after = 5\non_store_error = \"ignore\"\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("enforce_known"), "{e}");
    }

    #[test]
    fn a_buffer_cap_below_the_size_limit_is_refused_with_its_line() {
        let text = "[limits]\nmax_message_size = \"10M\"\n\n[milter]\nstatus_hits = 3\n\
                    max_buffered_bytes = \"5M\"\n";
        let e = load(text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("milter.max_buffered_bytes"));
        assert_eq!(e.line, Some(6));
        assert!(
            e.to_string().starts_with(
                "/etc/chaff/chaff.toml:6: field `milter.max_buffered_bytes`: 5242880 bytes is \
                 less than limits.max_message_size (10485760 bytes)"
            ),
            "{e}"
        );
        // With the default cap, the size limit is where the conflict is written.
        let e = load("[limits]\nmax_message_size = \"1G\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("milter.max_buffered_bytes"));
        assert_eq!(e.line, Some(2));
        // Equal is enough; other milter fields are located too.
        assert!(
            load("[limits]\nmax_message_size = \"5M\"\n[milter]\nmax_buffered_bytes = \"5M\"\n")
                .is_ok()
        );
        let e = load("[milter]\n\nmax_connections = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("milter.max_connections"))
        );
    }

    #[test]
    fn relative_db_follows_the_config_file() {
        let c = load("[accounts]\ndb = \"locks.redb\"\n").unwrap();
        assert_eq!(c.accounts.db, Path::new("/etc/chaff/locks.redb"));
        let c =
            load("[state]\npath = \"s/state.redb\"\n[quarantine]\nrelease_key = \"k\"\n").unwrap();
        assert_eq!(c.state.path, Path::new("/etc/chaff/s/state.redb"));
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(s.release_key(), Path::new("/etc/chaff/k"));
        let c = load("[state]\npath = \"s/state.redb\"\n").unwrap();
        let s = Settings::from_config(&c).unwrap();
        assert_eq!(s.release_key(), Path::new("/etc/chaff/s/release.key"));
        assert_eq!(c.quarantine.release_key, None);
    }

    #[test]
    fn quarantine_errors_name_their_line() {
        let e = load("[quarantine]\nmode = \"store\"\nrelease_relay = \"nowhere\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("quarantine.release_relay"))
        );
        let e = load("[state]\n\nhistory = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("state.history"))
        );
        let e = load("[quarantine]\nmax_age = \"3 days\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn the_http_table_is_optional_and_checked_with_its_line() {
        let c = load("").unwrap();
        assert!(c.http.is_none(), "no [http] table: no listener");
        let c = load("[http]\n").unwrap();
        assert_eq!(c.http.unwrap().listen, "127.0.0.1:11333");
        let e = load("[http]\nlisten = \"0.0.0.0:11333\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(2), Some("http.listen")));
        assert!(e.to_string().contains("not a loopback address"), "{e}");
        let e = load("[http]\ntls_cert = \"c.pem\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("http.tls_key"));
        let c = load(
            "[http]\nlisten = \"[::]:11333\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n\
             [users]\nfile = \"users.toml\"\n",
        )
        .unwrap();
        let h = c.http.unwrap();
        assert_eq!(h.tls_cert.as_deref(), Some(Path::new("/etc/chaff/c.pem")));
        assert_eq!(
            c.users.file.as_deref(),
            Some(Path::new("/etc/chaff/users.toml"))
        );
        let e = load("[users]\nfiles = \"x\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}
