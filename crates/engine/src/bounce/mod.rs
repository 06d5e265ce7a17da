//! Explain a bounce: read a non-delivery report and say, for each recipient it
//! failed for, why, who must act and what to do, in Chinese or English.
//!
//! Two kinds of report are read:
//! - RFC 3464 delivery status notifications (`multipart/report` with a
//!   `message/delivery-status` part): per recipient its `Final-Recipient`,
//!   `Action`, `Status`, `Diagnostic-Code` and `Remote-MTA` (module `dsn`);
//! - the free-text forms of Postfix, Exim, Sendmail, Exchange/Outlook and qmail,
//!   and Chinese servers' 退信 pages (an HTML table with 原邮件信息 — 时间, 主题,
//!   收件人 — then 退信原因 and 建议解决方案), read from the text and HTML parts
//!   (module `text`).
//!
//! The cause comes from a [`KnowledgeBase`], a TOML data file compiled in and
//! extended by the admin's own files ([`KnowledgeSources`], chaff.toml's `[bounce]`
//! table). A failure no entry knows is explained by the meaning of its enhanced
//! status code (RFC 3463) and marked `known: false`.
//!
//! Explaining never fails and never panics: a message that is not a bounce gives
//! an [`Explanation`] with `bounce: false`. Every string taken from the bounce has
//! its control characters (and bidirectional-text controls) escaped as `\u{..}`,
//! white space runs collapsed and its length bounded, so it is safe to print on a
//! terminal or in a log line.
//!
//! ```
//! use chaff::bounce::{Explainer, KnowledgeBase, Lang};
//!
//! let kb = KnowledgeBase::embedded();
//! let explainer = Explainer::new(&kb, Lang::En);
//! let raw = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n\
//!     This is the mail system at host mx.example.net.\r\n\r\n\
//!     <nobody@example.org>: host mx.example.org[192.0.2.7] said: 550 5.1.1\r\n\
//!     \x20   <nobody@example.org>: Recipient address rejected: User unknown\r\n";
//! let e = explainer.explain(raw);
//! assert!(e.bounce);
//! assert_eq!(e.recipients[0].cause_id, "unknown-user");
//! assert_eq!(e.recipients[0].status.as_deref(), Some("5.1.1"));
//! ```

mod dsn;
pub mod kb;
mod text;

pub use kb::{Cause, KnowledgeBase, KnowledgeSources};

use crate::decode::{charset, header, html, transfer};
use crate::parse::Parser;
use mail_parser::{MessagePart, MimeHeaders, PartType};
use serde::Serialize;
use std::fmt;

/// Longest string taken from a bounce (characters); longer ones are cut with `…`.
pub const MAX_FIELD_CHARS: usize = 400;
/// Recipients reported per bounce, at most.
pub const MAX_RECIPIENTS: usize = 100;
/// Bytes of a text part read, at most.
const MAX_TEXT_BYTES: usize = 256 * 1024;

/// The language of the explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Chinese (Simplified).
    Zh = 0,
    /// English.
    En = 1,
}

impl Lang {
    /// `zh` or `en`.
    pub fn from_name(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" | "cn" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

/// Who must act on a bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Who {
    /// The person who sent the message.
    Sender,
    /// The person it was sent to.
    Recipient,
    /// The mail administrator of the sender's side.
    SenderAdmin,
    /// The mail administrator of the recipient's side.
    RecipientAdmin,
    /// Nobody yet (a temporary failure: the server retries).
    None,
}

impl Who {
    /// Parses `sender`, `recipient`, `sender-admin`, `recipient-admin`, `none`.
    pub fn from_name(s: &str) -> Option<Who> {
        Some(match s.trim() {
            "sender" => Who::Sender,
            "recipient" => Who::Recipient,
            "sender-admin" => Who::SenderAdmin,
            "recipient-admin" => Who::RecipientAdmin,
            "none" => Who::None,
            _ => return None,
        })
    }

    /// The name used in the knowledge base and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Who::Sender => "sender",
            Who::Recipient => "recipient",
            Who::SenderAdmin => "sender-admin",
            Who::RecipientAdmin => "recipient-admin",
            Who::None => "none",
        }
    }

    /// Who, said in a language.
    pub fn label(self, lang: Lang) -> &'static str {
        match (self, lang) {
            (Who::Sender, Lang::Zh) => "发件人",
            (Who::Sender, Lang::En) => "the sender",
            (Who::Recipient, Lang::Zh) => "收件人",
            (Who::Recipient, Lang::En) => "the recipient",
            (Who::SenderAdmin, Lang::Zh) => "发件方邮件管理员",
            (Who::SenderAdmin, Lang::En) => "the sender's mail administrator",
            (Who::RecipientAdmin, Lang::Zh) => "收件方邮件管理员",
            (Who::RecipientAdmin, Lang::En) => "the recipient's mail administrator",
            (Who::None, Lang::Zh) => "暂时无需操作（服务器会自动重试）",
            (Who::None, Lang::En) => "nobody yet (the server retries)",
        }
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One recipient a bounce reports as failed (or delayed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    /// The recipient's address, when the bounce names it.
    pub address: Option<String>,
    /// `failed`, or `delayed` for a delay warning.
    pub action: String,
    /// The SMTP reply code (`550`), when given.
    pub reply: Option<String>,
    /// The enhanced status code (`5.1.1`), when given.
    pub status: Option<String>,
    /// The server's own words.
    pub diagnostic: String,
    /// The server that refused the message (`Remote-MTA`, `host … said`), when named.
    pub remote_mta: Option<String>,
    /// The knowledge base entry (`unknown-user`), or `status-X.Y.Z` / `status-N`
    /// for a fallback on the status code, or `unknown`.
    pub cause_id: String,
    /// Why it bounced, in the explainer's language.
    pub cause: String,
    /// Who must act.
    pub who: Who,
    /// [`Failed::who`] in the explainer's language.
    pub who_text: String,
    /// What to do, in the explainer's language.
    pub fix: String,
    /// True when a knowledge base entry matched; false for a fallback on the
    /// status code class (the explanation says so).
    pub known: bool,
}

/// What a message says as a bounce.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Explanation {
    /// Is it a bounce (a non-delivery report or delay warning)?
    pub bounce: bool,
    /// The form it was read as: `dsn`, `postfix`, `exim`, `sendmail`, `exchange`,
    /// `qmail`, `chinese-html`, `generic`; empty when not a bounce.
    pub format: String,
    /// The server that wrote the report (`Reporting-MTA`), when named.
    pub reporting_mta: Option<String>,
    /// The bounced message's subject, when the bounce carries it.
    pub original_subject: Option<String>,
    /// The bounced message's date, when the bounce carries it.
    pub original_date: Option<String>,
    /// The recipients it failed for.
    pub recipients: Vec<Failed>,
}

/// Explains bounces with a knowledge base in one language. Cheap to build; holds
/// no per-message state, so one explainer serves any number of threads.
#[derive(Clone)]
pub struct Explainer<'a> {
    kb: &'a KnowledgeBase,
    lang: Lang,
    parser: Parser,
}

/// A failure as read from the bounce, before it is explained.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Raw {
    address: Option<String>,
    action: String,
    reply: Option<String>,
    status: Option<String>,
    diagnostic: String,
    remote_mta: Option<String>,
    /// More of the bounce's text about this recipient, for matching only.
    context: String,
}

/// What was read from a bounce, before it is explained.
#[derive(Debug, Default)]
struct Read {
    format: &'static str,
    reporting_mta: Option<String>,
    subject: Option<String>,
    date: Option<String>,
    failures: Vec<Raw>,
}

impl<'a> Explainer<'a> {
    /// An explainer answering in `lang`.
    pub fn new(kb: &'a KnowledgeBase, lang: Lang) -> Explainer<'a> {
        Explainer {
            kb,
            lang,
            parser: Parser::default(),
        }
    }

    /// The language it answers in.
    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// Explains one message (raw bytes as received). Never fails: a message that
    /// is not a bounce has `bounce: false` and no recipients.
    pub fn explain(&self, raw: &[u8]) -> Explanation {
        let read = self.read(raw);
        let Some(read) = read else {
            return Explanation::default();
        };
        Explanation {
            bounce: true,
            format: read.format.to_string(),
            reporting_mta: read.reporting_mta.as_deref().map(clean),
            original_subject: read.subject.as_deref().map(clean),
            original_date: read.date.as_deref().map(clean),
            recipients: read
                .failures
                .into_iter()
                .take(MAX_RECIPIENTS)
                .map(|r| self.explain_one(r))
                .collect(),
        }
    }

    fn explain_one(&self, r: Raw) -> Failed {
        let lang = self.lang;
        let haystack = if r.context.is_empty() {
            r.diagnostic.clone()
        } else {
            format!("{} {}", r.diagnostic, r.context)
        };
        let found = self
            .kb
            .find(&haystack, r.reply.as_deref(), r.status.as_deref());
        let (cause_id, cause, who, fix, known) = match found {
            Some(c) => (
                c.id.clone(),
                c.cause(lang).to_string(),
                c.who,
                c.fix(lang).to_string(),
                true,
            ),
            None => self.fallback(r.status.as_deref(), r.reply.as_deref()),
        };
        Failed {
            address: r.address.as_deref().map(clean),
            action: r.action,
            reply: r.reply,
            status: r.status,
            diagnostic: clean(&r.diagnostic),
            remote_mta: r.remote_mta.as_deref().map(clean),
            cause_id,
            cause,
            who,
            who_text: who.label(lang).to_string(),
            fix,
            known,
        }
    }

    /// The RFC 3463 meaning of the status code (or of the reply code's class).
    fn fallback(
        &self,
        status: Option<&str>,
        reply: Option<&str>,
    ) -> (String, String, Who, String, bool) {
        let lang = self.lang as usize;
        let status = status
            .map(str::to_string)
            .or_else(|| reply.and_then(|r| r.get(..1)).map(|c| format!("{c}.0.0")));
        let unknown = match self.lang {
            Lang::Zh => "（知识库中没有这种退信，以下按状态码的含义解释）",
            Lang::En => "(not in the knowledge base; explained by the meaning of its status code)",
        };
        let Some(status) = status else {
            let (cause, fix) = match self.lang {
                Lang::Zh => (
                    "退信没有给出状态码，无法判断原因。",
                    "请阅读服务器的原话；仍不明白请联系本方邮件管理员。",
                ),
                Lang::En => (
                    "The bounce gives no status code; the cause cannot be told.",
                    "Read the server's own words; if they do not help, ask your mail administrator.",
                ),
            };
            return (
                "unknown".into(),
                cause.into(),
                Who::Sender,
                fix.into(),
                false,
            );
        };
        let mut parts = status.split('.');
        let class = parts.next().unwrap_or("5");
        let subject = parts.next().unwrap_or("0");
        let detail = parts.next().unwrap_or("0");
        let class_m = self.kb.status(class);
        let subject_m = self.kb.status(&format!("X.{subject}"));
        let detail_m = self.kb.status(&format!("X.{subject}.{detail}"));
        let mut cause = String::new();
        for m in [class_m, detail_m.or(subject_m)].into_iter().flatten() {
            if !cause.is_empty() {
                cause.push(' ');
            }
            cause.push_str(&m.text[lang]);
        }
        cause.push(' ');
        cause.push_str(unknown);
        let mut fix = String::new();
        for m in [class_m, subject_m].into_iter().flatten() {
            if let Some(f) = &m.fix {
                if !fix.is_empty() {
                    fix.push(' ');
                }
                fix.push_str(&f[lang]);
            }
        }
        let who = if class == "4" {
            Who::None
        } else {
            subject_m.and_then(|m| m.who).unwrap_or(Who::Sender)
        };
        let id = if detail_m.is_some() {
            format!("status-{status}")
        } else {
            format!("status-{class}")
        };
        (id, cause, who, fix, false)
    }

    /// Reads the parts of a message; `None` when it is not a bounce.
    fn read(&self, raw: &[u8]) -> Option<Read> {
        let parsed = self.parser.parse(raw);
        let raw = parsed.raw;
        let head_end = crate::text::header_end(raw).0;
        let head = &raw[..head_end];
        let mut texts: Vec<String> = Vec::new();
        let mut html_raw = false;
        let mut dsn_text: Option<String> = None;
        let mut original: Option<Vec<u8>> = None;
        let mut report = false;
        match (&parsed.message, parsed.body_start) {
            (Some(message), None) => {
                let root = message.root_part();
                report = root.content_type().is_some_and(|ct| {
                    ct.c_type.eq_ignore_ascii_case("multipart")
                        && ct
                            .c_subtype
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                });
                let outer = message.raw_message();
                for part in message.parts.iter().take(64) {
                    let body = slice(outer, part.offset_body, part.offset_end);
                    let (ty, sub) = part
                        .content_type()
                        .map(|ct| {
                            (
                                ct.c_type.to_ascii_lowercase(),
                                ct.c_subtype.as_deref().unwrap_or("").to_ascii_lowercase(),
                            )
                        })
                        .unwrap_or_else(|| ("text".into(), "plain".into()));
                    match (ty.as_str(), sub.as_str()) {
                        ("message", "delivery-status" | "global-delivery-status")
                            if dsn_text.is_none() =>
                        {
                            dsn_text = Some(part_text(part, body));
                        }
                        ("message", "rfc822" | "global") | ("text", "rfc822-headers")
                            if original.is_none() =>
                        {
                            let bytes = if matches!(part.body, PartType::Message(_)) {
                                body.to_vec()
                            } else {
                                transfer::decode(body, transfer_encoding(part)).into_owned()
                            };
                            original = Some(bytes);
                        }
                        ("text", "plain" | "html") if texts.len() < 4 => {
                            let text = part_text(part, body);
                            if sub == "html" {
                                html_raw = true;
                                texts.push(html::visible_text(&text));
                            } else {
                                texts.push(text);
                            }
                        }
                        _ => {}
                    }
                }
            }
            (Some(message), Some(start)) => {
                let root = message.root_part();
                let body = &raw[start.min(raw.len())..];
                let text = part_text(root, body);
                let is_html = root.content_type().is_some_and(|ct| {
                    ct.c_subtype
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("html"))
                }) || looks_like_html(&text);
                if is_html {
                    html_raw = true;
                    texts.push(html::visible_text(&text));
                } else {
                    texts.push(text);
                }
            }
            (None, start) => {
                let body = &raw[start.unwrap_or(0).min(raw.len())..];
                texts.push(
                    charset::decode(&body[..body.len().min(MAX_TEXT_BYTES)], None).into_owned(),
                );
            }
        }
        let subject = header_value(head, "subject").unwrap_or_default();
        let from = header_value(head, "from").unwrap_or_default();
        let human = texts.join("\n");

        let mut read = Read::default();
        if let Some(dsn) = &dsn_text {
            let report = dsn::parse(dsn);
            read.reporting_mta = report.reporting_mta;
            read.failures = report.failures;
            read.format = "dsn";
            // Fill gaps (a DSN without Diagnostic-Code) from the human text.
            if read.failures.iter().any(|f| f.diagnostic.is_empty()) {
                let free = text::extract(&human);
                for f in &mut read.failures {
                    if f.diagnostic.is_empty()
                        && let Some(t) = free.failures.iter().find(|t| t.address == f.address)
                    {
                        f.diagnostic = t.diagnostic.clone();
                        f.reply = f.reply.take().or(t.reply.clone());
                        f.remote_mta = f.remote_mta.take().or(t.remote_mta.clone());
                    }
                }
            }
            if read.failures.is_empty() && !report.any_recipient {
                // A delivery-status part with no recipient group: read the text.
                read.format = "";
            } else if read.failures.is_empty() {
                // Delivered, relayed or expanded: a success report, not a bounce.
                return None;
            }
        }
        if read.format.is_empty() {
            let markers = text::is_bounce(&from, &subject, &human) || report;
            if !markers && !html_raw {
                return None;
            }
            let free = text::extract(&human);
            if free.failures.is_empty() || (!markers && free.format != "chinese-html") {
                return None;
            }
            read.format = free.format;
            read.failures = free.failures;
            read.subject = free.subject;
            read.date = free.date;
            read.reporting_mta = read.reporting_mta.or(free.reporting_mta);
        }
        if let Some(orig) = &original {
            let end = crate::text::header_end(orig).0;
            let h = &orig[..end];
            read.subject = header_value(h, "subject").or(read.subject);
            read.date = header_value(h, "date").or(read.date);
        }
        Some(read)
    }
}

/// At most the first `n` bytes of `s`, cut at a character boundary.
fn prefix(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn looks_like_html(text: &str) -> bool {
    let lower = prefix(text, 512).to_ascii_lowercase();
    lower.contains("<html") || lower.contains("<table") || lower.contains("<!doctype html")
}

fn transfer_encoding(part: &MessagePart<'_>) -> transfer::TransferEncoding {
    part.content_transfer_encoding().map_or(
        transfer::TransferEncoding::Identity,
        transfer::TransferEncoding::from_header,
    )
}

/// A part's body as text: transfer encoding undone, charset decoded, bounded.
fn part_text(part: &MessagePart<'_>, body: &[u8]) -> String {
    let bytes = transfer::decode(body, transfer_encoding(part));
    let bytes = &bytes[..bytes.len().min(MAX_TEXT_BYTES)];
    let label = part.content_type().and_then(|ct| ct.attribute("charset"));
    charset::decode(bytes, label).into_owned()
}

/// `raw[start..end]`, clamped: offsets from a parser are not trusted.
fn slice(raw: &[u8], start: u32, end: u32) -> &[u8] {
    let end = (end as usize).min(raw.len());
    let start = (start as usize).min(end);
    &raw[start..end]
}

/// The first header `name` of a header block, unfolded and decoded (RFC 2047).
fn header_value(head: &[u8], name: &str) -> Option<String> {
    let mut lines = head.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        let mut value = line[colon + 1..].to_vec();
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                value.push(b' ');
                value.extend_from_slice(next);
                lines.next();
            } else {
                break;
            }
        }
        let v = header::decode(&value);
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        return (!v.is_empty()).then_some(v);
    }
    None
}

/// The first enhanced status code (`5.1.1`) in a text: class 2, 4 or 5, then two
/// numbers of one to three digits, standing alone.
pub fn parse_status(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], b'2' | b'4' | b'5')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.'))
            && b.get(i + 1) == Some(&b'.')
        {
            let n1 = digits(b, i + 2);
            if (1..=3).contains(&n1) && b.get(i + 2 + n1) == Some(&b'.') {
                let start2 = i + 3 + n1;
                let n2 = digits(b, start2);
                let end = start2 + n2;
                let after_ok = match b.get(end) {
                    None => true,
                    Some(b'.') => !b.get(end + 1).is_some_and(u8::is_ascii_digit),
                    Some(c) => !c.is_ascii_alphanumeric(),
                };
                if (1..=3).contains(&n2) && after_ok {
                    return Some(text[i..end].to_string());
                }
            }
        }
        i += 1;
    }
    None
}

fn digits(b: &[u8], from: usize) -> usize {
    b.get(from..)
        .map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// The SMTP failure reply code (4xx or 5xx) in a text, and where it starts:
/// preferably one followed by an enhanced status code, else the first standing
/// alone (after white space, punctuation such as `#`, `(`, `:`, `'`, a non-ASCII
/// character or the start; before white space, `-` or the end).
pub fn parse_reply(text: &str) -> Option<(usize, String)> {
    let b = text.as_bytes();
    let mut first = None;
    for i in 0..b.len().saturating_sub(2) {
        if !(matches!(b[i], b'4' | b'5') && b[i + 1].is_ascii_digit() && b[i + 2].is_ascii_digit())
        {
            continue;
        }
        if i > 0
            && !matches!(
                b[i - 1],
                b' ' | b'\t' | b'\n' | b'#' | b'(' | b'[' | b':' | b';' | b'"' | b'\''
            )
            && b[i - 1] < 0x80
        {
            continue;
        }
        let rest = &text[i + 3..];
        if !(rest.is_empty() || rest.starts_with([' ', '-', '\r', '\n', '\t'])) {
            continue;
        }
        let code = text[i..i + 3].to_string();
        let next = rest.trim_start_matches([' ', '-']);
        if next.starts_with(|c: char| c == text.as_bytes()[i] as char)
            && parse_status(next).is_some_and(|s| next.starts_with(s.as_str()))
        {
            return Some((i, code));
        }
        if first.is_none() {
            first = Some((i, code));
        }
    }
    first
}

/// A string from a bounce made safe to show: control characters and
/// bidirectional-text controls escaped as `\u{..}`, white space collapsed, at
/// most [`MAX_FIELD_CHARS`] characters.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_FIELD_CHARS * 4));
    let mut count = 0;
    let mut space = false;
    for c in s.trim().chars() {
        if count >= MAX_FIELD_CHARS {
            out.push('…');
            break;
        }
        if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        space = false;
        if c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
        count += 1;
    }
    out
}

#[cfg(test)]
mod tests;
