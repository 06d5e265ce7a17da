//! Delivering a released message by SMTP to the relay (by default the local
//! Postfix), with its original envelope: `MAIL FROM` the original sender (the
//! null sender `<>` included), `RCPT TO` each original recipient.
//!
//! The SMTP client is lettre's `SmtpConnection` (connection, EHLO, reply
//! parsing, dot stuffing), driven one command at a time so that every
//! recipient's answer is seen: lettre's own `send` stops at the first refused
//! recipient. No TLS: the relay is the MTA on the same host or network, which
//! is where a released message goes back into the mail flow; a relay elsewhere
//! should be reached through a local MTA.
//!
//! Every step has a time limit ([`RelayTimeouts`]): connecting (greeting and
//! EHLO included), each command, and the end of the message, which waits for the
//! relay's milters (chaff among them) and its queue write.
//!
//! What happened is a [`RelayOutcome`], which tells whether the message may have
//! been taken: nothing was taken when it is `Rejected` or `TemporaryFailure`;
//! it was taken (for the recipients marked accepted) when `Delivered`; and when
//! the connection failed after the end of the message was sent but before the
//! relay answered, nobody can tell: `InDoubt`.

use lettre::transport::smtp::client::SmtpConnection;
use lettre::transport::smtp::extension::{ClientId, Extension};
use std::borrow::Cow;
use std::error::Error as _;
use std::fmt;
use std::time::Duration;

/// The relay used when none is configured: Postfix on this host.
pub const DEFAULT_RELAY: &str = "127.0.0.1:25";

/// Most recipients of one message (the milter keeps at most as many, and it is
/// Postfix's default `smtpd_recipient_limit`).
pub const MAX_RECIPIENTS: usize = 1000;

/// Longest envelope address, in bytes (RFC 5321's path limit is 256; some MTAs
/// accept longer ones, so a little room).
pub const MAX_ADDRESS_LEN: usize = 512;

/// Time limits of a delivery, each on one wait of the socket (a connect, a
/// write, a read), as RFC 5321 sets its client timeouts: a relay that keeps
/// answering is not cut off, one that goes quiet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayTimeouts {
    /// To connect, and for the greeting and the EHLO answer (default 10 s).
    pub connect: Duration,
    /// For sending each command and reading its answer: MAIL, RCPT, DATA
    /// (default 60 s).
    pub command: Duration,
    /// For each write of the message content and for the answer to its end,
    /// which waits for the relay's milters and its queue write (default 10 min,
    /// RFC 5321's "DATA termination" time).
    pub data: Duration,
}

impl Default for RelayTimeouts {
    fn default() -> Self {
        RelayTimeouts {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(60),
            data: Duration::from_secs(600),
        }
    }
}

/// Where and how to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// `HOST:PORT` of the relay.
    pub address: String,
    /// The name given in EHLO (default: this host's name).
    pub helo: String,
    /// Time limits.
    pub timeouts: RelayTimeouts,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            address: DEFAULT_RELAY.into(),
            helo: hostname(),
            timeouts: RelayTimeouts::default(),
        }
    }
}

impl Relay {
    /// The relay at `address` (`HOST:PORT`), EHLO with this host's name, default
    /// time limits.
    pub fn at(address: impl Into<String>) -> Relay {
        Relay {
            address: address.into(),
            ..Relay::default()
        }
    }
}

/// This host's name for EHLO, or `localhost` when it has none usable.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length; gethostname writes at most
    // that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).into_owned();
    let usable = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    if rc == 0 && usable {
        name
    } else {
        "localhost".into()
    }
}

/// An SMTP reply: its code and text (lines joined with spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    /// The three-digit code.
    pub code: u16,
    /// The text after the code, with the enhanced status code if any.
    pub text: String,
}

impl SmtpReply {
    /// A 5xx reply: retrying the same will not help.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// The SMTP step the relay answered (or failed) at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting, the greeting or EHLO.
    Connect,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO` (every recipient refused).
    Rcpt,
    /// `DATA`.
    Data,
    /// The end of the message content.
    Message,
}

impl Stage {
    /// The lowercase name, for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Message => "message",
        }
    }
}

/// One recipient's answer to `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// The recipient, as given.
    pub recipient: String,
    /// Whether the relay accepted it.
    pub accepted: bool,
    /// The relay's reply.
    pub reply: SmtpReply,
}

/// What the relay did with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Taken, for the recipients marked accepted in `recipients` (some may have
    /// been refused: see [`RelayOutcome::refused`]).
    Delivered {
        /// The reply to the end of the message (`250 2.0.0 Ok: queued as …`).
        reply: SmtpReply,
        /// The relay's queue id, when its reply names one (Postfix does).
        queue_id: Option<String>,
        /// Each recipient's answer.
        recipients: Vec<RecipientResult>,
    },
    /// Refused with a 5xx (every recipient refused, at least one with a 5xx
    /// and none with a 4xx, counts as that): not taken, and sending it again as
    /// it is will not help.
    Rejected {
        /// Where.
        stage: Stage,
        /// The refusal.
        reply: SmtpReply,
        /// Each recipient's answer, as far as they were given.
        recipients: Vec<RecipientResult>,
    },
    /// Not taken, for now: a 4xx, or the relay could not be reached or the
    /// connection failed before the end of the message was sent. It can be
    /// tried again.
    TemporaryFailure {
        /// Where.
        stage: Stage,
        /// The 4xx reply, when the relay gave one.
        reply: Option<SmtpReply>,
        /// What failed (the reply, or the connection error).
        reason: String,
        /// Each recipient's answer, as far as they were given.
        recipients: Vec<RecipientResult>,
    },
    /// The end of the message was sent but its answer never came (the connection
    /// broke or timed out): the relay may or may not have taken it. Sending it
    /// again could deliver it twice; someone must look (the relay's log).
    InDoubt {
        /// What failed.
        reason: String,
        /// Each recipient's answer.
        recipients: Vec<RecipientResult>,
    },
}

impl RelayOutcome {
    /// Each recipient's answer, as far as they were given.
    pub fn recipients(&self) -> &[RecipientResult] {
        match self {
            RelayOutcome::Delivered { recipients, .. }
            | RelayOutcome::Rejected { recipients, .. }
            | RelayOutcome::TemporaryFailure { recipients, .. }
            | RelayOutcome::InDoubt { recipients, .. } => recipients,
        }
    }

    /// The recipients the relay refused.
    pub fn refused(&self) -> impl Iterator<Item = &RecipientResult> {
        self.recipients().iter().filter(|r| !r.accepted)
    }
}

impl fmt::Display for RelayOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayOutcome::Delivered { reply, .. } => write!(f, "delivered: {reply}")?,
            RelayOutcome::Rejected { stage, reply, .. } => {
                write!(f, "rejected at {}: {reply}", stage.as_str())?;
            }
            RelayOutcome::TemporaryFailure { stage, reason, .. } => {
                write!(f, "temporary failure at {}: {reason}", stage.as_str())?;
            }
            RelayOutcome::InDoubt { reason, .. } => {
                write!(
                    f,
                    "in doubt (no answer to the end of the message): {reason}"
                )?;
            }
        }
        let refused: Vec<String> = self
            .refused()
            .map(|r| format!("{} ({})", r.recipient, r.reply))
            .collect();
        if !refused.is_empty() {
            write!(f, "; refused: {}", refused.join(", "))?;
        }
        Ok(())
    }
}

/// The envelope or message cannot be sent (nothing was attempted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// No recipient.
    #[error("no recipient to deliver to")]
    NoRecipients,
    /// More than [`MAX_RECIPIENTS`].
    #[error("{0} recipients, more than {MAX_RECIPIENTS}")]
    TooManyRecipients(usize),
    /// An address that cannot go in an SMTP command.
    #[error("envelope address {address:?} cannot be sent: {why}")]
    BadAddress {
        /// The address.
        address: String,
        /// Why.
        why: &'static str,
    },
}

/// Checks an envelope address for an SMTP command: not empty, not too long, no
/// control characters, no angle brackets.
fn check_address(address: &str) -> Result<(), RelayError> {
    let bad = |why| {
        Err(RelayError::BadAddress {
            address: address.chars().take(100).collect(),
            why,
        })
    };
    if address.is_empty() {
        return bad("empty");
    }
    if address.len() > MAX_ADDRESS_LEN {
        return bad("too long");
    }
    if address.chars().any(|c| c.is_control()) {
        return bad("control characters");
    }
    if address.contains(['<', '>']) {
        return bad("angle brackets");
    }
    Ok(())
}

/// The message with every line ending CRLF (bare LF becomes CRLF), as SMTP
/// requires and Postfix may insist on (`smtpd_forbid_bare_newline`).
fn crlf(message: &[u8]) -> Cow<'_, [u8]> {
    let bare = message
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || message[i - 1] != b'\r'));
    if !bare {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    Cow::Owned(out)
}

/// The queue id in a reply like Postfix's `2.0.0 Ok: queued as 4Q2x7B0cZ4z8`.
fn queue_id(text: &str) -> Option<String> {
    let id = text.split("queued as ").nth(1)?.split_whitespace().next()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| id.to_string())
}

/// One SMTP command line, written as it is.
struct Line(String);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type SmtpError = lettre::transport::smtp::Error;

/// The reply carried by a lettre error (a negative answer), if it is one.
fn reply_of(e: &SmtpError) -> Option<SmtpReply> {
    let code = u16::from(e.status()?);
    let text = e.source().map(|s| s.to_string()).unwrap_or_default();
    Some(SmtpReply { code, text })
}

fn reply_from(r: &lettre::transport::smtp::response::Response) -> SmtpReply {
    SmtpReply {
        code: u16::from(r.code()),
        text: r.message().collect::<Vec<_>>().join(" "),
    }
}

/// The outcome for a failure at `stage` before the end of the message was
/// sent: a 5xx rejects, anything else is temporary.
fn failed(stage: Stage, e: &SmtpError, recipients: Vec<RecipientResult>) -> RelayOutcome {
    match reply_of(e) {
        Some(reply) if reply.is_permanent() => RelayOutcome::Rejected {
            stage,
            reply,
            recipients,
        },
        reply => RelayOutcome::TemporaryFailure {
            stage,
            reason: reply
                .as_ref()
                .map_or_else(|| e.to_string(), ToString::to_string),
            reply,
            recipients,
        },
    }
}

/// The outcome when every recipient was refused: rejected when no refusal is
/// temporary (4xx), else a temporary failure.
fn all_refused(recipients: Vec<RecipientResult>) -> RelayOutcome {
    let temporary = recipients.iter().find(|r| !r.reply.is_permanent());
    match temporary {
        None => RelayOutcome::Rejected {
            stage: Stage::Rcpt,
            reply: recipients
                .first()
                .map(|r| r.reply.clone())
                .unwrap_or_else(|| SmtpReply {
                    code: 554,
                    text: "no recipient".into(),
                }),
            recipients,
        },
        Some(t) => RelayOutcome::TemporaryFailure {
            stage: Stage::Rcpt,
            reply: Some(t.reply.clone()),
            reason: format!("every recipient refused; {}: {}", t.recipient, t.reply),
            recipients,
        },
    }
}

/// Sends `message` (the whole message, headers and body, as it is to arrive) to
/// the relay from `sender` (`None`: the null sender) to `recipients`.
///
/// Blocking, for at most the [time limits](RelayTimeouts) of each step: call it
/// from a thread that may block (in async code, `spawn_blocking`).
pub fn send(
    relay: &Relay,
    sender: Option<&str>,
    recipients: &[String],
    message: &[u8],
) -> Result<RelayOutcome, RelayError> {
    if recipients.is_empty() {
        return Err(RelayError::NoRecipients);
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(RelayError::TooManyRecipients(recipients.len()));
    }
    let sender = sender.filter(|s| !s.is_empty());
    if let Some(s) = sender {
        check_address(s)?;
    }
    for r in recipients {
        check_address(r)?;
    }
    let content = crlf(message);
    // lettre ends the content with CRLF.CRLF: a final CRLF of the message's own
    // would add a blank line.
    let content = content.strip_suffix(b"\r\n").unwrap_or(&content);
    let t = &relay.timeouts;
    let hello = ClientId::Domain(relay.helo.clone());
    let mut conn = match SmtpConnection::connect(
        relay.address.as_str(),
        Some(t.connect),
        &hello,
        None,
        None,
    ) {
        Ok(c) => c,
        Err(e) => return Ok(failed(Stage::Connect, &e, Vec::new())),
    };
    let outcome = transaction(&mut conn, t, sender, recipients, content);
    // Best effort: the outcome is known whatever QUIT gets.
    let _ = conn.set_timeout(Some(t.command));
    conn.abort();
    Ok(outcome)
}

/// MAIL, RCPT for each recipient, DATA and the content, on a connection that
/// has said EHLO.
fn transaction(
    conn: &mut SmtpConnection,
    t: &RelayTimeouts,
    sender: Option<&str>,
    recipients: &[String],
    content: &[u8],
) -> RelayOutcome {
    if let Err(e) = conn.set_timeout(Some(t.command)) {
        return RelayOutcome::TemporaryFailure {
            stage: Stage::Connect,
            reply: None,
            reason: e.to_string(),
            recipients: Vec::new(),
        };
    }
    let info = conn.server_info();
    let mut params = String::new();
    if !content.is_ascii() && info.supports_feature(Extension::EightBitMime) {
        params.push_str(" BODY=8BITMIME");
    }
    let utf8_addresses =
        !sender.is_none_or(str::is_ascii) || recipients.iter().any(|r| !r.is_ascii());
    if utf8_addresses && info.supports_feature(Extension::SmtpUtfEight) {
        params.push_str(" SMTPUTF8");
    }
    let mail = format!("MAIL FROM:<{}>{params}\r\n", sender.unwrap_or(""));
    if let Err(e) = conn.command(Line(mail)) {
        return failed(Stage::Mail, &e, Vec::new());
    }
    let mut results = Vec::with_capacity(recipients.len());
    for r in recipients {
        match conn.command(Line(format!("RCPT TO:<{r}>\r\n"))) {
            Ok(reply) => results.push(RecipientResult {
                recipient: r.clone(),
                accepted: true,
                reply: reply_from(&reply),
            }),
            Err(e) => match reply_of(&e) {
                Some(reply) => results.push(RecipientResult {
                    recipient: r.clone(),
                    accepted: false,
                    reply,
                }),
                None => return failed(Stage::Rcpt, &e, results),
            },
        }
    }
    if !results.iter().any(|r| r.accepted) {
        return all_refused(results);
    }
    if let Err(e) = conn.command(Line("DATA\r\n".into())) {
        return failed(Stage::Data, &e, results);
    }
    if let Err(e) = conn.set_timeout(Some(t.data)) {
        return failed_io(Stage::Data, &e, results);
    }
    match conn.message(content) {
        Ok(reply) => {
            let reply = reply_from(&reply);
            RelayOutcome::Delivered {
                queue_id: queue_id(&reply.text),
                reply,
                recipients: results,
            }
        }
        Err(e) => match reply_of(&e) {
            Some(_) => failed(Stage::Message, &e, results),
            // Written, but no answer read: taken or not, nobody can tell.
            None => RelayOutcome::InDoubt {
                reason: e.to_string(),
                recipients: results,
            },
        },
    }
}

fn failed_io(stage: Stage, e: &std::io::Error, recipients: Vec<RecipientResult>) -> RelayOutcome {
    RelayOutcome::TemporaryFailure {
        stage,
        reply: None,
        reason: e.to_string(),
        recipients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_become_crlf_once() {
        assert_eq!(&*crlf(b"a\r\nb\r\n"), b"a\r\nb\r\n");
        assert!(matches!(crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*crlf(b"a\nb\r\n\nc"), b"a\r\nb\r\n\r\nc");
        assert_eq!(&*crlf(b"\n"), b"\r\n");
        assert_eq!(&*crlf(b"a\rb"), b"a\rb");
    }

    #[test]
    fn addresses_that_cannot_be_sent_are_refused_before_connecting() {
        let relay = Relay::at("127.0.0.1:1");
        let rcpt = |r: &str| vec![r.to_string()];
        for (r, why) in [
            ("a@b>\r\nRCPT TO:<c@d", "control characters"),
            ("a>b@c", "angle brackets"),
            ("", "empty"),
        ] {
            assert_eq!(
                send(&relay, None, &rcpt(r), b"x"),
                Err(RelayError::BadAddress {
                    address: r.into(),
                    why
                })
            );
        }
        assert!(matches!(
            send(&relay, Some(&"a".repeat(600)), &rcpt("x@y"), b"x"),
            Err(RelayError::BadAddress {
                why: "too long",
                ..
            })
        ));
        assert_eq!(send(&relay, None, &[], b"x"), Err(RelayError::NoRecipients));
        let many = vec!["a@b".to_string(); MAX_RECIPIENTS + 1];
        assert_eq!(
            send(&relay, None, &many, b"x"),
            Err(RelayError::TooManyRecipients(MAX_RECIPIENTS + 1))
        );
    }

    #[test]
    fn an_unreachable_relay_is_a_temporary_failure_at_connect() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = send(
            &Relay::at(format!("127.0.0.1:{port}")),
            None,
            &["a@example.org".into()],
            b"x",
        )
        .unwrap();
        assert!(
            matches!(
                out,
                RelayOutcome::TemporaryFailure {
                    stage: Stage::Connect,
                    reply: None,
                    ..
                }
            ),
            "{out:?}"
        );
    }

    #[test]
    fn queue_ids_are_read_from_postfix_replies() {
        assert_eq!(
            queue_id("2.0.0 Ok: queued as 4Q2x7B0cZ4z8").as_deref(),
            Some("4Q2x7B0cZ4z8")
        );
        assert_eq!(queue_id("2.0.0 Ok"), None);
        assert_eq!(queue_id("queued as <x>"), None);
    }

    fn refused(code: u16) -> RecipientResult {
        RecipientResult {
            recipient: format!("r{code}@example.org"),
            accepted: false,
            reply: SmtpReply {
                code,
                text: "no".into(),
            },
        }
    }

    #[test]
    fn every_recipient_refused_is_permanent_only_without_a_4xx() {
        let out = all_refused(vec![refused(550), refused(554)]);
        assert!(
            matches!(&out, RelayOutcome::Rejected { stage: Stage::Rcpt, reply, .. } if reply.code == 550),
            "{out:?}"
        );
        let out = all_refused(vec![refused(550), refused(450)]);
        assert!(
            matches!(&out, RelayOutcome::TemporaryFailure { stage: Stage::Rcpt, reply: Some(r), .. } if r.code == 450),
            "{out:?}"
        );
        assert_eq!(out.refused().count(), 2);
        assert!(
            out.to_string().contains("r550@example.org (550 no)"),
            "{out}"
        );
    }
}
