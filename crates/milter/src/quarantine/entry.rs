//! What a quarantine entry holds: the envelope, the verdict, what the MTA was
//! told, the message (compressed) and the entry's state.
//!
//! An entry is stored in three rows under its id: the [`Summary`] (what the list
//! shows and filters on, small), the [`Detail`] (the whole verdict and the rest of
//! the envelope) and the compressed message. Times are seconds since the UNIX
//! epoch unless a name says otherwise.

use super::id::EntryId;
use chaff::{Verdict, decode};
use serde::{Deserialize, Serialize};

/// Longest subject kept, in characters (a longer one is cut, with `…`).
pub const MAX_SUBJECT_CHARS: usize = 256;
/// Most header bytes searched for the subject.
const MAX_HEADER_SEARCH: usize = 64 * 1024;
/// zstd level for stored messages: level 3 compressed trec06c messages to about
/// a third at some 250 MB/s on this machine's kind; higher levels gained a few per
/// cent for several times the CPU on the answer path.
pub const COMPRESSION_LEVEL: i32 = 3;

/// The SMTP envelope and connection of a kept message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEnvelope {
    /// `MAIL FROM`, without angle brackets; empty for the null sender.
    pub sender: String,
    /// `RCPT TO` addresses, as the MTA passed them (at most the session's 1,000).
    pub recipients: Vec<String>,
    /// The connecting client's address.
    pub client_addr: Option<String>,
    /// The client's host name as the MTA resolved it.
    pub client_name: Option<String>,
    /// The HELO/EHLO name the client gave.
    pub helo: Option<String>,
    /// The SMTP AUTH login, when the client authenticated.
    pub auth_user: Option<String>,
    /// The MTA's queue id (in `hold` mode, the id of the held queue file).
    pub queue_id: Option<String>,
}

/// What the MTA was told about the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Told {
    /// QUARANTINE: the message waits on the MTA's hold queue (`[quarantine] mode
    /// = "hold"`); released there with `postsuper -H`.
    Hold,
    /// DISCARD: the store keeps the only copy (`mode = "store"`); released by SMTP.
    Discard,
    /// The reject reply (`keep_rejected`): the sender was refused; a release
    /// delivers the kept copy by SMTP.
    Reject,
}

impl Told {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Told::Hold => "hold",
            Told::Discard => "discard",
            Told::Reject => "reject",
        }
    }
}

/// Where an entry stands.
///
/// ```text
/// Held ──begin_release──▶ Releasing ──finish_release──▶ Released
///  ▲                          │ (marked in doubt by mark_in_doubt, or older than
///  │                          │  RELEASE_IN_DOUBT_AFTER: in doubt; begin_release
///  └──────abandon_release─────┘  with force starts a new attempt)
/// Held, Released, in-doubt Releasing ──delete──▶ Deleted (the message is dropped)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Kept, waiting for an admin.
    Held,
    /// A release is under way (or was, when the process doing it died: see
    /// [`EntryState::in_doubt`]).
    Releasing {
        /// Who asked.
        by: String,
        /// When it started.
        at: u64,
        /// The attempt's number, so an old attempt cannot finish a newer one.
        attempt: u64,
        /// Why the attempt is in doubt, when its delivery said so at once (the
        /// relay's answer to the message was lost, the held file could not be
        /// found afterwards): [`StateStore::mark_in_doubt`](super::StateStore::mark_in_doubt).
        /// Absent in records written before it existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doubt: Option<String>,
    },
    /// Delivered again.
    Released {
        /// Who asked.
        by: String,
        /// When it was delivered.
        at: u64,
        /// How: the relay's reply, or the `postsuper` command.
        how: String,
    },
    /// Deleted by an admin; the message is gone, the record stays until retention.
    Deleted {
        /// Who.
        by: String,
        /// When.
        at: u64,
    },
}

/// A release still "releasing" this long after it started is in doubt: the
/// process doing it died, or its delivery hung beyond every SMTP time limit it
/// uses (the release must give up well before this). Nothing re-sends it
/// silently: an admin checks the recipient's mailbox and the MTA's log, then
/// forces a new attempt or marks it done. Ten minutes is the RFC 5321 time limit
/// for the end of DATA, the longest step of an SMTP delivery.
pub const RELEASE_IN_DOUBT_AFTER: u64 = 600;

impl EntryState {
    /// The state's name: `held`, `releasing`, `in_doubt`, `released`, `deleted`.
    pub fn name(&self, now: u64) -> &'static str {
        match self {
            EntryState::Held => "held",
            EntryState::Releasing { .. } if self.in_doubt(now) => "in_doubt",
            EntryState::Releasing { .. } => "releasing",
            EntryState::Released { .. } => "released",
            EntryState::Deleted { .. } => "deleted",
        }
    }

    /// True when the entry may be deleted at `now`: held, released, or a
    /// release in doubt (not one under way, nor one deleted already).
    pub fn can_delete(&self, now: u64) -> bool {
        match self {
            EntryState::Held | EntryState::Released { .. } => true,
            EntryState::Releasing { .. } => self.in_doubt(now),
            EntryState::Deleted { .. } => false,
        }
    }

    /// True for a release whose delivery was marked in doubt, or that started
    /// [`RELEASE_IN_DOUBT_AFTER`] or more before `now` and never finished.
    pub fn in_doubt(&self, now: u64) -> bool {
        matches!(self, EntryState::Releasing { at, doubt, .. }
            if doubt.is_some() || now.saturating_sub(*at) >= RELEASE_IN_DOUBT_AFTER)
    }
}

/// What the list shows of an entry and filters on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The id.
    pub id: EntryId,
    /// When it was kept.
    pub time: u64,
    /// The host whose service kept it (the MTA's host, where `postsuper` runs).
    pub host: String,
    /// `MAIL FROM` (empty: the null sender).
    pub sender: String,
    /// `RCPT TO` addresses.
    pub recipients: Vec<String>,
    /// The decoded subject (at most [`MAX_SUBJECT_CHARS`]).
    pub subject: String,
    /// The score.
    pub score: f64,
    /// The verdict's action (`quarantine`, `reject`).
    pub action: String,
    /// What the MTA was told.
    pub told: Told,
    /// The message's size, in bytes.
    pub size: u64,
    /// What the compressed message takes in the store, in bytes (0 once deleted).
    pub stored_bytes: u64,
    /// The MTA's queue id.
    pub queue_id: Option<String>,
    /// The SMTP AUTH login, if any.
    pub auth_user: Option<String>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// Where the entry stands.
    pub state: EntryState,
}

/// A keyword hit as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHit {
    /// The keyword as written in its list.
    pub keyword: String,
    /// Its category.
    pub category: String,
    /// Its weight.
    pub weight: f64,
    /// How many times it occurs.
    pub count: u32,
    /// What it added to the score.
    pub contribution: f64,
    /// Its first occurrences.
    pub locations: Vec<StoredLocation>,
}

/// Where a hit was found, as [`chaff::Location`] says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLocation {
    /// `subject`, `text` or `html`.
    pub source: String,
    /// Which text part (0 for the subject).
    pub part: usize,
    /// Byte offset in the decoded text.
    pub offset: usize,
    /// Byte length in the decoded text.
    pub len: usize,
    /// The hit in context.
    pub excerpt: String,
}

/// A classifier token and what it added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The token.
    pub token: String,
    /// Its points (positive: spam-wards).
    pub weight: f64,
}

/// The verdict as kept: everything [`chaff::Verdict`] exposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVerdict {
    /// `deliver`, `quarantine` or `reject`.
    pub action: String,
    /// The score.
    pub score: f64,
    /// The SMTP reply, for a reject.
    pub reply: Option<String>,
    /// The reason in words.
    pub reason: String,
    /// The reason as data (`{"kind": "score", "quarantine": 9.0, "reject": 15.0}`).
    pub reason_data: serde_json::Value,
    /// The keyword hits, strongest first.
    pub hits: Vec<StoredHit>,
    /// The classifier's strongest tokens each way.
    pub tokens: Vec<StoredToken>,
    /// Some text was not scanned.
    pub truncated: bool,
}

impl StoredVerdict {
    /// The kept form of `v`.
    pub fn of(v: &Verdict) -> StoredVerdict {
        let source = |s: chaff::TextSource| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        StoredVerdict {
            action: v.action.as_str().to_string(),
            score: v.score,
            reply: v.reply.as_ref().map(|r| r.as_str().to_string()),
            reason: v.reason.to_string(),
            reason_data: serde_json::to_value(&v.reason).unwrap_or(serde_json::Value::Null),
            hits: v
                .hits
                .iter()
                .map(|h| StoredHit {
                    keyword: h.keyword.clone(),
                    category: h.category.clone(),
                    weight: h.weight,
                    count: h.count,
                    contribution: h.contribution,
                    locations: h
                        .locations
                        .iter()
                        .map(|l| StoredLocation {
                            source: source(l.source),
                            part: l.part,
                            offset: l.offset,
                            len: l.len,
                            excerpt: l.excerpt.clone(),
                        })
                        .collect(),
                })
                .collect(),
            tokens: v
                .tokens
                .iter()
                .map(|t| StoredToken {
                    token: t.token.clone(),
                    weight: t.weight,
                })
                .collect(),
            truncated: v.truncated,
        }
    }

    /// The strongest `n` hits as `keyword*count` words.
    pub fn top_hits(&self, n: usize) -> Vec<(String, u32)> {
        self.hits
            .iter()
            .take(n)
            .map(|h| (h.keyword.clone(), h.count))
            .collect()
    }
}

/// The rest of an entry: the whole verdict and envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The envelope and connection.
    pub envelope: StoredEnvelope,
    /// The verdict.
    pub verdict: StoredVerdict,
}

/// One whole entry, without its message ([`super::StateStore::message`] reads that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// What the list shows.
    #[serde(flatten)]
    pub summary: Summary,
    /// The envelope and the verdict.
    #[serde(flatten)]
    pub detail: Detail,
}

/// A message to keep, ready for the store: everything but its id, the message
/// already compressed (so the work is done on the scanning thread, not on the
/// store's writer).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// When it was decided, in milliseconds since the UNIX epoch.
    pub time_ms: u64,
    /// This host's name.
    pub host: String,
    /// The envelope.
    pub envelope: StoredEnvelope,
    /// The decoded subject.
    pub subject: String,
    /// The verdict.
    pub verdict: StoredVerdict,
    /// What the MTA is told.
    pub told: Told,
    /// The message's size.
    pub size: u64,
    /// The message, zstd-compressed.
    pub compressed: Vec<u8>,
}

impl NewEntry {
    /// Builds the entry for `raw` (compressing it) decided at `time_ms`.
    pub fn new(
        time_ms: u64,
        host: &str,
        envelope: StoredEnvelope,
        verdict: &Verdict,
        told: Told,
        raw: &[u8],
    ) -> std::io::Result<NewEntry> {
        Ok(NewEntry {
            time_ms,
            host: host.to_string(),
            envelope,
            subject: subject_of(raw),
            verdict: StoredVerdict::of(verdict),
            told,
            size: raw.len() as u64,
            compressed: compress(raw)?,
        })
    }

    /// The summary row for this entry under `id`.
    pub(super) fn summary(&self, id: EntryId) -> Summary {
        Summary {
            id,
            time: self.time_ms / 1000,
            host: self.host.clone(),
            sender: self.envelope.sender.clone(),
            recipients: self.envelope.recipients.clone(),
            subject: self.subject.clone(),
            score: self.verdict.score,
            action: self.verdict.action.clone(),
            told: self.told,
            size: self.size,
            stored_bytes: self.compressed.len() as u64,
            queue_id: self.envelope.queue_id.clone(),
            auth_user: self.envelope.auth_user.clone(),
            client_addr: self.envelope.client_addr.clone(),
            state: EntryState::Held,
        }
    }

    /// The detail row.
    pub(super) fn detail(&self) -> Detail {
        Detail {
            envelope: self.envelope.clone(),
            verdict: self.verdict.clone(),
        }
    }
}

/// Compresses a message for the store.
pub fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    // One compression context per thread, reused: making one per message cost
    // 20 µs for a 3 KB message against 11.5 µs reused (`cargo bench -p
    // chaff-milter --bench state_write`), at a context of about a megabyte per
    // scanning thread.
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::bulk::compress(raw, COMPRESSION_LEVEL);
        };
        let ctx = match slot.as_mut() {
            Some(ctx) => ctx,
            None => slot.insert(zstd::bulk::Compressor::new(COMPRESSION_LEVEL)?),
        };
        ctx.compress(raw)
    })
}

/// Decompresses a stored message of `size` bytes (its recorded size bounds the
/// output, so a damaged row cannot make it allocate more).
pub fn decompress(compressed: &[u8], size: u64) -> std::io::Result<Vec<u8>> {
    let cap = usize::try_from(size).map_err(std::io::Error::other)?;
    let out = zstd::bulk::decompress(compressed, cap)?;
    if out.len() as u64 != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("stored message is {} bytes, not {size}", out.len()),
        ));
    }
    Ok(out)
}

/// The decoded `Subject:` of a message (RFC 2047 words decoded, folded lines
/// joined), cut at [`MAX_SUBJECT_CHARS`]; empty when there is none.
pub fn subject_of(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(MAX_HEADER_SEARCH)];
    let mut value: Option<Vec<u8>> = None;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            break;
        }
        match &mut value {
            Some(v) if matches!(bare.first(), Some(b' ' | b'\t')) => v.extend_from_slice(bare),
            Some(_) => break,
            None => {
                if bare.len() >= 8 && bare[..8].eq_ignore_ascii_case(b"subject:") {
                    value = Some(bare[8..].to_vec());
                }
            }
        }
    }
    let Some(v) = value else {
        return String::new();
    };
    let text = decode::header::decode(&v);
    let text: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_SUBJECT_CHARS {
        let mut cut: String = text.chars().take(MAX_SUBJECT_CHARS).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_decoded_unfolded_and_bounded() {
        let raw = b"From: a@b\r\nSubject: =?utf-8?B?5Luj5byA5Y+R56Wo?=\r\n  and more\r\nTo: c\r\n\r\nSubject: body\r\n";
        assert_eq!(subject_of(raw), "代开发票 and more");
        assert_eq!(subject_of(b"From: a\r\n\r\nSubject: not a header\r\n"), "");
        assert_eq!(subject_of(b"subject:plain\nx: y\n"), "plain");
        let long = format!("Subject: {}\r\n\r\n", "长".repeat(1000));
        let s = subject_of(long.as_bytes());
        assert_eq!(s.chars().count(), MAX_SUBJECT_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(subject_of(b"Subject: a\x07b\r\n\r\n"), "a b");
    }

    #[test]
    fn messages_compress_and_come_back_exactly() {
        let raw = "Subject: hi\r\n\r\n".to_string() + &"代开发票 free money ".repeat(3000);
        let c = compress(raw.as_bytes()).unwrap();
        assert!(c.len() * 10 < raw.len(), "{} of {}", c.len(), raw.len());
        assert_eq!(decompress(&c, raw.len() as u64).unwrap(), raw.as_bytes());
        // A wrong recorded size is an error, not a truncation or a large allocation.
        assert!(decompress(&c, 10).is_err());
        assert!(decompress(&c, raw.len() as u64 + 1).is_err());
        assert!(decompress(b"not zstd", 100).is_err());
    }

    #[test]
    fn in_doubt_after_the_bound() {
        let s = EntryState::Releasing {
            by: "a".into(),
            at: 1000,
            attempt: 1,
            doubt: None,
        };
        assert!(!s.in_doubt(1000 + RELEASE_IN_DOUBT_AFTER - 1));
        assert_eq!(s.name(1001), "releasing");
        assert!(s.in_doubt(1000 + RELEASE_IN_DOUBT_AFTER));
        assert_eq!(s.name(1000 + RELEASE_IN_DOUBT_AFTER), "in_doubt");
        assert!(!EntryState::Held.in_doubt(u64::MAX));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"state":"releasing","by":"a","at":1000,"attempt":1}"#
        );
        assert_eq!(serde_json::from_str::<EntryState>(&json).unwrap(), s);
    }

    #[test]
    fn a_release_marked_in_doubt_is_in_doubt_at_once() {
        let s = EntryState::Releasing {
            by: "a".into(),
            at: 1000,
            attempt: 1,
            doubt: Some("the relay's answer was lost".into()),
        };
        assert!(s.in_doubt(1000));
        assert!(s.in_doubt(0), "whatever the clock says");
        assert_eq!(s.name(1000), "in_doubt");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"state":"releasing","by":"a","at":1000,"attempt":1,"doubt":"the relay's answer was lost"}"#
        );
        assert_eq!(serde_json::from_str::<EntryState>(&json).unwrap(), s);
        // A record written before the field existed reads as not marked.
        let old: EntryState =
            serde_json::from_str(r#"{"state":"releasing","by":"b","at":5,"attempt":9}"#).unwrap();
        assert_eq!(
            old,
            EntryState::Releasing {
                by: "b".into(),
                at: 5,
                attempt: 9,
                doubt: None
            }
        );
        assert!(!old.in_doubt(6));
    }
}
