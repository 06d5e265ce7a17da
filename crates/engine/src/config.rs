//! The engine's configuration: thresholds, replies, sender lists, limits, keyword
//! sources and scoring knobs, read from `chaff.toml`.
//!
//! Every field is optional over the embedded defaults. A bad file is refused with an
//! error naming the file, the line and the field; there is no silent fallback.

use crate::classify::ClassifierConfig;
use crate::error::ConfigError;
use crate::keywords::KeywordSources;
use crate::reply::Reply;
use crate::verdict::Action;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The top-level keys and tables of `chaff.toml` that the engine reads. Other
/// crates (the milter service) read their own tables from the same file; a program
/// that knows every table refuses the others ([`ConfigFile::check_tables`]).
pub const TABLES: &[&str] = &[
    "model",
    "thresholds",
    "outbound",
    "replies",
    "limits",
    "senders",
    "keywords",
    "scoring",
    "classifier",
    "bounce",
];

/// One configuration file, read once, from which every crate reads its tables: the
/// engine's here ([`Config::from_file`]), the service's in its own crate. Errors from
/// any table name the file, the line and the field the same way.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Reads a file and checks that it is TOML.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        ConfigFile::from_toml(&text, path)
    }

    /// Configuration text; `path` names it in errors and anchors relative paths (its
    /// directory).
    pub fn from_toml(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        let file = ConfigFile {
            path: path.to_path_buf(),
            text: text.to_string(),
        };
        toml::de::DeTable::parse(text).map_err(|e| file.toml_error(&e))?;
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path written in the file, relative to the file's directory.
    pub fn resolve(&self, p: PathBuf) -> PathBuf {
        if p.is_relative() {
            self.path.parent().unwrap_or(Path::new("")).join(p)
        } else {
            p
        }
    }

    /// Reads the tables `T` describes (its fields are top-level keys; keys it does
    /// not name are ignored here). A value of the wrong type, or an unknown field
    /// inside a table that denies them, is refused with its line.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| self.toml_error(&e))
    }

    /// Refuses top-level keys that no table in `known` names (a misspelt
    /// `[thresolds]` would otherwise be silently ignored).
    pub fn check_tables(&self, known: &[&[&str]]) -> Result<(), ConfigError> {
        let doc = toml::de::DeTable::parse(&self.text).map_err(|e| self.toml_error(&e))?;
        for (key, _) in doc.get_ref().iter() {
            let name: &str = key.get_ref();
            if !known.iter().any(|t| t.contains(&name)) {
                return Err(self.error_at(
                    Some(key.span()),
                    Some(name),
                    format!("unknown table or key `{name}`"),
                ));
            }
        }
        Ok(())
    }

    /// An error about the value at the dotted path `field` (`milter.scan_threads`),
    /// with the line it is on (or the line of the nearest table that is there).
    pub fn error(&self, field: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(self.span_of(field), Some(field), message.into())
    }

    /// An error at a byte span of the file.
    pub fn error_at(
        &self,
        span: Option<Range<usize>>,
        field: Option<&str>,
        message: String,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: span.map(|s| line_of(&self.text, s.start)),
            field: field.map(str::to_string),
            message,
        }
    }

    /// Is the value at a dotted path written in the file?
    pub fn has(&self, field: &str) -> bool {
        let Ok(doc) = toml::de::DeTable::parse(&self.text) else {
            return false;
        };
        let mut table = doc.get_ref();
        let mut parts = field.split('.').peekable();
        while let Some(part) = parts.next() {
            let Some(value) = table.get(part) else {
                return false;
            };
            match value.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => return parts.peek().is_none(),
            }
        }
        true
    }

    /// The span of the value at a dotted path, or of its nearest ancestor present.
    fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let doc = toml::de::DeTable::parse(&self.text).ok()?;
        let mut table = doc.get_ref();
        let mut best = None;
        for part in field.split('.') {
            let Some((key, value)) = table.get_key_value(part) else {
                return best;
            };
            best = Some(key.span());
            match value.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => return Some(value.span()),
            }
        }
        best
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        self.error_at(
            e.span(),
            None,
            e.message().trim_end().replace('\n', "; ").to_string(),
        )
    }
}

/// The number of threads a setting asks for: 0 means one per CPU. The one rule
/// for every thread count (`--jobs`, `[milter] network_threads`, `scan_threads`).
pub fn threads(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Score thresholds: at or above `quarantine` a message is held, at or above
/// `reject` it is refused (the FAQ's "auto-delete threshold").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Quarantine at or above this score.
    pub quarantine: f64,
    /// Reject at or above this score.
    pub reject: f64,
}

/// How hits become a score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringConfig {
    /// Each repeat of a keyword counts this fraction of the previous one
    /// (1st: weight, 2nd: weight × decay, 3rd: weight × decay², …).
    pub repeat_decay: f64,
    /// Hits in the subject count this many times their weight.
    pub subject_multiplier: f64,
    /// Cap on what one category can add, for categories not in `category_caps`.
    pub default_category_cap: f64,
    /// Per-category caps.
    pub category_caps: BTreeMap<String, f64>,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            repeat_decay: 0.5,
            subject_multiplier: 1.5,
            default_category_cap: 12.0,
            category_caps: BTreeMap::new(),
        }
    }
}

impl ScoringConfig {
    /// The cap for one category.
    pub fn cap(&self, category: &str) -> f64 {
        self.category_caps
            .get(category)
            .copied()
            .unwrap_or(self.default_category_cap)
    }
}

/// The whole configuration. `Config::default()` is the embedded default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Thresholds for inbound mail (and all mail when `outbound` is unset).
    pub thresholds: Thresholds,
    /// Thresholds for mail from authenticated senders, when different.
    pub outbound: Option<Thresholds>,
    /// The SMTP reply for rejected mail.
    pub reject_reply: Reply,
    /// The SMTP reply for mail over `max_message_size`.
    pub oversize_reply: Reply,
    /// Largest message scanned, in bytes; larger ones are rejected.
    pub max_message_size: usize,
    /// The action when a scan fails (a bug): `[limits] on_error`, deliver by
    /// default (a filter fault should not stop mail).
    pub on_error: Action,
    /// Senders never refused (still scanned), when proven: `[senders] allow`.
    /// Inbound mail only; see [`AllowEntry`].
    pub allow: Vec<AllowEntry>,
    /// The authserv-ids the site's own MTA writes in `Authentication-Results`
    /// headers (`[senders] authserv_id`); only those headers are read as proof for
    /// the allow list. None by default: no header is trusted.
    pub authserv_ids: Vec<String>,
    /// `[senders] allow_unverified`: an allow entry applies on the envelope sender
    /// alone, without proof (forgeable; off by default).
    pub allow_unverified: bool,
    /// Senders always rejected.
    pub block: Vec<SenderPattern>,
    /// Keyword list sources.
    pub keywords: KeywordSources,
    /// Scoring knobs.
    pub scoring: ScoringConfig,
    /// A trained model file (`chaff train`), if any.
    pub model: Option<PathBuf>,
    /// Classifier settings.
    pub classifier: ClassifierConfig,
    /// The file this configuration was read from, if any.
    pub source: Option<PathBuf>,
}

/// The default reject reply, as the mail admins' FAQ has it.
pub const DEFAULT_REJECT_REPLY: &str = "557 5.7.1 forbid to send spam mail";
/// The default reply for oversize mail.
pub const DEFAULT_OVERSIZE_REPLY: &str = "552 5.3.4 Message size exceeds fixed limit";

impl Default for Config {
    fn default() -> Self {
        Config {
            // Measured on trec06c-dev with the embedded lists: quarantine at 9
            // flags 0.5 % of ham (68 % of spam); reject at 15 flags 0.06 % of ham.
            thresholds: Thresholds {
                quarantine: 9.0,
                reject: 15.0,
            },
            outbound: None,
            reject_reply: Reply::builtin(DEFAULT_REJECT_REPLY),
            oversize_reply: Reply::builtin(DEFAULT_OVERSIZE_REPLY),
            max_message_size: 25 * 1024 * 1024,
            on_error: Action::Deliver,
            allow: Vec::new(),
            authserv_ids: Vec::new(),
            allow_unverified: false,
            block: Vec::new(),
            keywords: KeywordSources::default(),
            scoring: ScoringConfig::default(),
            model: None,
            classifier: ClassifierConfig::default(),
            source: None,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file's engine tables (other tables are
    /// left to the programs that use them).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_file(&ConfigFile::load(path)?)
    }

    /// Parses and validates configuration text; `path` names it in errors and
    /// anchors relative paths (its directory).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::from_file(&ConfigFile::from_toml(text, path)?)
    }

    /// Reads the engine's tables of a configuration file.
    pub fn from_file(src: &ConfigFile) -> Result<Config, ConfigError> {
        let path = src.path();
        let err = |span: Option<Range<usize>>, field: Option<&str>, message: String| {
            src.error_at(span, field, message)
        };
        let file: FileConfig = src.read()?;
        let resolve = |p: PathBuf| src.resolve(p);

        let mut cfg = Config {
            source: Some(path.to_path_buf()),
            ..Config::default()
        };
        let check_threshold = |v: &Spanned<f64>, name: &str| {
            let x = *v.get_ref();
            if !x.is_finite() {
                Err(err(
                    Some(v.span()),
                    Some(name),
                    "must be a finite number".into(),
                ))
            } else if x <= 0.0 {
                // Mail without a single hit scores 0: it would be held or refused.
                Err(err(
                    Some(v.span()),
                    Some(name),
                    format!("{x} must be above 0 (mail with no spam hits scores 0)"),
                ))
            } else {
                Ok(x)
            }
        };
        let thresholds = |t: &FileThresholds, base: Thresholds, table: &str| {
            let q = match &t.quarantine {
                Some(v) => check_threshold(v, &format!("{table}.quarantine"))?,
                None => base.quarantine,
            };
            let r = match &t.reject {
                Some(v) => check_threshold(v, &format!("{table}.reject"))?,
                None => base.reject,
            };
            if q > r {
                let span = t.quarantine.as_ref().map(Spanned::span);
                return Err(err(
                    span,
                    Some(&format!("{table}.quarantine")),
                    format!("quarantine threshold {q} is above the reject threshold {r}"),
                ));
            }
            Ok(Thresholds {
                quarantine: q,
                reject: r,
            })
        };
        if let Some(t) = &file.thresholds {
            cfg.thresholds = thresholds(t, cfg.thresholds, "thresholds")?;
        }
        if let Some(t) = &file.outbound {
            cfg.outbound = Some(thresholds(t, cfg.thresholds, "outbound")?);
        }
        if let Some(replies) = &file.replies {
            if let Some(r) = &replies.reject {
                cfg.reject_reply = Reply::parse(r.get_ref())
                    .map_err(|m| err(Some(r.span()), Some("replies.reject"), m))?;
            }
            if let Some(r) = &replies.oversize {
                cfg.oversize_reply = Reply::parse(r.get_ref())
                    .map_err(|m| err(Some(r.span()), Some("replies.oversize"), m))?;
            }
        }
        if let Some(limits) = &file.limits {
            if let Some(size) = &limits.max_message_size {
                cfg.max_message_size = parse_size(size.get_ref())
                    .map_err(|m| err(Some(size.span()), Some("limits.max_message_size"), m))?;
            }
            if let Some(a) = &limits.on_error {
                cfg.on_error = Action::from_name(a.get_ref()).ok_or_else(|| {
                    err(
                        Some(a.span()),
                        Some("limits.on_error"),
                        format!("`{}` is not deliver, quarantine or reject", a.get_ref()),
                    )
                })?;
            }
        }
        if let Some(senders) = &file.senders {
            for entry in &senders.allow {
                cfg.allow.push(
                    AllowEntry::parse(entry.get_ref())
                        .map_err(|m| err(Some(entry.span()), Some("senders.allow"), m))?,
                );
            }
            for entry in &senders.block {
                cfg.block.push(
                    SenderPattern::parse(entry.get_ref())
                        .map_err(|m| err(Some(entry.span()), Some("senders.block"), m))?,
                );
            }
            if let Some(ids) = &senders.authserv_id {
                let list = match ids.get_ref() {
                    OneOrMany::One(id) => vec![id.clone()],
                    OneOrMany::Many(ids) => ids.clone(),
                };
                for id in list {
                    let id = id.trim();
                    if id.is_empty() || id.contains(char::is_whitespace) {
                        return Err(err(
                            Some(ids.span()),
                            Some("senders.authserv_id"),
                            format!(
                                "`{id}` is not an authserv-id (one word, e.g. the MTA's host name)"
                            ),
                        ));
                    }
                    cfg.authserv_ids.push(id.to_string());
                }
            }
            cfg.allow_unverified = senders.allow_unverified.unwrap_or(false);
        }
        if let Some(k) = file.keywords {
            if let Some(e) = k.embedded {
                cfg.keywords.embedded = e;
            }
            cfg.keywords.dirs = k.dirs.into_iter().map(resolve).collect();
        }
        if let Some(s) = &file.scoring {
            let positive = |v: &Option<Spanned<f64>>, name: &str, max: f64| match v {
                Some(v) if !(0.0..=max).contains(v.get_ref()) => Err(err(
                    Some(v.span()),
                    Some(name),
                    format!("must be between 0 and {max}"),
                )),
                Some(v) => Ok(Some(*v.get_ref())),
                None => Ok(None),
            };
            if let Some(d) = positive(&s.repeat_decay, "scoring.repeat_decay", 1.0)? {
                cfg.scoring.repeat_decay = d;
            }
            if let Some(m) = positive(&s.subject_multiplier, "scoring.subject_multiplier", 100.0)? {
                cfg.scoring.subject_multiplier = m;
            }
            if let Some(c) = positive(
                &s.default_category_cap,
                "scoring.default_category_cap",
                f64::MAX,
            )? {
                cfg.scoring.default_category_cap = c;
            }
            for (cat, cap) in &s.category_caps {
                let name = format!("scoring.category_caps.{cat}");
                if let Some(c) = positive(&Some(cap.clone()), &name, f64::MAX)? {
                    cfg.scoring.category_caps.insert(cat.clone(), c);
                }
            }
        }
        cfg.model = file.model.map(resolve);
        cfg.classifier = file.classifier;
        if let Err((field, message)) = cfg.classifier.validate() {
            return Err(src.error(&format!("classifier.{field}"), message));
        }
        Ok(cfg)
    }

    /// The thresholds for a message, by direction.
    pub fn thresholds_for(&self, outbound: bool) -> Thresholds {
        match (outbound, self.outbound) {
            (true, Some(t)) => t,
            _ => self.thresholds,
        }
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Deserialises a size written as `[limits] max_message_size` is (bytes, or a
/// number with a `K`, `M` or `G` suffix), for size fields of other tables
/// (`#[serde(deserialize_with = "chaff::config::deserialize_size")]`).
pub fn deserialize_size<'de, D>(d: D) -> Result<usize, D::Error>
where
    D: serde::Deserializer<'de>,
{
    parse_size(&SizeValue::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// As [`deserialize_size`], for settings where 0 turns something off.
pub fn deserialize_size_or_zero<'de, D>(d: D) -> Result<usize, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match SizeValue::deserialize(d)? {
        SizeValue::Bytes(0) => Ok(0),
        SizeValue::Text(t) if t.trim() == "0" => Ok(0),
        size => parse_size(&size).map_err(serde::de::Error::custom),
    }
}

/// Sizes are bytes, or a number with a `K`, `M` or `G` suffix (powers of 1024).
fn parse_size(size: &SizeValue) -> Result<usize, String> {
    match size {
        SizeValue::Bytes(n) if *n > 0 => usize::try_from(*n).map_err(|e| e.to_string()),
        SizeValue::Bytes(n) => Err(format!("size must be positive, not {n}")),
        SizeValue::Text(s) => {
            let t = s.trim();
            let (num, mult) = match t.char_indices().last() {
                Some((i, 'k' | 'K')) => (&t[..i], 1024),
                Some((i, 'm' | 'M')) => (&t[..i], 1024 * 1024),
                Some((i, 'g' | 'G')) => (&t[..i], 1024 * 1024 * 1024),
                _ => (t, 1),
            };
            match num.trim().parse::<usize>() {
                Ok(n) if n > 0 => n
                    .checked_mul(mult)
                    .ok_or_else(|| format!("size `{s}` is too large")),
                _ => Err(format!(
                    "`{s}` is not a size (write bytes, or a number with K, M or G)"
                )),
            }
        }
    }
}

/// Parses a duration written as a number and a unit: `s` (seconds), `m`
/// (minutes), `h` (hours), `d` (days) or `w` (weeks), such as `30d`, `12h` or
/// `90m`; a bare number is seconds. It must be positive. The one reader of
/// durations for configuration values and command-line options.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration (write a number with s, m, h, d or w: `30d`)");
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_lowercase()),
        _ => (t, 's'),
    };
    let mult: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    match num.trim().parse::<u64>() {
        Ok(0) => Err(format!("duration `{text}` must be positive")),
        Ok(n) => n
            .checked_mul(mult)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("duration `{text}` is too long")),
        Err(_) => Err(bad()),
    }
}

/// Deserialises a duration as [`parse_duration`] reads it (a string such as
/// `"30d"`, or a number of seconds), for duration fields of any table
/// (`#[serde(deserialize_with = "chaff::config::deserialize_duration")]`).
pub fn deserialize_duration<'de, D>(d: D) -> Result<std::time::Duration, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match SizeValue::deserialize(d)? {
        SizeValue::Bytes(n) if n > 0 => Ok(std::time::Duration::from_secs(n as u64)),
        SizeValue::Bytes(n) => Err(serde::de::Error::custom(format!(
            "duration must be positive, not {n}"
        ))),
        SizeValue::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// A sender allow/block-list entry: `user@example.com`, `example.com` (the domain
/// and its subdomains), or a wildcard such as `*@spam.example` or `news-*@*.example`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderPattern {
    text: String,
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Address,
    Domain,
    Wildcard,
}

impl SenderPattern {
    /// Parses one entry.
    pub fn parse(entry: &str) -> Result<SenderPattern, String> {
        let text = entry.trim().to_ascii_lowercase();
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(format!("`{entry}` is not an address, domain or wildcard"));
        }
        let kind = if text.contains(['*', '?']) {
            PatternKind::Wildcard
        } else if text.contains('@') {
            PatternKind::Address
        } else {
            PatternKind::Domain
        };
        Ok(SenderPattern { text, kind })
    }

    /// The entry as written (lowercased).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Is this entry one exact address (no wildcard)?
    pub fn is_exact_address(&self) -> bool {
        self.kind == PatternKind::Address
    }

    /// Does this entry match the sender address?
    pub fn matches(&self, sender: &str) -> bool {
        let sender = sender.trim().trim_matches(['<', '>']).to_ascii_lowercase();
        match self.kind {
            PatternKind::Address => sender == self.text,
            PatternKind::Domain => {
                let domain = sender.rsplit_once('@').map_or(sender.as_str(), |(_, d)| d);
                domain == self.text
                    || domain
                        .strip_suffix(&self.text)
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            PatternKind::Wildcard => wildcard(self.text.as_bytes(), sender.as_bytes()),
        }
    }
}

/// An allow-list entry: `PATTERN` or `PATTERN from NET[, NET...]`, where PATTERN
/// is a [`SenderPattern`] and NET an IPv4 or IPv6 address or network
/// (`203.0.113.0/24`, `2001:db8::/32`).
///
/// It applies to inbound mail whose envelope sender matches PATTERN when one
/// proof holds: the client is in one of the networks; a trusted
/// `Authentication-Results` header (see [`Config::authserv_ids`]) reports a DKIM,
/// SPF or DMARC pass for the sender's domain; or `allow_unverified` is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// The sender pattern.
    pub pattern: SenderPattern,
    /// The client networks listed after `from` (none: proof must come from
    /// `Authentication-Results`).
    pub networks: Vec<Network>,
}

impl AllowEntry {
    /// Parses one entry.
    pub fn parse(entry: &str) -> Result<AllowEntry, String> {
        let trimmed = entry.trim();
        let (pattern, nets) = match trimmed.split_once(char::is_whitespace) {
            Some((p, rest)) => {
                let rest = rest.trim_start();
                let nets = rest
                    .strip_prefix("from")
                    .filter(|n| n.starts_with(char::is_whitespace))
                    .ok_or_else(|| {
                        format!("`{entry}` is not `PATTERN` or `PATTERN from NETWORK, ...`")
                    })?;
                (p, Some(nets))
            }
            None => (trimmed, None),
        };
        let pattern = SenderPattern::parse(pattern)?;
        let mut networks = Vec::new();
        if let Some(nets) = nets {
            for net in nets.split(',') {
                networks.push(Network::parse(net.trim())?);
            }
        }
        Ok(AllowEntry { pattern, networks })
    }
}

/// An IPv4 or IPv6 network: an address with a prefix length (`203.0.113.0/24`),
/// or one address (`/32` or `/128` implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let bad = || format!("`{text}` is not an IP address or network (203.0.113.0/24)");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(bad()),
            },
        };
        Ok(Network { addr, prefix })
    }

    /// Is the address inside this network? An IPv4-mapped IPv6 address
    /// (`::ffff:203.0.113.5`) counts as the IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let bits = |a: IpAddr| match a.to_canonical() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, true),
            IpAddr::V6(v6) => (u128::from(v6), false),
        };
        let ((net, net_v4), (ip, ip_v4)) = (bits(self.addr), bits(addr));
        if net_v4 != ip_v4 {
            return false;
        }
        let len = u32::from(self.prefix);
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        net & mask == ip & mask
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Glob match with `*` (any run) and `?` (one byte), iterative with backtracking
/// to the last star: linear in practice, never exponential.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

// ---- the file's shape, as serde reads it ----

/// The engine's part of the file. Other top-level tables are ignored here and
/// checked by [`ConfigFile::check_tables`] where every table is known.
#[derive(Deserialize, Default)]
struct FileConfig {
    model: Option<PathBuf>,
    thresholds: Option<FileThresholds>,
    outbound: Option<FileThresholds>,
    replies: Option<FileReplies>,
    limits: Option<FileLimits>,
    senders: Option<FileSenders>,
    keywords: Option<FileKeywords>,
    scoring: Option<FileScoring>,
    #[serde(default)]
    classifier: ClassifierConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileThresholds {
    quarantine: Option<Spanned<f64>>,
    reject: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReplies {
    reject: Option<Spanned<String>>,
    oversize: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_message_size: Option<Spanned<SizeValue>>,
    on_error: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSenders {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    authserv_id: Option<Spanned<OneOrMany>>,
    allow_unverified: Option<bool>,
    #[serde(default)]
    block: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeywords {
    embedded: Option<bool>,
    #[serde(default)]
    dirs: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScoring {
    repeat_decay: Option<Spanned<f64>>,
    subject_multiplier: Option<Spanned<f64>>,
    default_category_cap: Option<Spanned<f64>>,
    #[serde(default)]
    category_caps: BTreeMap<String, Spanned<f64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/chaff/chaff.toml"))
    }

    #[test]
    fn builtin_replies_are_valid() {
        for r in [DEFAULT_REJECT_REPLY, DEFAULT_OVERSIZE_REPLY] {
            assert_eq!(Reply::parse(r), Ok(Reply::builtin(r)));
        }
    }

    #[test]
    fn empty_file_is_the_default() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.thresholds, Config::default().thresholds);
        assert_eq!(cfg.reject_reply, "557 5.7.1 forbid to send spam mail");
    }

    #[test]
    fn fields_override_defaults() {
        let cfg = parse(
            "model = \"m.bin\"\n[thresholds]\nquarantine = 3\nreject = 9.5\n\
             [outbound]\nreject = 5\n[limits]\nmax_message_size = \"10M\"\n\
             [keywords]\ndirs = [\"kw\"]\n[scoring.category_caps]\nadult = 4\n",
        )
        .unwrap();
        assert_eq!(cfg.thresholds.quarantine, 3.0);
        assert_eq!(cfg.thresholds.reject, 9.5);
        assert_eq!(
            cfg.outbound,
            Some(Thresholds {
                quarantine: 3.0,
                reject: 5.0
            })
        );
        assert_eq!(cfg.max_message_size, 10 * 1024 * 1024);
        assert_eq!(cfg.keywords.dirs, vec![PathBuf::from("/etc/chaff/kw")]);
        assert_eq!(cfg.model, Some(PathBuf::from("/etc/chaff/m.bin")));
        assert_eq!(cfg.scoring.cap("adult"), 4.0);
        assert_eq!(cfg.scoring.cap("free"), 12.0);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse("[thresholds]\nquarantine = 20\nreject = 10\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.field.as_deref(), Some("thresholds.quarantine"));
        let shown = e.to_string();
        assert!(shown.starts_with("/etc/chaff/chaff.toml:2: field `thresholds.quarantine`"));

        let e = parse("[replies]\n\nreject = \"forbid to send spam mail\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("replies.reject"))
        );

        let e = parse("[thresholds]\nquarantine = \"high\"\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("invalid type"), "{}", e.message);

        let e = parse("[thresholds]\nquarantin = 3\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("unknown field"), "{}", e.message);

        let e = parse("[senders]\nallow = [\"ok@example.com\",\n \"bad entry\"]\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("senders.allow"))
        );

        let e = parse("[senders]\nallow = [\n\"ok@example.com from 192.0.2.0/24\",\n\"ceo@example.com from 203.0.113.0/33\"]\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(4), Some("senders.allow"))
        );
        assert!(e.message.contains("203.0.113.0/33"), "{}", e.message);
        let e = parse("[senders]\nallow = [\"ceo@example.com via 192.0.2.1\"]\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(2), Some("senders.allow"))
        );
        let e = parse("[senders]\n\nauthserv_id = [\"mx ok\"]\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("senders.authserv_id"))
        );

        let e = parse("[limits]\nmax_message_size = \"lots\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("limits.max_message_size"));
    }

    #[test]
    fn replies_may_span_lines_and_unknown_tables_are_left_to_their_readers() {
        let cfg = parse(
            "[replies]\nreject = \"557 5.7.1 first\\n557 5.7.1 second\"\n[milter]\nlisten = \"x\"\n",
        )
        .unwrap();
        assert_eq!(cfg.reject_reply, "557-5.7.1 first\r\n557 5.7.1 second");
        let file = ConfigFile::from_toml("[milter]\nx = 1\n", Path::new("c.toml")).unwrap();
        let e = file.check_tables(&[TABLES]).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(1), Some("milter")));
        assert!(file.check_tables(&[TABLES, &["milter"]]).is_ok());
    }

    #[test]
    fn errors_locate_nested_fields_and_on_error_is_checked() {
        let file = ConfigFile::from_toml(
            "[classifier]\nrate = 1\n\n[scoring.category_caps]\nadult = 4\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(file.error("scoring.category_caps.adult", "x").line, Some(5));
        assert_eq!(file.error("classifier.bits", "x").line, Some(1));
        assert_eq!(file.error("nowhere.at_all", "x").line, None);
        assert!(file.has("classifier.rate") && !file.has("classifier.bits"));
        let e = parse("[classifier]\nbits = 40\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(2), Some("classifier.bits"))
        );
        let e = parse("[limits]\non_error = \"bounce\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(2), Some("limits.on_error"))
        );
        assert_eq!(
            parse("[limits]\non_error = \"reject\"\n").unwrap().on_error,
            Action::Reject
        );
    }

    #[test]
    fn threads_zero_means_one_per_cpu() {
        assert!(threads(0) >= 1);
        assert_eq!(threads(3), 3);
    }

    #[test]
    fn sender_patterns() {
        let p = |s: &str| SenderPattern::parse(s).unwrap();
        assert!(p("Boss@Example.com").matches("<boss@example.COM>"));
        assert!(!p("boss@example.com").matches("boss2@example.com"));
        assert!(p("example.com").matches("a@example.com"));
        assert!(p("example.com").matches("a@mail.example.com"));
        assert!(!p("example.com").matches("a@badexample.com"));
        assert!(p("*@*.spam.test").matches("x@mx.spam.test"));
        assert!(p("news-*@example.org").matches("news-daily@example.org"));
        assert!(!p("news-*@example.org").matches("info@example.org"));
        assert!(p("a?c@x").matches("abc@x"));
        assert!(SenderPattern::parse("two words").is_err());
    }

    #[test]
    fn durations_read_with_their_unit() {
        use std::time::Duration;
        for (text, secs) in [
            ("30d", 30 * 86_400),
            ("12h", 43_200),
            ("90m", 5400),
            ("45", 45),
            (" 2w ", 14 * 86_400),
            ("10S", 10),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "0d", "-1d", "d", "3x", "1.5h", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_entries_networks_and_proof_settings() {
        let cfg = parse(
            "[senders]\nallow = [\"ceo@example.com from 203.0.113.0/24, 2001:db8::/32 ,192.0.2.7\", \
             \"example.org\"]\nauthserv_id = \"MX.example.net\"\nallow_unverified = true\n",
        )
        .unwrap();
        assert_eq!(cfg.allow.len(), 2);
        let nets: Vec<_> = cfg.allow[0]
            .networks
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7/32"]);
        assert!(cfg.allow[1].networks.is_empty());
        assert_eq!(cfg.authserv_ids, ["MX.example.net"]);
        assert!(cfg.allow_unverified);
        let cfg = parse("[senders]\nauthserv_id = [\"a.test\", \"b.test\"]\n").unwrap();
        assert_eq!(cfg.authserv_ids, ["a.test", "b.test"]);
        assert!(!cfg.allow_unverified);
        for bad in [
            "x@y from",
            "x@y from 300.1.1.1",
            "x@y from 10.0.0.0/",
            "x@y from ::1/129",
            "x@y from 10.0.0.1,",
            "x@y to 10.0.0.1",
        ] {
            assert!(AllowEntry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_contain_their_addresses() {
        let n = |s: &str| Network::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(n("203.0.113.0/24").contains(ip("203.0.113.200")));
        assert!(!n("203.0.113.0/24").contains(ip("203.0.114.1")));
        assert!(n("203.0.113.0/24").contains(ip("::ffff:203.0.113.9")));
        assert!(!n("203.0.113.0/24").contains(ip("2001:db8::1")));
        assert!(n("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!n("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(n("0.0.0.0/0").contains(ip("198.51.100.1")));
        assert!(n("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!n("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(!n("2001:db8::/32").contains(ip("10.0.0.1")));
        assert!(n("::/0").contains(ip("::1")));
    }
}
