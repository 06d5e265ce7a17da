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
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
            line: config
                .source
                .as_deref()
                .and_then(|p| line_of_field(p, field)),
            field: Some(field.to_string()),
            message,
        };
        config.milter.check().map_err(|(f, m)| err(f, m))?;
        config.accounts.check().map_err(|(f, m)| err(f, m))?;
        if config.milter.max_buffered_bytes < config.max_message_size {
            let mut e = err(
                "milter.max_buffered_bytes",
                format!(
                    "{} bytes is less than limits.max_message_size ({} bytes): a message \
                     of the largest size could never be buffered; raise it or lower the \
                     size limit",
                    config.milter.max_buffered_bytes, config.max_message_size
                ),
            );
            // Not in the file (the default is in force): point at the size limit.
            if e.line.is_none() {
                e.line = config
                    .source
                    .as_deref()
                    .and_then(|p| line_of_field(p, "limits.max_message_size"));
            }
            return Err(e);
        }
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

/// The line of `table.key` in the configuration file at `path`, to name it in an
/// error about a value checked after loading. Reads the file again: only on that
/// error path, and `None` when it is gone or the key is not in it.
fn line_of_field(path: &Path, field: &str) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Tables {
        #[serde(default)]
        milter: BTreeMap<String, toml::Spanned<toml::Value>>,
        #[serde(default)]
        accounts: BTreeMap<String, toml::Spanned<toml::Value>>,
        #[serde(default)]
        limits: BTreeMap<String, toml::Spanned<toml::Value>>,
    }
    let (table, key) = field.split_once('.')?;
    let text = std::fs::read_to_string(path).ok()?;
    let tables: Tables = toml::from_str(&text).ok()?;
    let table = match table {
        "milter" => &tables.milter,
        "accounts" => &tables.accounts,
        "limits" => &tables.limits,
        _ => return None,
    };
    let value = table.get(key)?;
    Some(crate::config::line_of(&text, value.span().start))
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
    fn a_buffer_cap_below_the_size_limit_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chaff.toml");
        let text = "[limits]\nmax_message_size = \"10M\"\n\n[milter]\nstatus_hits = 3\n\
                    max_buffered_bytes = \"5M\"\n";
        std::fs::write(&path, text).unwrap();
        let e = Settings::from_config(&Config::load(&path).unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("milter.max_buffered_bytes"));
        assert_eq!(e.line, Some(6));
        assert!(
            e.to_string().starts_with(&format!(
                "{}:6: field `milter.max_buffered_bytes`: 5242880 bytes is less than \
                 limits.max_message_size (10485760 bytes)",
                path.display()
            )),
            "{e}"
        );
        // With the default cap, the size limit is where the conflict is written.
        std::fs::write(&path, "[limits]\nmax_message_size = \"1G\"\n").unwrap();
        let e = Settings::from_config(&Config::load(&path).unwrap()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("milter.max_buffered_bytes"));
        assert_eq!(e.line, Some(2));
        // Equal is enough; other milter fields are located too.
        std::fs::write(
            &path,
            "[limits]\nmax_message_size = \"5M\"\n[milter]\nmax_buffered_bytes = \"5M\"\n",
        )
        .unwrap();
        assert!(Settings::from_config(&Config::load(&path).unwrap()).is_ok());
        std::fs::write(&path, "[milter]\n\nmax_connections = 0\n").unwrap();
        let e = Settings::from_config(&Config::load(&path).unwrap()).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("milter.max_connections"))
        );
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
