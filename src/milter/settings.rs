//! The milter's checked view of a configuration.
//!
//! The engine's `Config` is read by the engine's loader; the service needs a few
//! more guarantees before it answers an MTA with it (replies Postfix will accept,
//! valid header names, sane timeouts, the lock store's path resolved against the
//! configuration file). [`Settings::from_config`] makes those checks once, at start
//! and at every reload, so a bad value is refused before it can serve.

use super::config::{AccountsConfig, MilterConfig};
use super::protocol;
use crate::Config;
use crate::config::ConfigError;
use std::path::PathBuf;
use std::time::Duration;

/// What the service needs from a configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The `[milter]` table.
    pub milter: MilterConfig,
    /// The `[accounts]` table, with `db` made absolute.
    pub accounts: AccountsConfig,
    /// Largest message buffered and scanned, in bytes.
    pub max_message_size: usize,
    /// The reply for rejected mail and locked accounts, checked (not yet escaped).
    pub reject_reply: String,
    /// The reply for oversize mail, checked (not yet escaped).
    pub oversize_reply: String,
}

impl Settings {
    /// Checks `config` for the service.
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        let file = config
            .source
            .clone()
            .unwrap_or_else(|| PathBuf::from("<built-in defaults>"));
        let err = |field: &str, message: String| ConfigError {
            file: file.clone(),
            line: None,
            field: Some(field.to_string()),
            message,
        };
        config.milter.check().map_err(|(f, m)| err(f, m))?;
        config.accounts.check().map_err(|(f, m)| err(f, m))?;
        let reject_reply =
            protocol::check_reply(&config.reject_reply).map_err(|m| err("replies.reject", m))?;
        let oversize_reply = protocol::check_reply(&config.oversize_reply)
            .map_err(|m| err("replies.oversize", m))?;
        let mut accounts = config.accounts.clone();
        if accounts.db.is_relative()
            && let Some(dir) = config.source.as_deref().and_then(|p| p.parent())
        {
            accounts.db = dir.join(&accounts.db);
        }
        Ok(Settings {
            milter: config.milter.clone(),
            accounts,
            max_message_size: config.max_message_size,
            reject_reply,
            oversize_reply,
        })
    }

    /// The scan time limit.
    pub fn scan_timeout(&self) -> Duration {
        Duration::from_millis(self.milter.scan_timeout_ms)
    }

    /// The wait for the MTA's next packet.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.milter.read_timeout_secs)
    }

    /// The wait to send an answer.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.milter.write_timeout_secs)
    }
}

impl Default for Settings {
    fn default() -> Self {
        // The built-in configuration is valid by construction; the fallback below
        // only keeps this infallible should a default ever change.
        Settings::from_config(&Config::default()).unwrap_or_else(|_| Settings {
            milter: MilterConfig::default(),
            accounts: AccountsConfig::default(),
            max_message_size: 25 * 1024 * 1024,
            reject_reply: "557 5.7.1 forbid to send spam mail".into(),
            oversize_reply: "552 5.3.4 Message size exceeds fixed limit".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn defaults_check_out() {
        let s = Settings::default();
        assert_eq!(s.reject_reply, "557 5.7.1 forbid to send spam mail");
        assert_eq!(
            s.oversize_reply,
            "552 5.3.4 Message size exceeds fixed limit"
        );
    }

    #[test]
    fn bad_replies_are_refused_with_the_field() {
        let cfg = Config {
            reject_reply: "250 fine".into(),
            source: Some("/etc/chaff/chaff.toml".into()),
            ..Config::default()
        };
        let e = Settings::from_config(&cfg).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("replies.reject"));
        assert_eq!(e.file, Path::new("/etc/chaff/chaff.toml"));
    }

    #[test]
    fn relative_db_follows_the_config_file() {
        let mut cfg = Config {
            source: Some("/etc/chaff/chaff.toml".into()),
            ..Config::default()
        };
        cfg.accounts.db = "locks.redb".into();
        let s = Settings::from_config(&cfg).unwrap();
        assert_eq!(s.accounts.db, Path::new("/etc/chaff/locks.redb"));
    }
}
