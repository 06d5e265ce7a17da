//! The knowledge base: bounce causes, who acts and the fix, in Chinese and English,
//! and the RFC 3463 meanings of enhanced status codes. A TOML data file
//! (`crates/engine/bounce/causes.toml`) compiled in; an admin's files add entries in
//! front of it (see [`KnowledgeBase::load`]).

use super::{Lang, Who};
use crate::config::ConfigFile;
use crate::error::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The knowledge base compiled into chaff.
pub const EMBEDDED: &str = include_str!("../../bounce/causes.toml");

/// Where the knowledge base comes from: chaff.toml's `[bounce]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeSources {
    /// Use the embedded knowledge base (`[bounce] embedded`, default true).
    pub embedded: bool,
    /// Files whose entries are tried before the embedded ones, in order
    /// (`[bounce] knowledge`, relative to the configuration file).
    pub files: Vec<PathBuf>,
}

impl Default for KnowledgeSources {
    fn default() -> Self {
        KnowledgeSources {
            embedded: true,
            files: Vec::new(),
        }
    }
}

impl KnowledgeSources {
    /// Reads the `[bounce]` table of a configuration file (absent: the defaults).
    pub fn from_file(file: &ConfigFile) -> Result<KnowledgeSources, ConfigError> {
        #[derive(Deserialize, Default)]
        struct Top {
            bounce: Option<Table>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            embedded: Option<bool>,
            #[serde(default)]
            knowledge: Vec<PathBuf>,
        }
        let top: Top = file.read()?;
        let mut sources = KnowledgeSources::default();
        if let Some(t) = top.bounce {
            if let Some(e) = t.embedded {
                sources.embedded = e;
            }
            sources.files = t.knowledge.into_iter().map(|p| file.resolve(p)).collect();
        }
        Ok(sources)
    }
}

/// One cause of a bounce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// A stable identifier (`unknown-user`), shown in JSON output.
    pub id: String,
    /// Substrings of the server's reply, lowercased, white space collapsed.
    pub patterns: Vec<String>,
    /// Reply codes a pattern match needs (empty: any).
    pub codes: Vec<String>,
    /// Enhanced status codes that mean this cause.
    pub statuses: Vec<String>,
    /// Who must act.
    pub who: Who,
    /// The cause, in Chinese and English.
    pub cause: [String; 2],
    /// The fix, in Chinese and English.
    pub fix: [String; 2],
}

impl Cause {
    /// The cause's text in a language.
    pub fn cause(&self, lang: Lang) -> &str {
        &self.cause[lang as usize]
    }

    /// The fix in a language.
    pub fn fix(&self, lang: Lang) -> &str {
        &self.fix[lang as usize]
    }
}

/// The meaning of an enhanced status code class, subject or detail (RFC 3463).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMeaning {
    /// `5`, `X.1` or `X.1.1`.
    pub code: String,
    /// Who acts (subjects only).
    pub who: Option<Who>,
    /// The meaning, in Chinese and English.
    pub text: [String; 2],
    /// What to do, in Chinese and English (classes and subjects).
    pub fix: Option<[String; 2]>,
}

/// Causes and status meanings, in the order they are tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnowledgeBase {
    /// Causes, tried in order.
    pub causes: Vec<Cause>,
    /// Status code meanings.
    pub statuses: Vec<StatusMeaning>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKb {
    #[serde(default)]
    cause: Vec<FileCause>,
    #[serde(default)]
    status: Vec<FileStatus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCause {
    id: Spanned<String>,
    #[serde(default)]
    patterns: Vec<Spanned<String>>,
    #[serde(default)]
    codes: Vec<Spanned<String>>,
    #[serde(default)]
    statuses: Vec<Spanned<String>>,
    who: Spanned<String>,
    zh: FileText,
    en: FileText,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    cause: String,
    fix: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStatus {
    code: Spanned<String>,
    who: Option<Spanned<String>>,
    zh: String,
    en: String,
    zh_fix: Option<String>,
    en_fix: Option<String>,
}

impl KnowledgeBase {
    /// The embedded knowledge base.
    pub fn embedded() -> KnowledgeBase {
        let mut kb = KnowledgeBase::default();
        // The embedded file is tested (see the tests below): it is valid.
        if let Err(e) = kb.add(EMBEDDED, Path::new("bounce/causes.toml")) {
            unreachable!("embedded bounce knowledge base is invalid: {e}");
        }
        kb
    }

    /// Builds the knowledge base a configuration asks for: the admin's files, each
    /// tried before the next and all before the embedded entries; an entry whose
    /// `id` (or status `code`) is already present replaces the later one.
    pub fn load(sources: &KnowledgeSources) -> Result<KnowledgeBase, ConfigError> {
        let mut kb = KnowledgeBase::default();
        for file in &sources.files {
            let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
                file: file.clone(),
                line: None,
                field: None,
                message: format!("cannot read: {e}"),
            })?;
            kb.add(&text, file)?;
        }
        if sources.embedded {
            kb.add(EMBEDDED, Path::new("bounce/causes.toml"))?;
        }
        Ok(kb)
    }

    /// Adds the entries of one file after those present; an `id` or `code` already
    /// present is kept (earlier files win). Errors name the file, line and field.
    pub fn add(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let src = ConfigFile::from_toml(text, path)?;
        let file: FileKb = src.read()?;
        let bad = |span: std::ops::Range<usize>, field: &str, m: String| {
            src.error_at(Some(span), Some(field), m)
        };
        for c in file.cause {
            let id = c.id.get_ref().trim().to_string();
            if id.is_empty() {
                return Err(bad(c.id.span(), "cause.id", "must not be empty".into()));
            }
            let who = parse_who(&c.who).map_err(|m| bad(c.who.span(), "cause.who", m))?;
            let mut patterns = Vec::new();
            for p in &c.patterns {
                let n = fold(p.get_ref());
                if n.is_empty() {
                    return Err(bad(p.span(), "cause.patterns", "empty pattern".into()));
                }
                patterns.push(n);
            }
            for code in &c.codes {
                if !is_reply_code(code.get_ref()) {
                    return Err(bad(
                        code.span(),
                        "cause.codes",
                        format!("`{}` is not a reply code (like 550)", code.get_ref()),
                    ));
                }
            }
            for s in &c.statuses {
                if super::parse_status(s.get_ref()).as_deref() != Some(s.get_ref().as_str()) {
                    return Err(bad(
                        s.span(),
                        "cause.statuses",
                        format!(
                            "`{}` is not an enhanced status code (like 5.1.1)",
                            s.get_ref()
                        ),
                    ));
                }
            }
            if patterns.is_empty() && c.statuses.is_empty() {
                return Err(bad(
                    c.id.span(),
                    "cause",
                    format!("cause `{id}` has neither patterns nor statuses: it can never match"),
                ));
            }
            if self.causes.iter().any(|k| k.id == id) {
                continue;
            }
            self.causes.push(Cause {
                id,
                patterns,
                codes: c.codes.into_iter().map(Spanned::into_inner).collect(),
                statuses: c.statuses.into_iter().map(Spanned::into_inner).collect(),
                who,
                cause: [c.zh.cause, c.en.cause],
                fix: [c.zh.fix, c.en.fix],
            });
        }
        for s in file.status {
            let code = s.code.get_ref().trim().to_ascii_uppercase();
            if !is_status_key(&code) {
                return Err(bad(
                    s.code.span(),
                    "status.code",
                    format!("`{code}` is not a class (5), subject (X.1) or detail (X.1.1)"),
                ));
            }
            let who = match &s.who {
                Some(w) => Some(parse_who(w).map_err(|m| bad(w.span(), "status.who", m))?),
                None => None,
            };
            let fix = match (s.zh_fix, s.en_fix) {
                (Some(z), Some(e)) => Some([z, e]),
                (None, None) => None,
                _ => {
                    return Err(bad(
                        s.code.span(),
                        "status",
                        "give both zh_fix and en_fix, or neither".into(),
                    ));
                }
            };
            if self.statuses.iter().any(|k| k.code == code) {
                continue;
            }
            self.statuses.push(StatusMeaning {
                code,
                who,
                text: [s.zh, s.en],
                fix,
            });
        }
        Ok(())
    }

    /// The cause of a failure: by pattern in `diagnostic` (with `reply` in the
    /// entry's codes, if it lists any), else by exact enhanced `status`.
    pub fn find(
        &self,
        diagnostic: &str,
        reply: Option<&str>,
        status: Option<&str>,
    ) -> Option<&Cause> {
        let text = fold(diagnostic);
        self.causes
            .iter()
            .find(|c| {
                c.patterns.iter().any(|p| text.contains(p.as_str()))
                    && (c.codes.is_empty() || reply.is_none_or(|r| c.codes.iter().any(|k| k == r)))
            })
            .or_else(|| {
                let status = status?;
                self.causes
                    .iter()
                    .find(|c| c.statuses.iter().any(|s| s == status))
            })
    }

    /// The meaning of a status code key (`5`, `X.1`, `X.1.1`).
    pub fn status(&self, key: &str) -> Option<&StatusMeaning> {
        self.statuses.iter().find(|s| s.code == key)
    }
}

fn parse_who(w: &Spanned<String>) -> Result<Who, String> {
    Who::from_name(w.get_ref()).ok_or_else(|| {
        format!(
            "`{}` is not one of sender, recipient, sender-admin, recipient-admin, none",
            w.get_ref()
        )
    })
}

fn is_reply_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 3 && (b'2'..=b'5').contains(&b[0]) && b.iter().all(u8::is_ascii_digit)
}

/// `2`, `4`, `5`, `X.n` or `X.n.n`.
fn is_status_key(s: &str) -> bool {
    match s.split('.').collect::<Vec<_>>().as_slice() {
        [c] => matches!(*c, "2" | "4" | "5"),
        ["X", n] => is_small_number(n),
        ["X", n, m] => is_small_number(n) && is_small_number(m),
        _ => false,
    }
}

fn is_small_number(s: &str) -> bool {
    (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Latin letters lowercased and runs of white space made one space: how patterns
/// and replies are compared.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_base_is_valid_and_covers_the_faq() {
        let kb = KnowledgeBase::embedded();
        for (text, code, id) in [
            ("550 Unknown user", "550", "unknown-user"),
            ("500 Mailbox is not found", "500", "unknown-user"),
            (
                "550 Requested action not taken: mailbox unavailable",
                "550",
                "unknown-user",
            ),
            ("550 Invalid recipient", "550", "unknown-user"),
            (
                "552 Message size exceeds fixed limit",
                "552",
                "message-too-large",
            ),
            ("557 forbid to send spam mail", "557", "spam-account-locked"),
            (
                "The maximum number of tentatives has been reached",
                "",
                "domain-or-network",
            ),
            ("not space for user", "", "mailbox-full"),
            ("503 Authentication failed", "503", "auth-failed"),
            (
                "554 5.7.1 <a@b.c>: Relay access denied",
                "554",
                "relay-denied",
            ),
            (
                "550 5.7.1 Message rejected as spam",
                "550",
                "rejected-as-spam",
            ),
        ] {
            let reply = (!code.is_empty()).then_some(code);
            let c = kb.find(text, reply, None).map(|c| c.id.as_str());
            assert_eq!(c, Some(id), "{text}");
        }
        assert_eq!(
            kb.find("whatever", None, Some("5.2.2")).unwrap().id,
            "mailbox-full"
        );
        assert!(kb.find("whatever", None, Some("5.9.9")).is_none());
        for key in ["2", "4", "5", "X.1", "X.7", "X.1.1"] {
            assert!(kb.status(key).is_some(), "{key}");
        }
    }

    #[test]
    fn codes_restrict_a_pattern_match() {
        let kb = KnowledgeBase::embedded();
        // "does not exist" with a 4xx is not an unknown user.
        assert_ne!(
            kb.find("451 domain does not exist", Some("451"), None)
                .map(|c| c.id.as_str()),
            Some("unknown-user")
        );
    }

    #[test]
    fn an_admins_file_goes_first_and_errors_have_lines() {
        let mut kb = KnowledgeBase::default();
        kb.add(
            "[[cause]]\nid = \"ours\"\npatterns = [\"Mailbox  Is  Not  Found\"]\nwho = \"recipient-admin\"\n\
             zh.cause = \"c\"\nzh.fix = \"f\"\nen.cause = \"c\"\nen.fix = \"f\"\n",
            Path::new("site.toml"),
        )
        .unwrap();
        kb.add(EMBEDDED, Path::new("e")).unwrap();
        assert_eq!(
            kb.find("500 mailbox is   not found", Some("500"), None)
                .unwrap()
                .id,
            "ours"
        );
        let e = KnowledgeBase::default()
            .add(
                "[[cause]]\nid = \"x\"\npatterns = [\"a\"]\nwho = \"boss\"\nzh.cause = \"c\"\n\
                 zh.fix = \"f\"\nen.cause = \"c\"\nen.fix = \"f\"\n",
                Path::new("site.toml"),
            )
            .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(4), Some("cause.who")),
            "{e}"
        );
        let e = KnowledgeBase::default()
            .add(
                "[[cause]]\nid = \"x\"\nstatuses = [\"5.1\"]\nwho = \"sender\"\nzh.cause = \"c\"\n\
                 zh.fix = \"f\"\nen.cause = \"c\"\nen.fix = \"f\"\n",
                Path::new("site.toml"),
            )
            .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = KnowledgeBase::default()
            .add("[[cause]]\nid = \"x\"\n", Path::new("site.toml"))
            .unwrap_err();
        assert!(e.message.contains("missing field"), "{e}");
    }

    #[test]
    fn sources_come_from_the_bounce_table() {
        let f = ConfigFile::from_toml(
            "[bounce]\nembedded = false\nknowledge = [\"site.toml\"]\n",
            Path::new("/etc/chaff/chaff.toml"),
        )
        .unwrap();
        let s = KnowledgeSources::from_file(&f).unwrap();
        assert!(!s.embedded);
        assert_eq!(s.files, [PathBuf::from("/etc/chaff/site.toml")]);
        let f = ConfigFile::from_toml("[bounce]\nknowlege = []\n", Path::new("c.toml")).unwrap();
        assert!(KnowledgeSources::from_file(&f).is_err());
        let e = KnowledgeBase::load(&KnowledgeSources {
            embedded: true,
            files: vec![PathBuf::from("/nonexistent/kb.toml")],
        })
        .unwrap_err();
        assert!(e.message.starts_with("cannot read"), "{e}");
    }
}
