//! The end-of-message decision and the answer it becomes.
//!
//! [`decide`] runs on a scan thread: it refuses locked accounts, scans, and counts
//! rejects of authenticated senders toward a lock. [`responses`] turns the decision
//! into milter responses: headers and CONTINUE for delivered mail, headers,
//! QUARANTINE and CONTINUE for held mail, REPLYCODE for refused mail, and the
//! configured fallback when chaff could not decide. Both are plain functions so the
//! load test and unit tests can check them without a socket.

use super::accounts::{AccountStore, Evidence, LockRecord};
use super::config::Fallback;
use super::protocol::{Response, actions};
use super::session::{Negotiated, ScanJob};
use super::settings::Settings;
use crate::{Action, Engine, Envelope, Reason, Verdict};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The reply to a message that would go over the buffer budget
/// (`max_buffered_bytes`): a 4xx, so the MTA keeps the message and tries again.
pub const BUSY_REPLY: &str = "451 4.3.2 chaff: too much mail in flight, try again later";

/// [`BUSY_REPLY`] as a milter response (REPLYCODE).
pub fn busy_response() -> Response {
    Response::reply_code(BUSY_REPLY).unwrap_or(Response::Tempfail)
}

/// What happened to a message, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted, with headers.
    Deliver,
    /// Put on hold.
    Quarantine,
    /// Refused with the reject reply.
    Reject,
    /// Refused because the sending account is locked.
    Locked,
    /// Refused because it is over the size limit.
    Oversize,
    /// chaff could not decide; the fallback answer was given.
    Fallback,
    /// Deferred (4xx) because too much mail was buffered across connections
    /// (`max_buffered_bytes`); the MTA keeps it and retries.
    Busy,
}

impl Outcome {
    /// Every outcome, in metrics order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Deliver,
        Outcome::Quarantine,
        Outcome::Reject,
        Outcome::Locked,
        Outcome::Oversize,
        Outcome::Fallback,
        Outcome::Busy,
    ];

    /// The lowercase name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deliver => "deliver",
            Outcome::Quarantine => "quarantine",
            Outcome::Reject => "reject",
            Outcome::Locked => "locked",
            Outcome::Oversize => "oversize",
            Outcome::Fallback => "fallback",
            Outcome::Busy => "busy",
        }
    }

    /// Index into [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision on one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What happens to it.
    pub outcome: Outcome,
    /// The engine's verdict, when the message was scanned.
    pub verdict: Option<Verdict>,
    /// The SMTP reply for refusals, checked (not yet `%`-escaped).
    pub reply: Option<String>,
    /// The lock in force (outcome `Locked`) or made by this message.
    pub lock: Option<LockRecord>,
    /// True when this message locked its account.
    pub newly_locked: bool,
    /// What went wrong, for the fallback or a lock-store error.
    pub error: Option<String>,
    /// The fallback answer given (outcome `Fallback`).
    pub fallback: Option<Fallback>,
    /// Time spent scanning.
    pub scan_time: Duration,
}

impl Decision {
    fn new(outcome: Outcome) -> Decision {
        Decision {
            outcome,
            verdict: None,
            reply: None,
            lock: None,
            newly_locked: false,
            error: None,
            fallback: None,
            scan_time: Duration::ZERO,
        }
    }

    /// The decision when chaff could not decide.
    pub fn fallback(settings: &Settings, error: String) -> Decision {
        Decision {
            fallback: Some(settings.milter.fallback),
            error: Some(error),
            ..Decision::new(Outcome::Fallback)
        }
    }

    /// The decision for a message deferred because the buffer budget ran out.
    pub fn busy() -> Decision {
        Decision {
            reply: Some(BUSY_REPLY.into()),
            ..Decision::new(Outcome::Busy)
        }
    }

    /// The decision for a message over the size limit.
    pub fn oversize(settings: &Settings) -> Decision {
        Decision {
            reply: Some(settings.oversize_reply.clone()),
            ..Decision::new(Outcome::Oversize)
        }
    }
}

/// The outcome for a verdict.
pub fn outcome_of(v: &Verdict) -> Outcome {
    match (v.action, &v.reason) {
        (Action::Reject, Reason::Oversize { .. }) => Outcome::Oversize,
        (Action::Reject, _) => Outcome::Reject,
        (Action::Quarantine, _) => Outcome::Quarantine,
        (Action::Deliver, _) => Outcome::Deliver,
    }
}

/// The strongest hits as `keyword*count` words.
pub fn top_hits(v: &Verdict, n: usize) -> String {
    let mut s = String::new();
    for h in v.hits.iter().take(n) {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{}*{}", h.keyword, h.count);
    }
    s
}

/// Decides on a scanned message: locked-account check, scan, reject bookkeeping.
///
/// Blocking (scanning and the lock store): call it from a scan thread. Lock-store
/// failures are logged in `error` and do not stop the scan.
pub fn decide(
    engine: &Engine,
    settings: &Settings,
    store: Option<&AccountStore>,
    job: &ScanJob,
    now: u64,
) -> Decision {
    let user = job.envelope.auth_user.as_deref().filter(|u| !u.is_empty());
    let mut store_error = None;
    if let (Some(user), Some(store)) = (user, store) {
        match store.lock_of(user) {
            Ok(Some(lock)) => {
                return Decision {
                    reply: Some(settings.reject_reply.clone()),
                    lock: Some(lock),
                    ..Decision::new(Outcome::Locked)
                };
            }
            Ok(None) => {}
            Err(e) => store_error = Some(e.to_string()),
        }
    }
    let started = Instant::now();
    let verdict = engine.scan(&job.raw, &job.envelope);
    let scan_time = started.elapsed();
    let outcome = outcome_of(&verdict);
    let mut d = Decision {
        scan_time,
        error: store_error,
        ..Decision::new(outcome)
    };
    match outcome {
        Outcome::Reject => {
            let reply = verdict.reply.as_deref().unwrap_or(&settings.reject_reply);
            d.reply = Some(
                super::protocol::check_reply(reply)
                    .unwrap_or_else(|_| settings.reject_reply.clone()),
            );
            if let (Some(user), Some(store)) = (user, store) {
                let ev = Evidence {
                    queue_id: job.envelope.queue_id.clone(),
                    score: verdict.score,
                    hits: top_hits(&verdict, 3),
                };
                match store.record_reject(user, now, &settings.accounts, &ev) {
                    Ok(Some(lock)) => {
                        d.lock = Some(lock);
                        d.newly_locked = true;
                    }
                    Ok(None) => {}
                    Err(e) => d.error = Some(e.to_string()),
                }
            }
        }
        Outcome::Oversize => d.reply = Some(settings.oversize_reply.clone()),
        _ => {}
    }
    d.verdict = Some(verdict);
    d
}

/// Encodes `s` for a header value: as it stands when ASCII, else as RFC 2047
/// encoded words (UTF-8, base64), split on character boundaries.
fn header_word(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.push_str(s);
        return;
    }
    let mut first = true;
    let mut chunk = String::new();
    let flush = |chunk: &mut String, out: &mut String, first: &mut bool| {
        if chunk.is_empty() {
            return;
        }
        if !*first {
            out.push(' ');
        }
        *first = false;
        out.push_str("=?UTF-8?B?");
        out.push_str(&base64(chunk.as_bytes()));
        out.push_str("?=");
        chunk.clear();
    };
    for c in s.chars() {
        // 45 bytes of UTF-8 become 60 base64 characters: words stay under 75.
        if chunk.len() + c.len_utf8() > 45 {
            flush(&mut chunk, out, &mut first);
        }
        chunk.push(c);
    }
    flush(&mut chunk, out, &mut first);
}

/// Standard base64 with padding.
fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// The score header's value: the score with two decimals.
pub fn score_value(v: &Verdict) -> String {
    format!("{:.2}", v.score)
}

/// The status header's value, SpamAssassin-like:
/// `Yes, score=14.50 action=quarantine thresholds=6.00/12.00 hits=代开*2 优惠*1`,
/// with non-ASCII hit words as RFC 2047 encoded words.
pub fn status_value(v: &Verdict, n: usize) -> String {
    let mut s = String::new();
    s.push_str(if v.action == Action::Deliver {
        "No"
    } else {
        "Yes"
    });
    let _ = write!(s, ", score={:.2} action={}", v.score, v.action);
    match &v.reason {
        Reason::Score { quarantine, reject } => {
            let _ = write!(s, " thresholds={quarantine:.2}/{reject:.2}");
        }
        Reason::AllowListed { entry } => {
            s.push_str(" allow=");
            header_word(entry, &mut s);
        }
        Reason::BlockListed { entry } => {
            s.push_str(" block=");
            header_word(entry, &mut s);
        }
        Reason::Oversize { .. } => s.push_str(" oversize"),
    }
    if !v.hits.is_empty() {
        s.push_str(" hits=");
        for (i, h) in v.hits.iter().take(n).enumerate() {
            if i > 0 {
                s.push(' ');
            }
            header_word(&format!("{}*{}", h.keyword, h.count), &mut s);
        }
    }
    s
}

/// The quarantine reason (Sendmail records it; Postfix ignores it).
pub fn quarantine_reason(v: &Verdict) -> String {
    let mut s = format!("chaff: score {:.2}", v.score);
    if let Reason::Score { quarantine, .. } = v.reason {
        let _ = write!(s, " >= {quarantine:.2}");
    }
    let hits = top_hits(v, 5);
    if !hits.is_empty() {
        let _ = write!(s, "; hits {hits}");
    }
    s
}

/// The milter responses for a decision, within what the MTA granted.
///
/// `own` counts headers already named like chaff's (score, status): they are
/// removed first so a sender cannot forge them.
pub fn responses(
    d: &Decision,
    settings: &Settings,
    neg: Negotiated,
    own: (u32, u32),
) -> Vec<Response> {
    let refuse = |reply: &Option<String>, default: &str| {
        Response::reply_code(reply.as_deref().unwrap_or(default)).unwrap_or(Response::Reject)
    };
    match d.outcome {
        Outcome::Reject | Outcome::Locked => vec![refuse(&d.reply, &settings.reject_reply)],
        Outcome::Oversize => vec![refuse(&d.reply, &settings.oversize_reply)],
        Outcome::Busy => vec![refuse(&d.reply, BUSY_REPLY)],
        Outcome::Fallback => vec![match d.fallback.unwrap_or(settings.milter.fallback) {
            Fallback::Accept => Response::Continue,
            Fallback::Tempfail => Response::Tempfail,
            Fallback::Reject => Response::Reject,
        }],
        Outcome::Deliver | Outcome::Quarantine => {
            let mut out = Vec::with_capacity(4);
            let m = &settings.milter;
            let leadspc = neg.protocol & super::protocol::proto::HDR_LEADSPC != 0;
            let lead = if leadspc { " " } else { "" };
            if neg.can(actions::CHGHDRS) {
                for (name, count) in [(&m.score_header, own.0), (&m.status_header, own.1)] {
                    for index in (1..=count).rev() {
                        out.push(Response::ChangeHeader {
                            index,
                            name: name.clone(),
                            value: String::new(),
                        });
                    }
                }
            }
            if let Some(v) = &d.verdict {
                if neg.can(actions::ADDHDRS) {
                    out.push(Response::AddHeader {
                        name: m.score_header.clone(),
                        value: format!("{lead}{}", score_value(v)),
                    });
                    out.push(Response::AddHeader {
                        name: m.status_header.clone(),
                        value: format!("{lead}{}", status_value(v, m.status_hits)),
                    });
                }
                if d.outcome == Outcome::Quarantine && neg.can(actions::QUARANTINE) {
                    out.push(Response::Quarantine(quarantine_reason(v)));
                }
            }
            out.push(Response::Continue);
            out
        }
    }
}

/// A one-line summary of a decision for the log: queue id, action, score, top hits.
pub fn log_fields(d: &Decision, env: &Envelope) -> (String, String, String) {
    let queue_id = env.queue_id.clone().unwrap_or_else(|| "-".into());
    let score = d
        .verdict
        .as_ref()
        .map_or_else(|| "-".into(), |v| format!("{:.2}", v.score));
    let hits = d
        .verdict
        .as_ref()
        .map(|v| top_hits(v, 5))
        .unwrap_or_default();
    (queue_id, score, hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hit;

    fn verdict(action: Action, score: f64) -> Verdict {
        Verdict {
            action,
            score,
            reply: (action == Action::Reject).then(|| "557 5.7.1 forbid to send spam mail".into()),
            reason: Reason::Score {
                quarantine: 6.0,
                reject: 12.0,
            },
            hits: vec![
                Hit {
                    keyword: "代开".into(),
                    category: "money".into(),
                    weight: 4.0,
                    count: 2,
                    contribution: 6.0,
                    locations: vec![],
                },
                Hit {
                    keyword: "free".into(),
                    category: "free".into(),
                    weight: 1.0,
                    count: 1,
                    contribution: 1.0,
                    locations: vec![],
                },
            ],
            tokens: Vec::new(),
        }
    }

    fn all() -> Negotiated {
        Negotiated {
            version: 6,
            actions: 0x1ff,
            protocol: 0,
        }
    }

    fn decided(outcome: Outcome, v: Verdict) -> Decision {
        Decision {
            verdict: Some(v),
            reply: Some("557 5.7.1 forbid to send spam mail".into()),
            ..Decision::new(outcome)
        }
    }

    #[test]
    fn status_header_encodes_chinese_hits() {
        let v = verdict(Action::Quarantine, 7.0);
        assert_eq!(
            status_value(&v, 5),
            "Yes, score=7.00 action=quarantine thresholds=6.00/12.00 \
             hits==?UTF-8?B?5Luj5byAKjI=?= free*1"
        );
        let mut s = String::new();
        header_word(&"优".repeat(40), &mut s);
        assert!(s.split(' ').all(|w| w.len() <= 75), "{s}");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn deliver_adds_headers_after_removing_forged_ones() {
        let s = Settings::default();
        let r = responses(
            &decided(Outcome::Deliver, verdict(Action::Deliver, 1.0)),
            &s,
            all(),
            (2, 0),
        );
        assert_eq!(r.len(), 5);
        assert_eq!(
            r[0],
            Response::ChangeHeader {
                index: 2,
                name: "X-Spam-Score".into(),
                value: String::new()
            }
        );
        assert_eq!(
            r[2],
            Response::AddHeader {
                name: "X-Spam-Score".into(),
                value: "1.00".into()
            }
        );
        assert_eq!(r[4], Response::Continue);
    }

    #[test]
    fn quarantine_and_reject_answers() {
        let s = Settings::default();
        let r = responses(
            &decided(Outcome::Quarantine, verdict(Action::Quarantine, 7.0)),
            &s,
            all(),
            (0, 0),
        );
        assert!(
            matches!(&r[2], Response::Quarantine(reason) if reason.starts_with("chaff: score 7.00 >= 6.00; hits 代开*2"))
        );
        assert_eq!(r[3], Response::Continue);
        let r = responses(
            &decided(Outcome::Reject, verdict(Action::Reject, 20.0)),
            &s,
            all(),
            (0, 0),
        );
        assert_eq!(
            r,
            vec![Response::ReplyCode(
                "557 5.7.1 forbid to send spam mail".into()
            )]
        );
        // Without the QUARANTINE action granted the message is delivered with headers.
        let mut neg = all();
        neg.actions = actions::ADDHDRS;
        let r = responses(
            &decided(Outcome::Quarantine, verdict(Action::Quarantine, 7.0)),
            &s,
            neg,
            (0, 0),
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn busy_is_a_451_replycode() {
        let s = Settings::default();
        let r = responses(&Decision::busy(), &s, all(), (0, 0));
        assert_eq!(
            r,
            vec![Response::ReplyCode(
                "451 4.3.2 chaff: too much mail in flight, try again later".into()
            )]
        );
        assert_eq!(busy_response(), r[0]);
    }

    #[test]
    fn fallback_follows_the_setting() {
        let mut s = Settings::default();
        let d = Decision::fallback(&s, "boom".into());
        assert_eq!(responses(&d, &s, all(), (0, 0)), vec![Response::Continue]);
        s.milter.fallback = Fallback::Tempfail;
        let d = Decision::fallback(&s, "boom".into());
        assert_eq!(responses(&d, &s, all(), (0, 0)), vec![Response::Tempfail]);
    }
}
