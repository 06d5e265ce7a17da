//! The `[milter]`, `[accounts]`, `[state]` and `[quarantine]` tables of
//! `chaff.toml`, and the whole file as the service reads it ([`ServiceConfig`],
//! with `[http]` and `[users]` from [`crate::http::config`]).
//!
//! They live beside the service they configure and are read from the same file as
//! the engine's tables ([`ServiceConfig`]). Values are checked when the service
//! starts or reloads, so a bad value is refused with the file, line and field
//! named, and a reload keeps the old configuration.

use crate::http::config::{HttpConfig, UsersConfig, check_exposure, parse_listen};
use crate::site_policy::PolicyConfig;
use chaff::config::{ConfigFile, TABLES as ENGINE_TABLES};
use chaff::{Config, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::state::ratelimit::RateLimitConfig;

/// The top-level tables of `chaff.toml` this crate reads.
pub const TABLES: &[&str] = &[
    "milter",
    "accounts",
    "state",
    "quarantine",
    "http",
    "users",
    "policy",
    "ratelimit",
];

/// The whole configuration file as the service reads it: the engine's tables and
/// the service's own, each read from the same [`ConfigFile`] and refused with file,
/// line and field. A table no crate knows is refused too.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceConfig {
    /// The engine's tables.
    pub engine: Config,
    /// `[milter]`.
    pub milter: MilterConfig,
    /// `[accounts]`, with `db` relative to the file's directory made absolute.
    pub accounts: AccountsConfig,
    /// `[state]`, with `path` made absolute.
    pub state: StateConfig,
    /// `[quarantine]`, with `release_key` made absolute.
    pub quarantine: QuarantineConfig,
    /// `[http]`, if the file has the table (the HTTP listener runs then), with
    /// relative TLS paths made absolute.
    pub http: Option<HttpConfig>,
    /// `[users]`, with a relative `file` made absolute.
    pub users: UsersConfig,
    /// `[policy]`: the sender/login match and stored policies' refresh.
    pub policy: PolicyConfig,
    /// `[ratelimit]`.
    pub ratelimit: RateLimitConfig,
}

impl ServiceConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
        ServiceConfig::from_file(&ConfigFile::load(path)?)
    }

    /// Reads and checks every table of a configuration file.
    pub fn from_file(file: &ConfigFile) -> Result<ServiceConfig, ConfigError> {
        file.check_tables(&[ENGINE_TABLES, TABLES])?;
        let engine = Config::from_file(file)?;
        #[derive(Deserialize)]
        struct Tables {
            #[serde(default)]
            milter: MilterConfig,
            #[serde(default)]
            accounts: AccountsConfig,
            #[serde(default)]
            state: StateConfig,
            #[serde(default)]
            quarantine: QuarantineConfig,
            http: Option<HttpConfig>,
            #[serde(default)]
            users: UsersConfig,
            #[serde(default)]
            policy: PolicyConfig,
            #[serde(default)]
            ratelimit: RateLimitConfig,
        }
        let t: Tables = file.read()?;
        let mut config = ServiceConfig {
            engine,
            milter: t.milter,
            accounts: t.accounts,
            state: t.state,
            quarantine: t.quarantine,
            http: t.http,
            users: t.users,
            policy: t.policy,
            ratelimit: t.ratelimit,
        };
        config.accounts.db = file.resolve(config.accounts.db);
        config.state.path = file.resolve(config.state.path);
        config.quarantine.release_key = config
            .quarantine
            .release_key
            .take()
            .map(|p| file.resolve(p));
        if let Some(h) = &mut config.http {
            h.tls_cert = h.tls_cert.take().map(|p| file.resolve(p));
            h.tls_key = h.tls_key.take().map(|p| file.resolve(p));
        }
        config.users.file = config.users.file.take().map(|p| file.resolve(p));
        if let Err((field, message)) = config.check() {
            let mut e = file.error(field, message);
            if field == "milter.max_buffered_bytes" && !file.has(field) {
                // The default cap is in force: the size limit is what was written.
                e.line = file.error("limits.max_message_size", "").line;
            }
            return Err(e);
        }
        Ok(config)
    }

    /// Checks the values together; on error the offending field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.milter.check()?;
        self.accounts.check()?;
        self.state.check()?;
        self.quarantine.check()?;
        self.policy.checked(self.accounts.realm.as_deref())?;
        self.ratelimit.check()?;
        if let Some(http) = &self.http {
            http.check()?;
            let addr = parse_listen(&http.listen).map_err(|e| ("http.listen", e))?;
            check_exposure(addr, http, &self.users).map_err(|e| ("http.listen", e))?;
        }
        if self.milter.max_buffered_bytes < self.engine.max_message_size {
            return Err((
                "milter.max_buffered_bytes",
                format!(
                    "{} bytes is less than limits.max_message_size ({} bytes): a message \
                     of the largest size could never be buffered; raise it or lower the \
                     size limit",
                    self.milter.max_buffered_bytes, self.engine.max_message_size
                ),
            ));
        }
        Ok(())
    }
}

/// What the milter answers when chaff cannot decide (the scan failed or timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Let the message through and log the error (the default: a filter fault
    /// should not stop mail).
    #[default]
    Accept,
    /// Ask the client to retry later (4xx).
    Tempfail,
    /// Refuse the message with the MTA's default 5xx.
    Reject,
}

impl Fallback {
    /// The lowercase name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Accept => "accept",
            Fallback::Tempfail => "tempfail",
            Fallback::Reject => "reject",
        }
    }
}

/// The default `max_buffered_bytes`: 128 MiB. The milter issue asks for at most
/// 300 MB resident with 64 connections; the service's own peak under load was
/// 114 MiB, which leaves this much for message buffers and the scans' working memory.
/// That is five messages at the default 25 MiB size limit, or thousands of ordinary
/// ones.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 128 * 1024 * 1024;

/// Most network or scan threads a configuration may ask for.
pub const MAX_THREADS: usize = 1024;

/// Default `[milter] inline_scan_max_bytes`: 64 KiB, most mail. Such a message
/// scans in about a millisecond on one core, the longest that other connections on
/// the same network thread then wait.
pub const DEFAULT_INLINE_SCAN_MAX_BYTES: usize = 64 * 1024;

/// Settings of the milter service (`[milter]` in `chaff.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MilterConfig {
    /// Where to listen when `--listen` is not given: `inet:HOST:PORT` or `unix:PATH`.
    pub listen: Option<String>,
    /// Where to serve Prometheus metrics when `--metrics` is not given: `HOST:PORT`.
    pub metrics: Option<String>,
    /// Name of the header carrying the score on delivered mail.
    pub score_header: String,
    /// Name of the header carrying the status and top hits on delivered mail.
    pub status_header: String,
    /// How many hits the status header lists, strongest first.
    pub status_hits: usize,
    /// With a trained model: how many of the classifier's tokens the status header
    /// lists each way (spam-wards, then ham-wards), strongest first. The engine
    /// names at most `[classifier] explain_tokens` each way.
    pub status_tokens: usize,
    /// The answer when chaff cannot decide: `accept` (default), `tempfail`, `reject`.
    pub fallback: Fallback,
    /// Longest a scan may take before the fallback answer is given, in milliseconds.
    pub scan_timeout_ms: u64,
    /// Longest quiet time between two packets of a negotiated connection, in
    /// seconds. Postfix keeps a milter connection open for a whole SMTP session, so
    /// this is above its `smtpd_timeout`.
    pub read_timeout_secs: u64,
    /// Longest time from accepting a connection to the end of its option
    /// negotiation, in seconds; a connection that has not negotiated by then is
    /// closed.
    pub negotiate_timeout_secs: u64,
    /// Longest time for the rest of a packet once its first byte has arrived, in
    /// seconds; a packet trickled in more slowly closes the connection.
    pub packet_timeout_secs: u64,
    /// Longest time from the first command of a message to its end, in seconds.
    pub message_timeout_secs: u64,
    /// With every connection slot (`max_connections`) taken, a negotiated
    /// connection quiet between messages for longer than this (seconds) may be
    /// closed to make room for a new one (see `server`'s slot rule).
    pub evict_idle_after_secs: u64,
    /// Longest wait to send an answer, in seconds.
    pub write_timeout_secs: u64,
    /// On SIGTERM, longest wait for in-flight messages, in seconds.
    pub drain_timeout_secs: u64,
    /// Largest milter packet accepted, in bytes; a larger one drops the connection.
    pub max_packet_size: usize,
    /// Most MTA connections served at once (connection slots). A new connection is
    /// always accepted: when every slot is taken, one is freed by the slot rule
    /// (see `server`), or else the new connection is closed at once.
    pub max_connections: usize,
    /// Most message bytes buffered at once across all connections (bytes, or a
    /// number with K, M or G, as `[limits] max_message_size`; at least that). A
    /// message that would go over it is answered `451 4.3.2` (TEMPFAIL): the MTA
    /// keeps it and tries again later. See [`super::budget`].
    #[serde(deserialize_with = "chaff::config::deserialize_size")]
    pub max_buffered_bytes: usize,
    /// Threads that serve MTA connections (0: one per CPU). Connections are shared
    /// among them as they are accepted.
    pub network_threads: usize,
    /// Messages up to this size (bytes, or a number with K, M or G) from senders
    /// who did not authenticate are scanned on the network thread that received
    /// them, which saves two thread wake-ups per message; larger ones, and every
    /// message whose account the lock store must see, go to the scan threads, under
    /// `scan_timeout_ms`. 0 sends every message to the scan threads.
    #[serde(deserialize_with = "chaff::config::deserialize_size_or_zero")]
    pub inline_scan_max_bytes: usize,
    /// Threads that scan messages (0: one per CPU).
    pub scan_threads: usize,
    /// Permissions of a `unix:` socket (TOML accepts octal: `0o660`).
    pub socket_mode: u32,
    /// Answer every body chunk, so an oversize message is refused (552) at the chunk
    /// that crosses `max_message_size` instead of at its end. Either way nothing past
    /// the limit is buffered; off, a message costs one round trip instead of one per
    /// 64 KB chunk.
    pub refuse_oversize_early: bool,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: None,
            metrics: None,
            score_header: "X-Spam-Score".into(),
            status_header: "X-Spam-Status".into(),
            status_hits: 5,
            status_tokens: 3,
            fallback: Fallback::Accept,
            scan_timeout_ms: 10_000,
            read_timeout_secs: 360,
            negotiate_timeout_secs: 5,
            packet_timeout_secs: 10,
            message_timeout_secs: 600,
            evict_idle_after_secs: 60,
            write_timeout_secs: 30,
            drain_timeout_secs: 30,
            max_packet_size: super::protocol::DEFAULT_MAX_PACKET,
            max_connections: 1024,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            network_threads: 0,
            inline_scan_max_bytes: DEFAULT_INLINE_SCAN_MAX_BYTES,
            scan_threads: 0,
            socket_mode: 0o660,
            refuse_oversize_early: false,
        }
    }
}

/// True for a usable header field name: printable ASCII without `:` or space.
fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b':')
}

impl MilterConfig {
    /// How many network threads to run (`network_threads`, 0 meaning one per CPU).
    pub fn network_thread_count(&self) -> usize {
        chaff::config::threads(self.network_threads)
    }

    /// How many scan threads to run (`scan_threads`, 0 meaning one per CPU).
    pub fn scan_thread_count(&self) -> usize {
        chaff::config::threads(self.scan_threads)
    }

    /// Checks the values; on error returns the offending field (`milter.x`) and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !is_header_name(&self.score_header) {
            return Err((
                "milter.score_header",
                format!("`{}` is not a header name", self.score_header),
            ));
        }
        if !is_header_name(&self.status_header) {
            return Err((
                "milter.status_header",
                format!("`{}` is not a header name", self.status_header),
            ));
        }
        if self.score_header.eq_ignore_ascii_case(&self.status_header) {
            return Err((
                "milter.status_header",
                "must differ from milter.score_header".into(),
            ));
        }
        let release = crate::release::token::HEADER;
        for (field, name) in [
            ("milter.score_header", &self.score_header),
            ("milter.status_header", &self.status_header),
        ] {
            if name.eq_ignore_ascii_case(release) {
                return Err((field, format!("`{release}` is the release token's header")));
            }
        }
        let positive = [
            ("milter.scan_timeout_ms", self.scan_timeout_ms),
            ("milter.read_timeout_secs", self.read_timeout_secs),
            ("milter.negotiate_timeout_secs", self.negotiate_timeout_secs),
            ("milter.packet_timeout_secs", self.packet_timeout_secs),
            ("milter.message_timeout_secs", self.message_timeout_secs),
            ("milter.evict_idle_after_secs", self.evict_idle_after_secs),
            ("milter.write_timeout_secs", self.write_timeout_secs),
            ("milter.max_connections", self.max_connections as u64),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err((field, "must be greater than 0".into()));
            }
        }
        for (field, v) in [
            ("milter.network_threads", self.network_threads),
            ("milter.scan_threads", self.scan_threads),
        ] {
            if v > MAX_THREADS {
                return Err((field, format!("at most {MAX_THREADS} (0: one per CPU)")));
            }
        }
        if self.max_packet_size < super::protocol::MIN_MAX_PACKET {
            return Err((
                "milter.max_packet_size",
                format!(
                    "must be at least {} (the MTA's body chunk)",
                    super::protocol::MIN_MAX_PACKET
                ),
            ));
        }
        if self.socket_mode > 0o777 {
            return Err(("milter.socket_mode", "must be at most 0o777".into()));
        }
        Ok(())
    }
}

/// Locking of accounts that send spam (`[accounts]` in `chaff.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// Rejected messages within `window_secs` that lock an account (0: never lock).
    pub lock_after: u32,
    /// The sliding window, in seconds.
    pub window_secs: u64,
    /// The lock store (a redb file). A relative path is taken from the
    /// configuration file's directory.
    pub db: PathBuf,
    /// What the service does while the lock store's file is unusable (a full or
    /// failing disk), until it has reopened it.
    pub on_store_error: OnStoreError,
    /// The site's own mail domain: `USER@REALM` and `USER` are one account. Account
    /// names are compared without case either way (`accounts::normalise_user`).
    /// Takes effect at start.
    pub realm: Option<String>,
}

/// The policy while the lock store is unusable (`[accounts] on_store_error`).
///
/// Either way the locks the store knows (read at start, at every reopen and by
/// every lookup since) stay enforced, and rejects are counted, and accounts
/// locked, in memory, to be written when the store recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Enforce the known locks and scan authenticated mail as usual (the default).
    #[default]
    EnforceKnown,
    /// Also defer all other authenticated (outbound) mail with `451 4.3.0`, since
    /// its rejects cannot be counted durably; unauthenticated mail is scanned as
    /// usual.
    Tempfail,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            lock_after: 5,
            window_secs: 3600,
            db: PathBuf::from("/var/lib/chaff/accounts.redb"),
            on_store_error: OnStoreError::EnforceKnown,
            realm: None,
        }
    }
}

impl AccountsConfig {
    /// Checks the values; on error returns the offending field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.lock_after > 0 && self.window_secs == 0 {
            return Err((
                "accounts.window_secs",
                "must be greater than 0 when lock_after is set".into(),
            ));
        }
        if self.db.as_os_str().is_empty() {
            return Err(("accounts.db", "must name a file".into()));
        }
        if let Some(r) = &self.realm
            && (r.trim().is_empty() || r.contains('@') || r.contains(char::is_whitespace))
        {
            return Err((
                "accounts.realm",
                "must be a domain, such as `example.com`".into(),
            ));
        }
        Ok(())
    }
}

/// Most scans `[state] history` may keep.
pub const MAX_HISTORY: u64 = 10_000_000;

/// The service's own state store (`[state]` in `chaff.toml`): the quarantine,
/// the scan history, the hourly counts, the allow and block entries added by an
/// admin, and the admin action log, in one redb file shared with the `chaff
/// quarantine` and `chaff senders` commands (see `quarantine`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// The store file. A relative path is taken from the configuration file's
    /// directory.
    pub path: PathBuf,
    /// Scans kept in the history (every scanned message, oldest dropped first).
    pub history: u64,
    /// Where account locks, their rejects and the rate counters live:
    /// `embedded` (the account store's redb file and this process's memory) or a
    /// Redis URL (`redis://`, `rediss://`, `redis+cluster://H1:P1,H2:P2`) shared
    /// by every host. Takes effect at start.
    pub backend: String,
    /// What happens while Redis is away: `open` (locks known in memory stay
    /// enforced, limits counted in memory) or `tempfail` (mail that needs the
    /// state is deferred; known locks still refuse).
    pub fail: StateFail,
    /// Longest wait for one Redis call, in milliseconds.
    pub timeout_ms: u64,
}

/// `[state] fail`: the policy while Redis is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateFail {
    /// Fall back to this host's memory (the default).
    #[default]
    Open,
    /// Defer mail that needs the state (4xx).
    Tempfail,
}

impl StateFail {
    /// The name in the configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFail::Open => "open",
            StateFail::Tempfail => "tempfail",
        }
    }

    /// What the policy does, for logs.
    pub fn effect(self) -> &'static str {
        match self {
            StateFail::Open => "fall back to this host's memory",
            StateFail::Tempfail => "defer mail that needs them (known locks still refuse)",
        }
    }
}

/// Longest `[state] timeout_ms`.
pub const MAX_STATE_TIMEOUT_MS: u64 = 10_000;

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: PathBuf::from("/var/lib/chaff/state.redb"),
            history: 10_000,
            backend: "embedded".into(),
            fail: StateFail::Open,
            timeout_ms: 250,
        }
    }
}

impl StateConfig {
    /// Checks the values; on error returns the offending field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.path.as_os_str().is_empty() {
            return Err(("state.path", "must name a file".into()));
        }
        if self.history == 0 || self.history > MAX_HISTORY {
            return Err((
                "state.history",
                format!("must be between 1 and {MAX_HISTORY}"),
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_STATE_TIMEOUT_MS {
            return Err((
                "state.timeout_ms",
                format!("must be between 1 and {MAX_STATE_TIMEOUT_MS}"),
            ));
        }
        if self.backend != "embedded" {
            crate::state::redis::Target::parse(&self.backend).map_err(|e| ("state.backend", e))?;
        }
        Ok(())
    }
}

/// What the MTA is told about a quarantined message (`[quarantine] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineMode {
    /// QUARANTINE: the MTA puts it on its hold queue; chaff keeps a copy too (the
    /// default).
    #[default]
    Hold,
    /// DISCARD: chaff's store keeps the only copy, released by SMTP to
    /// `release_relay`.
    Store,
}

impl QuarantineMode {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineMode::Hold => "hold",
            QuarantineMode::Store => "store",
        }
    }
}

/// The quarantine (`[quarantine]` in `chaff.toml`): what the MTA is told, what is
/// kept and for how long.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineConfig {
    /// What the MTA is told about a quarantined message.
    pub mode: QuarantineMode,
    /// Also keep the messages refused for their content (the reject reply),
    /// so an admin can find and release them.
    pub keep_rejected: bool,
    /// Entries older than this are dropped (`30d`, `12h`).
    #[serde(deserialize_with = "chaff::config::deserialize_duration")]
    pub max_age: Duration,
    /// Most bytes of stored (compressed) messages; the oldest entries are dropped
    /// past it (bytes, or a number with K, M or G).
    #[serde(deserialize_with = "chaff::config::deserialize_size")]
    pub max_bytes: usize,
    /// The MTA's SMTP address (`HOST:PORT`) a released message is sent to in
    /// `store` mode.
    pub release_relay: Option<String>,
    /// The release key file (32 secret bytes, mode 0600): a message released from
    /// quarantine carries a token made with it and is delivered unscanned
    /// ([`crate::release`]). The service creates the file at start when it is
    /// missing. Unset: `release.key` beside the state store
    /// ([`crate::settings::Settings::release_key`]). A relative path is taken from the
    /// configuration file's directory. Takes effect at start.
    pub release_key: Option<PathBuf>,
}

/// Default `[quarantine] max_bytes`: 10 GiB.
pub const DEFAULT_QUARANTINE_MAX_BYTES: usize = 10 << 30;

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            mode: QuarantineMode::Hold,
            keep_rejected: false,
            max_age: Duration::from_secs(30 * 86_400),
            max_bytes: DEFAULT_QUARANTINE_MAX_BYTES,
            release_relay: None,
            release_key: None,
        }
    }
}

/// True for `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 address,
/// and a port from 1 to 65535).
pub fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    };
    port_ok && host_ok
}

impl QuarantineConfig {
    /// Checks the values; on error returns the offending field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(relay) = &self.release_relay
            && !is_host_port(relay)
        {
            return Err((
                "quarantine.release_relay",
                format!("`{relay}` is not HOST:PORT (such as `127.0.0.1:25`)"),
            ));
        }
        if self.release_key.as_ref().is_some_and(|p| {
            p.file_name().is_none() || p.as_os_str().to_string_lossy().ends_with('/')
        }) {
            return Err(("quarantine.release_key", "must name a file".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(MilterConfig::default().check(), Ok(()));
        assert_eq!(AccountsConfig::default().check(), Ok(()));
    }

    #[test]
    fn bad_values_name_their_field() {
        let c = MilterConfig {
            score_header: "X Spam".into(),
            ..MilterConfig::default()
        };
        assert_eq!(c.check().unwrap_err().0, "milter.score_header");
        let c = MilterConfig {
            status_header: "x-chaff-release".into(),
            ..MilterConfig::default()
        };
        assert_eq!(c.check().unwrap_err().0, "milter.status_header");
        let c = MilterConfig {
            max_packet_size: 100,
            ..MilterConfig::default()
        };
        assert_eq!(c.check().unwrap_err().0, "milter.max_packet_size");
        let c = MilterConfig {
            network_threads: MAX_THREADS + 1,
            ..MilterConfig::default()
        };
        assert_eq!(c.check().unwrap_err().0, "milter.network_threads");
        for (field, c) in [
            (
                "milter.negotiate_timeout_secs",
                MilterConfig {
                    negotiate_timeout_secs: 0,
                    ..MilterConfig::default()
                },
            ),
            (
                "milter.packet_timeout_secs",
                MilterConfig {
                    packet_timeout_secs: 0,
                    ..MilterConfig::default()
                },
            ),
            (
                "milter.message_timeout_secs",
                MilterConfig {
                    message_timeout_secs: 0,
                    ..MilterConfig::default()
                },
            ),
            (
                "milter.evict_idle_after_secs",
                MilterConfig {
                    evict_idle_after_secs: 0,
                    ..MilterConfig::default()
                },
            ),
        ] {
            assert_eq!(c.check().unwrap_err().0, field);
        }
        let a = AccountsConfig {
            window_secs: 0,
            ..AccountsConfig::default()
        };
        assert_eq!(a.check().unwrap_err().0, "accounts.window_secs");
    }

    #[test]
    fn state_and_quarantine_tables_read_durations_sizes_and_relays() {
        assert_eq!(StateConfig::default().check(), Ok(()));
        assert_eq!(QuarantineConfig::default().check(), Ok(()));
        let q: QuarantineConfig = toml::from_str(
            "mode = \"store\"\nkeep_rejected = true\nmax_age = \"12h\"\nmax_bytes = \"500M\"\n\
             release_relay = \"[::1]:25\"\n",
        )
        .unwrap();
        assert_eq!(q.mode, QuarantineMode::Store);
        assert!(q.keep_rejected);
        assert_eq!(q.max_age, Duration::from_secs(43_200));
        assert_eq!(q.max_bytes, 500 << 20);
        assert_eq!(q.check(), Ok(()));
        let q = QuarantineConfig::default();
        assert_eq!(q.max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(q.max_bytes, 10 << 30);
        assert!(toml::from_str::<QuarantineConfig>("mode = \"drop\"").is_err());
        assert!(toml::from_str::<QuarantineConfig>("max_age = \"soon\"").is_err());
        assert!(toml::from_str::<QuarantineConfig>("max_age = 0").is_err());
        assert!(toml::from_str::<QuarantineConfig>("max_bytes = \"lots\"").is_err());
        for bad in [
            "localhost",
            "mx:0",
            "mx:99999",
            ":25",
            "a b:25",
            "[nope]:25",
        ] {
            let q = QuarantineConfig {
                release_relay: Some(bad.into()),
                ..QuarantineConfig::default()
            };
            assert_eq!(
                q.check().unwrap_err().0,
                "quarantine.release_relay",
                "{bad}"
            );
        }
        for good in [
            "localhost:25",
            "127.0.0.1:10025",
            "mx.example.com:587",
            "[2001:db8::1]:25",
        ] {
            assert!(is_host_port(good), "{good}");
        }
        let s = StateConfig {
            history: 0,
            ..StateConfig::default()
        };
        assert_eq!(s.check().unwrap_err().0, "state.history");
        let s: StateConfig = toml::from_str("path = \"s.redb\"\nhistory = 5\n").unwrap();
        assert_eq!((s.path, s.history), (PathBuf::from("s.redb"), 5));
        assert!(toml::from_str::<StateConfig>("paths = 1").is_err());
    }

    #[test]
    fn tables_deserialise_with_defaults_and_refuse_unknown_fields() {
        let m: MilterConfig =
            toml::from_str("fallback = \"tempfail\"\nsocket_mode = 0o600\n").unwrap();
        assert_eq!(m.fallback, Fallback::Tempfail);
        assert_eq!(m.socket_mode, 0o600);
        assert_eq!(m.score_header, "X-Spam-Score");
        assert_eq!(m.max_buffered_bytes, DEFAULT_MAX_BUFFERED_BYTES);
        let m: MilterConfig = toml::from_str("max_buffered_bytes = \"64M\"").unwrap();
        assert_eq!(m.max_buffered_bytes, 64 << 20);
        let m: MilterConfig = toml::from_str("max_buffered_bytes = 1000000").unwrap();
        assert_eq!(m.max_buffered_bytes, 1_000_000);
        assert!(toml::from_str::<MilterConfig>("max_buffered_bytes = \"lots\"").is_err());
        assert!(toml::from_str::<MilterConfig>("max_buffered_bytes = 0").is_err());
        assert!(toml::from_str::<MilterConfig>("nope = 1").is_err());
        // 0 turns inline scanning off; other sizes read as every size does.
        assert_eq!(m.inline_scan_max_bytes, DEFAULT_INLINE_SCAN_MAX_BYTES);
        for (text, want) in [("0", 0), ("\"0\"", 0), ("\"32K\"", 32 << 10), ("100", 100)] {
            let m: MilterConfig =
                toml::from_str(&format!("inline_scan_max_bytes = {text}")).unwrap();
            assert_eq!(m.inline_scan_max_bytes, want, "{text}");
        }
        assert!(toml::from_str::<MilterConfig>("inline_scan_max_bytes = -1").is_err());
        let a: AccountsConfig = toml::from_str("db = \"locks.redb\"").unwrap();
        assert_eq!(a.lock_after, 5);
        assert_eq!(a.on_store_error, OnStoreError::EnforceKnown);
        let a: AccountsConfig = toml::from_str("on_store_error = \"tempfail\"").unwrap();
        assert_eq!(a.on_store_error, OnStoreError::Tempfail);
        assert!(toml::from_str::<AccountsConfig>("on_store_error = \"accept\"").is_err());
    }
}
