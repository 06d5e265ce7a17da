//! What a scan returns: the action, the score and the evidence behind them.
//!
//! These types are the engine's whole output; the CLI prints them, the milter turns
//! them into SMTP replies and headers. They are plain data so they serialise as they
//! stand (`--format json`).

use crate::reply::Reply;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// The SMTP envelope of a message: who sends it, to whom, and how they logged in.
///
/// Everything is optional: the offline CLI knows none of it, a milter knows all of
/// it. The block list is checked against `sender`; the allow list against `sender`
/// with proof (`client_addr`, trusted `Authentication-Results` headers), for
/// inbound mail only. An `auth_user` marks the message as outbound (sent by one of
/// the site's own accounts), judged by its account whatever sender it claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The `MAIL FROM` address, without angle brackets. `None` or empty for bounces.
    pub sender: Option<String>,
    /// The `RCPT TO` addresses.
    pub recipients: Vec<String>,
    /// The SMTP AUTH login name, when the client authenticated.
    pub auth_user: Option<String>,
    /// The connecting client's address.
    pub client_addr: Option<IpAddr>,
    /// The MTA's queue id, for logs.
    pub queue_id: Option<String>,
}

impl Envelope {
    /// True when the sender logged in: the message leaves the site (outbound).
    pub fn is_outbound(&self) -> bool {
        self.auth_user.as_deref().is_some_and(|u| !u.is_empty())
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Pass the message on.
    Deliver,
    /// Hold the message for an admin to look at (Postfix's hold queue).
    Quarantine,
    /// Refuse the message with an SMTP reply (`557 5.7.1 forbid to send spam mail`).
    Reject,
}

impl Action {
    /// Reads `deliver`, `quarantine` or `reject`.
    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "deliver" => Some(Action::Deliver),
            "quarantine" => Some(Action::Quarantine),
            "reject" => Some(Action::Reject),
            _ => None,
        }
    }

    /// The lowercase name used in output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the message a piece of text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TextSource {
    /// The decoded `Subject:` header.
    Subject,
    /// A `text/plain` part.
    Text,
    /// A `text/html` part, reduced to its visible text.
    Html,
}

/// One place where a keyword was found, shown in the decoded (not normalised) text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Location {
    /// Which text the hit is in.
    pub source: TextSource,
    /// Index of the text part among the message's text parts (0 for the subject).
    pub part: usize,
    /// Byte offset of the hit in that decoded text.
    pub offset: usize,
    /// The hit's length in that decoded text, in bytes (with any evasion: `免 费`
    /// is 7), so a viewer can mark it.
    pub len: usize,
    /// The hit as it stands in the decoded text, with any evasion still in it
    /// (`免 费`, `ｆｒｅｅ`), and a little context either side.
    pub excerpt: String,
}

/// A keyword found in the message, with all its occurrences folded together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The keyword as written in its list.
    pub keyword: String,
    /// The category (the list's file name: `free`, `adult`, `money`, …).
    pub category: String,
    /// The keyword's weight.
    pub weight: f64,
    /// How many times it occurs as a word.
    pub count: u32,
    /// What it added to the score, after diminishing returns and category caps.
    pub contribution: f64,
    /// The first few occurrences.
    #[serde(rename = "where")]
    pub locations: Vec<Location>,
}

/// Why a message got its action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The score was compared with the thresholds.
    Score {
        /// The quarantine threshold in force.
        quarantine: f64,
        /// The reject (auto-delete) threshold in force.
        reject: f64,
    },
    /// The sender matched an allow-list entry and proved it: the message was
    /// scanned (its score and hits are real) but is never refused.
    AllowListed {
        /// The entry's sender pattern that matched.
        entry: String,
        /// What proved the sender.
        proof: AllowProof,
    },
    /// The sender matched a block-list entry.
    BlockListed {
        /// The entry that matched.
        entry: String,
    },
    /// The message is larger than the configured maximum.
    Oversize {
        /// The message's size in bytes; with `size_unknown`, only the bytes read.
        size: usize,
        /// The configured maximum.
        limit: usize,
        /// The size was not measured: reading stopped past the limit (a stream, a
        /// device), so the message has more than `limit` bytes. Omitted from JSON
        /// when false.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        size_unknown: bool,
    },
    /// The scan failed (a bug: a stage panicked); the action is the configured
    /// `[limits] on_error`.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Score { quarantine, reject } => {
                write!(
                    f,
                    "score against thresholds quarantine {quarantine}, reject {reject}"
                )
            }
            Reason::AllowListed { entry, proof } => {
                write!(f, "sender allow-listed by `{entry}` (proof: {proof})")
            }
            Reason::BlockListed { entry } => write!(f, "sender block-listed by `{entry}`"),
            Reason::Oversize {
                limit,
                size_unknown: true,
                ..
            } => {
                write!(
                    f,
                    "message of more than {limit} bytes exceeds the limit of {limit}"
                )
            }
            Reason::Oversize { size, limit, .. } => {
                write!(f, "message of {size} bytes exceeds the limit of {limit}")
            }
            Reason::Failed { error } => write!(f, "scan failed ({error}): on_error action"),
        }
    }
}

/// What proved an allow-listed sender ([`Reason::AllowListed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AllowProof {
    /// The client's address is in one of the entry's networks.
    Network,
    /// A trusted `Authentication-Results` header reports `dkim=pass` for the
    /// sender's domain.
    Dkim,
    /// A trusted `Authentication-Results` header reports `spf=pass` for the
    /// envelope sender.
    Spf,
    /// A trusted `Authentication-Results` header reports `dmarc=pass` for the
    /// sender's domain.
    Dmarc,
    /// None: `[senders] allow_unverified` is on and the envelope sender matched.
    Unverified,
    /// The sender authenticated (SMTP AUTH) as the account whose own allow list
    /// (a service's per-account policy) matched every recipient.
    Login,
}

impl AllowProof {
    /// The lowercase name used in output and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            AllowProof::Network => "network",
            AllowProof::Dkim => "dkim",
            AllowProof::Spf => "spf",
            AllowProof::Dmarc => "dmarc",
            AllowProof::Unverified => "unverified",
            AllowProof::Login => "login",
        }
    }
}

impl fmt::Display for AllowProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token that weighed in a verdict, for explanations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenWeight {
    /// The token (`发票`, `subject:免费`, `from-domain:example.com`…).
    pub token: String,
    /// What it added to the score, in points (negative: towards ham).
    pub weight: f64,
}

/// The outcome of scanning one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// What to do with the message.
    pub action: Action,
    /// The total score (0 when the score was not computed: oversize or
    /// block-listed mail; allow-listed mail is scored).
    pub score: f64,
    /// The SMTP reply for a reject, e.g. `557 5.7.1 forbid to send spam mail`.
    pub reply: Option<Reply>,
    /// Why the action was chosen.
    pub reason: Reason,
    /// The keywords found, strongest contribution first.
    pub hits: Vec<Hit>,
    /// With a trained model: the tokens that weighed most, spam-wards (positive
    /// weights, strongest first) then ham-wards (negative).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenWeight>,
    /// Some of the message's text was not scanned: it had more than
    /// `decode::MAX_TEXT_BYTES` (1 MiB) of visible text, or more than
    /// `decode::MAX_PARTS` (64) text parts. Omitted from JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}
