//! The end-of-message decision and the answer it becomes.
//!
//! [`decide`] runs on a scan thread: it lets released mail through (a release
//! token that verifies, see [`crate::release`]), refuses locked accounts, scans,
//! and counts rejects of authenticated senders toward a lock. [`responses`] turns the decision
//! into milter responses: headers and CONTINUE for delivered mail, headers,
//! QUARANTINE and CONTINUE for held mail (or DISCARD when the quarantine store
//! keeps it, `[quarantine] mode = "store"`), REPLYCODE for refused mail, a
//! TEMPFAIL reply when a message to keep could not be stored, and the configured
//! fallback when chaff could not decide. Both are plain functions so the
//! load test and unit tests can check them without a socket.

use super::accounts::{AccountStore, Evidence, LockRecord};
use super::budget::busy_reply;
use super::config::{Fallback, OnStoreError, QuarantineMode};
use super::protocol::{Response, actions};
use super::quarantine::{EntryId, Told};
use super::release::{Refusal, ReleaseGate, ReleaseMark, token};
use super::session::{Decided, Negotiated, OwnHeaders, ScanJob};
use super::settings::Settings;
use super::site_policy::{self, Mark, PolicySet};
use chaff::{Action, Engine, Envelope, Reason, Reply, Verdict};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

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
    /// Deferred (`451 4.3.0`) because the sender authenticated and the lock store
    /// is unusable, with `[accounts] on_store_error = "tempfail"`.
    StoreTempfail,
    /// Deferred (`451 4.3.0`) because the message was to be kept in the
    /// quarantine store and could not be: never discarded or held without a copy.
    QuarantineTempfail,
    /// Deferred (`[ratelimit] reply`) because the message is over a sending-rate
    /// limit of its account, sender domain or client.
    RateLimited,
}

impl Outcome {
    /// Every outcome, in metrics order.
    pub const ALL: [Outcome; 10] = [
        Outcome::Deliver,
        Outcome::Quarantine,
        Outcome::Reject,
        Outcome::Locked,
        Outcome::Oversize,
        Outcome::Fallback,
        Outcome::Busy,
        Outcome::StoreTempfail,
        Outcome::QuarantineTempfail,
        Outcome::RateLimited,
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
            Outcome::StoreTempfail => "store_tempfail",
            Outcome::QuarantineTempfail => "quarantine_tempfail",
            Outcome::RateLimited => "rate_limited",
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
    /// The SMTP reply for refusals.
    pub reply: Option<Reply>,
    /// The lock in force (outcome `Locked`) or made by this message.
    pub lock: Option<LockRecord>,
    /// True when this message locked its account.
    pub newly_locked: bool,
    /// What went wrong, for the fallback or a lock-store error.
    pub error: Option<String>,
    /// The fallback answer given (outcome `Fallback`).
    pub fallback: Option<Fallback>,
    /// Time spent scanning (wall clock).
    pub scan_time: Duration,
    /// CPU time the scanning thread used for the scan, for messages of
    /// [`MEASURED_FROM_BYTES`](super::cpu_time::MEASURED_FROM_BYTES) or more, where
    /// the clock exists.
    pub scan_cpu: Option<Duration>,
    /// The quarantine entry the message was kept as, and what the MTA is told.
    pub kept: Option<(EntryId, Told)>,
    /// Time keeping it took: compressing it, then from handing it to the store to
    /// its durable commit.
    pub keep_time: Option<Duration>,
    /// The release token that let the message through unscanned (outcome
    /// `Deliver`, no verdict; the history's reason "released").
    pub released: Option<ReleaseMark>,
    /// Why the message's release token did not let it through (it was scanned
    /// as any other).
    pub release_refused: Option<Refusal>,
    /// What the stored policies and `[policy]` did to the verdict (empty: nothing).
    pub policy: Vec<Mark>,
    /// A rejected message of an authenticated sender not yet counted against its
    /// account because it is kept first (`[quarantine] keep_rejected`): the
    /// service counts it once the keep has given it its entry id, so the lock
    /// record can name it (see [`decide_under`]).
    pub uncounted: Option<Evidence>,
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
            scan_cpu: None,
            kept: None,
            keep_time: None,
            released: None,
            uncounted: None,
            release_refused: None,
            policy: Vec::new(),
        }
    }

    /// The decision for a message whose release token verified: delivered
    /// unscanned.
    pub fn released(mark: ReleaseMark) -> Decision {
        Decision {
            released: Some(mark),
            ..Decision::new(Outcome::Deliver)
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
            reply: busy_reply(),
            ..Decision::new(Outcome::Busy)
        }
    }

    /// The decision for authenticated mail while the lock store is unusable and
    /// `[accounts] on_store_error` is `tempfail`.
    pub fn store_tempfail() -> Decision {
        Decision {
            reply: Reply::parse(STORE_TEMPFAIL_REPLY).ok(),
            ..Decision::new(Outcome::StoreTempfail)
        }
    }

    /// The decision for mail from a locked account.
    pub fn locked(settings: &Settings, lock: LockRecord, newly: bool) -> Decision {
        Decision {
            reply: Some(settings.reject_reply.clone()),
            lock: Some(lock),
            newly_locked: newly,
            ..Decision::new(Outcome::Locked)
        }
    }

    /// The decision for mail over a sending-rate limit (`why`, for the log);
    /// `lock` when this refusal locked the account (then it is refused as a
    /// locked account is).
    pub fn rate_limited(settings: &Settings, why: String, lock: Option<LockRecord>) -> Decision {
        match lock {
            Some(l) => Decision {
                error: Some(why),
                ..Decision::locked(settings, l, true)
            },
            None => Decision {
                reply: Some(settings.ratelimit_reply.clone()),
                error: Some(why),
                ..Decision::new(Outcome::RateLimited)
            },
        }
    }

    /// The decision for a message that was to be kept in the quarantine store
    /// and could not be (`why`): deferred, the verdict kept for the log.
    pub fn keep_failed(mut self, why: String) -> Decision {
        self.outcome = Outcome::QuarantineTempfail;
        self.reply = Reply::parse(QUARANTINE_TEMPFAIL_REPLY).ok();
        self.error = Some(why);
        self.kept = None;
        self
    }

    /// What the MTA is told about this decision's message if it is kept in the
    /// quarantine store, or None when it is not kept: quarantined mail always
    /// (DISCARD in `store` mode; in `hold` mode only when the MTA granted
    /// QUARANTINE, `can_quarantine`, else it is delivered with headers and there
    /// is nothing to keep), and mail refused for its content with
    /// `keep_rejected`. Locked accounts, oversize and deferred mail are not kept.
    pub fn keep_as(&self, settings: &Settings, can_quarantine: bool) -> Option<Told> {
        match self.outcome {
            Outcome::Quarantine => match settings.quarantine.mode {
                QuarantineMode::Store => Some(Told::Discard),
                QuarantineMode::Hold => can_quarantine.then_some(Told::Hold),
            },
            Outcome::Reject if settings.quarantine.keep_rejected => Some(Told::Reject),
            _ => None,
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

/// The reply to authenticated mail while the lock store is unusable, with
/// `[accounts] on_store_error = "tempfail"`.
pub const STORE_TEMPFAIL_REPLY: &str =
    "451 4.3.0 chaff: account store unavailable, try again later";

/// The reply to a message that was to be kept in the quarantine store and could
/// not be (a full disk, a failing store, a commit that took too long): the MTA
/// keeps it and tries again.
pub const QUARANTINE_TEMPFAIL_REPLY: &str =
    "451 4.3.0 chaff: quarantine store unavailable, try again later";

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

/// Checks a message's release tokens, if it has any: `Ok` lets it through
/// unscanned; `Err` says why not (and it is scanned); `None` when it has none.
fn release_check(
    release: Option<&ReleaseGate>,
    job: &ScanJob,
    now: u64,
) -> Option<Result<ReleaseMark, Refusal>> {
    if job.release_tokens.is_empty() {
        return None;
    }
    Some(match release {
        Some(gate) => gate.check(&job.release_tokens, token::body_of(&job.raw), now),
        None => Err(Refusal::NoKey),
    })
}

/// Decides on a scanned message: release token, locked-account check, scan,
/// reject bookkeeping.
///
/// A message with a release token that verifies with `release`'s key, and was
/// not used before, is delivered unscanned; any other token is ignored (the
/// message is scanned) and the reason kept in `release_refused`.
///
/// Blocking (scanning and the lock store): call it from a scan thread. Lock-store
/// failures are logged in `error` and do not stop the scan. While the store is
/// unusable it answers from memory (known locks stay enforced); with
/// `[accounts] on_store_error = "tempfail"` authenticated mail that is not locked
/// is then deferred instead of scanned.
pub fn decide(
    engine: &Engine,
    settings: &Settings,
    store: Option<&AccountStore>,
    release: Option<&ReleaseGate>,
    job: &ScanJob,
    now: u64,
) -> Decision {
    decide_under(
        engine,
        settings,
        store,
        release,
        &PolicySet::default(),
        job,
        now,
        false,
    )
}

/// [`decide`] with the stored policies `rules` applied to the verdict (see
/// [`crate::site_policy`]) before the action is taken. With `count_after_keep`
/// and `[quarantine] keep_rejected`, a reject of an authenticated sender is not
/// counted here but left in [`Decision::uncounted`], for the caller to count
/// once the message is kept (and has an entry id).
#[allow(clippy::too_many_arguments)]
pub fn decide_under(
    engine: &Engine,
    settings: &Settings,
    store: Option<&AccountStore>,
    release: Option<&ReleaseGate>,
    rules: &PolicySet,
    job: &ScanJob,
    now: u64,
    count_after_keep: bool,
) -> Decision {
    let release_refused = match release_check(release, job, now) {
        Some(Ok(mark)) => return Decision::released(mark),
        Some(Err(why)) => Some(why),
        None => None,
    };
    let defer = count_after_keep && settings.quarantine.keep_rejected;
    let mut d = decide_scanned(engine, settings, store, rules, job, now, defer);
    d.release_refused = release_refused;
    d
}

/// [`decide`] past the release token.
fn decide_scanned(
    engine: &Engine,
    settings: &Settings,
    store: Option<&AccountStore>,
    rules: &PolicySet,
    job: &ScanJob,
    now: u64,
    defer: bool,
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
        if settings.accounts.on_store_error == OnStoreError::Tempfail && !store.is_healthy() {
            return Decision::store_tempfail();
        }
    }
    let started = Instant::now();
    let measure_cpu = job.raw.len() >= super::cpu_time::MEASURED_FROM_BYTES;
    let cpu_clock = || measure_cpu.then(super::cpu_time::thread_cpu_time).flatten();
    let cpu_started = cpu_clock();
    let mut verdict = engine.scan(&job.raw, &job.envelope);
    let marks = site_policy::apply(
        engine,
        rules,
        &settings.policy,
        &job.envelope,
        &job.raw,
        &mut verdict,
    );
    let scan_time = started.elapsed();
    let scan_cpu = cpu_clock()
        .zip(cpu_started)
        .map(|(end, start)| end.saturating_sub(start));
    let outcome = outcome_of(&verdict);
    let mut d = Decision {
        scan_time,
        scan_cpu,
        error: store_error,
        policy: marks,
        ..Decision::new(outcome)
    };
    match outcome {
        Outcome::Reject => {
            d.reply = Some(
                verdict
                    .reply
                    .clone()
                    .unwrap_or_else(|| settings.reject_reply.clone()),
            );
            if let (Some(user), Some(store)) = (user, store) {
                let ev = Evidence {
                    queue_id: job.envelope.queue_id.clone(),
                    score: verdict.score,
                    hits: top_hits(&verdict, 3),
                    entry: None,
                };
                if defer {
                    d.uncounted = Some(ev);
                } else {
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
        }
        Outcome::Oversize => d.reply = Some(settings.oversize_reply.clone()),
        _ => {}
    }
    d.verdict = Some(verdict);
    d
}

/// True when `s` can stand in a header value as it is: printable ASCII without
/// spaces, and not readable as an encoded word.
fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic()) && !s.contains("=?")
}

/// Encodes `s` for a header value: as it stands when [plain](is_plain), else as
/// RFC 2047 encoded words (UTF-8, base64), split on character boundaries.
/// Classifier tokens come from the mail itself, so nothing in `s` can end the
/// header or fake one.
fn header_word(s: &str, out: &mut String) {
    if is_plain(s) {
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

/// Writes `words` separated by spaces, each as [`header_word`] does. A reader
/// drops the space between two encoded words, so when neighbours are both encoded
/// the space that separates them is encoded into the second: `代开*2 优惠*1` shows
/// as two words, not as `代开*2优惠*1`.
fn header_words(words: impl IntoIterator<Item = String>, out: &mut String) {
    let mut after_encoded = false;
    for (i, w) in words.into_iter().enumerate() {
        let plain = is_plain(&w);
        if i > 0 {
            out.push(' ');
            if after_encoded && !plain {
                header_word(&format!(" {w}"), out);
                continue;
            }
        }
        header_word(&w, out);
        after_encoded = !plain;
    }
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

/// Longest classifier token shown, in characters; longer ones are cut with `…`
/// (a `From:` address may be 256 bytes).
const MAX_TOKEN_CHARS: usize = 40;

/// A token as shown in the status header: `免费:+1.92`, `from-domain:example.com:-0.40`.
fn token_word(t: &chaff::TokenWeight) -> String {
    let mut s: String = t.token.chars().take(MAX_TOKEN_CHARS).collect();
    if s.len() < t.token.len() {
        s.push('…');
    }
    let _ = write!(s, ":{:+.2}", t.weight);
    s
}

/// The status header's value, SpamAssassin-like:
/// `Yes, score=14.50 action=quarantine thresholds=6.00/12.00 hits=代开*2 优惠*1
/// tokens=代开:+1.92 发票:+1.10 会议:-0.85`, with non-ASCII words as RFC 2047 encoded
/// words, on one line (see [`fold`]). `hits` keywords are listed, strongest first;
/// with a trained model, `tokens` of the classifier each way (spam-wards, then
/// ham-wards; the weight is what each added to the score, in points). In place of
/// `thresholds`: `allow=ENTRY proof=dkim` for a proven allow-listed sender (its
/// score and hits are real), `block=ENTRY`, `oversize` or `failed`; then
/// `truncated` when some text was not scanned ([`Verdict::truncated`]).
pub fn status_value(v: &Verdict, hits: usize, tokens: usize) -> String {
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
        Reason::AllowListed { entry, proof } => {
            s.push_str(" allow=");
            header_word(entry, &mut s);
            let _ = write!(s, " proof={proof}");
        }
        Reason::BlockListed { entry } => {
            s.push_str(" block=");
            header_word(entry, &mut s);
        }
        Reason::Oversize { .. } => s.push_str(" oversize"),
        Reason::Failed { .. } => s.push_str(" failed"),
        _ => {}
    }
    if v.truncated {
        s.push_str(" truncated");
    }
    if !v.hits.is_empty() && hits > 0 {
        s.push_str(" hits=");
        let words = v.hits.iter().take(hits);
        header_words(words.map(|h| format!("{}*{}", h.keyword, h.count)), &mut s);
    }
    // The verdict lists spam-wards tokens first, then ham-wards, each strongest
    // first.
    let spamward = v.tokens.iter().filter(|t| t.weight > 0.0).take(tokens);
    let hamward = v.tokens.iter().filter(|t| t.weight < 0.0).take(tokens);
    let mut words = spamward.chain(hamward).map(token_word).peekable();
    if words.peek().is_some() {
        s.push_str(" tokens=");
        header_words(words, &mut s);
    }
    s
}

/// Folds a header value for a header named `name`: at spaces, so that lines stay
/// within 78 characters where the words allow (every word chaff writes is at most
/// 75: encoded words are split to fit). A line break is LF and the space, as a
/// milter writes a multi-line header; the MTA makes it CRLF, and unfolding gives
/// the value back unchanged.
pub fn fold(name: &str, value: &str) -> String {
    const LINE: usize = 78;
    let mut out = String::with_capacity(value.len() + value.len() / 32);
    // The first line also holds `Name: `.
    let mut col = name.len() + 2;
    for (i, word) in value.split(' ').enumerate() {
        let w = word.chars().count();
        if i > 0 {
            if col + 1 + w > LINE {
                out.push('\n');
                col = 0;
            }
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += w;
    }
    out
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

/// `status` with what the stored policies did, as ` policy=SCOPE,…` and
/// ` mismatch=ADDRESS` words.
fn with_policy(mut status: String, marks: &[Mark]) -> String {
    for m in marks {
        let (name, options) = match m.symbol {
            site_policy::POLICY => ("policy", &m.options[..]),
            // The login, then `domain=…`, then the senders that did not match.
            _ => ("mismatch", m.options.get(2..).unwrap_or_default()),
        };
        if options.is_empty() {
            continue;
        }
        let _ = write!(status, " {name}=");
        header_word(&options.join(","), &mut status);
    }
    status
}

/// The milter responses for a decision, within what the MTA granted.
///
/// `own` counts headers named like chaff's (score, status, release token): they
/// are removed first, so a sender cannot forge chaff's headers and a release
/// token is not delivered (when the MTA did not grant CHGHDRS they stay).
pub fn responses(
    d: &Decision,
    settings: &Settings,
    neg: Negotiated,
    own: OwnHeaders,
) -> Vec<Response> {
    let refuse = |reply: &Option<Reply>, default: Option<&Reply>| {
        reply
            .as_ref()
            .or(default)
            .map_or(Response::Reject, Response::reply_code)
    };
    // Kept in the store and discarded at the MTA: nothing else matters.
    if matches!(d.kept, Some((_, Told::Discard))) {
        return vec![Response::Discard];
    }
    match d.outcome {
        Outcome::Reject | Outcome::Locked => vec![refuse(&d.reply, Some(&settings.reject_reply))],
        Outcome::Oversize => vec![refuse(&d.reply, Some(&settings.oversize_reply))],
        Outcome::Busy
        | Outcome::StoreTempfail
        | Outcome::QuarantineTempfail
        | Outcome::RateLimited => vec![
            d.reply
                .as_ref()
                .map_or(Response::Tempfail, Response::reply_code),
        ],
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
                for (name, count) in [
                    (m.score_header.as_str(), own.score),
                    (m.status_header.as_str(), own.status),
                    (token::HEADER, own.release),
                ] {
                    for index in (1..=count).rev() {
                        out.push(Response::ChangeHeader {
                            index,
                            name: name.to_string(),
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
                        value: format!(
                            "{lead}{}",
                            fold(
                                &m.status_header,
                                &with_policy(
                                    status_value(v, m.status_hits, m.status_tokens),
                                    &d.policy
                                )
                            )
                        ),
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

impl Decided for Decision {
    fn responses(&self, settings: &Settings, neg: Negotiated, own: OwnHeaders) -> Vec<Response> {
        responses(self, settings, neg, own)
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
    use chaff::Hit;

    fn verdict(action: Action, score: f64) -> Verdict {
        Verdict {
            action,
            score,
            reply: (action == Action::Reject)
                .then(|| "557 5.7.1 forbid to send spam mail".parse().unwrap()),
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
            truncated: false,
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
            reply: Some("557 5.7.1 forbid to send spam mail".parse().unwrap()),
            ..Decision::new(outcome)
        }
    }

    #[test]
    fn status_header_says_truncated() {
        let mut v = verdict(Action::Quarantine, 7.0);
        assert!(!status_value(&v, 5, 3).contains("truncated"));
        v.truncated = true;
        assert!(status_value(&v, 5, 3).contains("thresholds=6.00/12.00 truncated hits="));
    }

    #[test]
    fn status_header_encodes_chinese_hits() {
        let v = verdict(Action::Quarantine, 7.0);
        assert_eq!(
            status_value(&v, 5, 3),
            "Yes, score=7.00 action=quarantine thresholds=6.00/12.00 \
             hits==?UTF-8?B?5Luj5byAKjI=?= free*1"
        );
        // Neighbouring encoded words still read as two words.
        let mut v = verdict(Action::Quarantine, 7.0);
        v.hits[1].keyword = "优惠".into();
        let s = status_value(&v, 5, 3);
        assert!(
            s.ends_with("hits==?UTF-8?B?5Luj5byAKjI=?= =?UTF-8?B?IOS8mOaDoCox?="),
            "{s}"
        );
        assert!(decoded(&s).ends_with("hits=代开*2 优惠*1"), "{s}");
        let mut s = String::new();
        header_word(&"优".repeat(40), &mut s);
        assert!(s.split(' ').all(|w| w.len() <= 75), "{s}");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    fn token(token: &str, weight: f64) -> chaff::TokenWeight {
        chaff::TokenWeight {
            token: token.into(),
            weight,
        }
    }

    /// The header value as chaff's own RFC 2047 decoder reads it (lenient, as mail
    /// readers are: encoded words right after `key=` are decoded too, and the space
    /// between two encoded words is not text).
    fn decoded(value: &str) -> String {
        chaff::decode::header::decode(value.as_bytes())
    }

    #[test]
    fn status_header_lists_the_classifiers_tokens_each_way() {
        let mut v = verdict(Action::Deliver, 3.0);
        v.hits.truncate(1);
        v.tokens = vec![
            token("代开", 1.9234),
            token("发票", 1.1),
            token("from-domain:example.com", 0.5),
            token("subject:invoice", 0.25),
            token("会议", -0.85),
            token("x-mailer:outlook", -0.3),
        ];
        let s = status_value(&v, 5, 3);
        assert_eq!(
            s,
            "No, score=3.00 action=deliver thresholds=6.00/12.00 hits==?UTF-8?B?5Luj5byAKjI=?= \
             tokens==?UTF-8?B?5Luj5byAOisxLjky?= =?UTF-8?B?IOWPkeelqDorMS4xMA==?= \
             from-domain:example.com:+0.50 =?UTF-8?B?5Lya6K6uOi0wLjg1?= x-mailer:outlook:-0.30"
        );
        assert!(
            decoded(&s).ends_with(
                "tokens=代开:+1.92 发票:+1.10 from-domain:example.com:+0.50 \
                 会议:-0.85 x-mailer:outlook:-0.30"
            ),
            "{}",
            decoded(&s)
        );
        // Fewer each way, or none; no model, no tokens.
        assert_eq!(
            decoded(&status_value(&v, 5, 1)),
            "No, score=3.00 action=deliver thresholds=6.00/12.00 hits=代开*2 \
             tokens=代开:+1.92 会议:-0.85"
        );
        assert!(!status_value(&v, 5, 0).contains("tokens="));
        v.tokens.clear();
        assert!(!status_value(&v, 5, 3).contains("tokens="));
    }

    #[test]
    fn tokens_from_the_mail_cannot_break_the_header() {
        let mut v = verdict(Action::Deliver, 3.0);
        v.hits.clear();
        v.tokens = vec![
            token("from:a\r\nBcc: victim@example.com", 2.0),
            token("=?UTF-8?B?Zm9v?=", 1.0),
            token(&"x".repeat(300), 0.5),
            token(&"长".repeat(300), -0.5),
        ];
        let s = status_value(&v, 5, 5);
        assert!(!s.contains(['\r', '\n']), "{s}");
        assert!(!s.contains("=?UTF-8?B?Zm9v?="), "{s}");
        assert!(s.split(' ').all(|w| w.len() <= 75), "{s}");
        let shown = decoded(&s);
        assert!(
            shown.contains(&format!("{}…:+0.50", "x".repeat(40))),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("{}…:-0.50", "长".repeat(40))),
            "{shown}"
        );
        assert!(
            shown.contains("from:a\r\nBcc: victim@example.com:+2.00"),
            "{shown}"
        );
    }

    #[test]
    fn a_long_status_is_folded_between_words() {
        let mut v = verdict(Action::Deliver, 3.0);
        v.tokens = (0..5)
            .map(|i| token(&format!("发票发票发票{i}"), 1.0 - f64::from(i) * 0.1))
            .chain((0..5).map(|i| token(&format!("meeting-room-{i}"), -0.1)))
            .collect();
        let one_line = status_value(&v, 5, 5);
        assert!(one_line.len() > 300, "{one_line}");
        let folded = fold("X-Spam-Status", &one_line);
        let lines: Vec<&str> = folded.split('\n').collect();
        assert!(lines.len() > 3, "{folded}");
        assert!(lines[0].len() + "X-Spam-Status: ".len() <= 78, "{folded}");
        for l in &lines[1..] {
            assert!(l.starts_with(' ') && l.len() <= 78, "{l:?}");
        }
        // Unfolding (removing the line breaks) gives the value back.
        assert_eq!(folded.replace('\n', ""), one_line);
        // A short value stays on one line.
        assert_eq!(fold("X-Spam-Status", "No, score=1.00"), "No, score=1.00");
    }

    #[test]
    fn deliver_adds_headers_after_removing_forged_ones() {
        let s = Settings::default();
        let r = responses(
            &decided(Outcome::Deliver, verdict(Action::Deliver, 1.0)),
            &s,
            all(),
            OwnHeaders {
                score: 2,
                ..OwnHeaders::default()
            },
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
            OwnHeaders::default(),
        );
        assert!(
            matches!(&r[2], Response::Quarantine(reason) if reason.starts_with("chaff: score 7.00 >= 6.00; hits 代开*2"))
        );
        assert_eq!(r[3], Response::Continue);
        let r = responses(
            &decided(Outcome::Reject, verdict(Action::Reject, 20.0)),
            &s,
            all(),
            OwnHeaders::default(),
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
            OwnHeaders::default(),
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn busy_is_a_451_replycode() {
        let s = Settings::default();
        let r = responses(&Decision::busy(), &s, all(), OwnHeaders::default());
        assert_eq!(
            r,
            vec![Response::ReplyCode(
                "451 4.3.2 chaff: too much mail in flight, try again later".into()
            )]
        );
        assert_eq!(crate::budget::busy_response(), r[0]);
    }

    #[test]
    fn an_unusable_store_keeps_locks_and_can_defer_authenticated_mail() {
        use crate::budget::Reservation;
        use crate::config::OnStoreError;
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::open(&dir.path().join("a.redb")).unwrap();
        assert!(store.lock("mallory", 1, "by hand").unwrap());
        store.fail_for_test();
        let engine = Engine::new(&chaff::Config::default()).unwrap();
        let job = |auth: Option<&str>| ScanJob {
            raw: b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
            envelope: Envelope {
                auth_user: auth.map(str::to_string),
                ..Envelope::default()
            },
            reservation: Reservation::none(),
            release_tokens: Vec::new(),
        };
        let mut s = Settings::default();
        for policy in [OnStoreError::EnforceKnown, OnStoreError::Tempfail] {
            s.accounts.on_store_error = policy;
            let d = decide(&engine, &s, Some(&store), None, &job(Some("mallory")), 2);
            assert_eq!(d.outcome, Outcome::Locked, "{policy:?}");
            let d = decide(&engine, &s, Some(&store), None, &job(None), 2);
            assert_eq!(d.outcome, Outcome::Deliver, "{policy:?}");
        }
        s.accounts.on_store_error = OnStoreError::EnforceKnown;
        let d = decide(&engine, &s, Some(&store), None, &job(Some("alice")), 2);
        assert_eq!((d.outcome, d.error), (Outcome::Deliver, None));
        s.accounts.on_store_error = OnStoreError::Tempfail;
        let d = decide(&engine, &s, Some(&store), None, &job(Some("alice")), 2);
        assert_eq!(d.outcome, Outcome::StoreTempfail);
        assert_eq!(
            responses(&d, &s, all(), OwnHeaders::default()),
            vec![Response::ReplyCode(STORE_TEMPFAIL_REPLY.into())]
        );
    }

    #[test]
    fn kept_mail_is_discarded_in_store_mode_and_a_failed_keep_is_a_tempfail() {
        let mut s = Settings::default();
        let q = decided(Outcome::Quarantine, verdict(Action::Quarantine, 7.0));
        let r = decided(Outcome::Reject, verdict(Action::Reject, 20.0));
        // Hold mode: quarantined mail is kept when the MTA can hold it.
        assert_eq!(q.keep_as(&s, true), Some(Told::Hold));
        assert_eq!(q.keep_as(&s, false), None);
        assert_eq!(r.keep_as(&s, true), None);
        s.quarantine.keep_rejected = true;
        assert_eq!(r.keep_as(&s, true), Some(Told::Reject));
        s.quarantine.mode = QuarantineMode::Store;
        assert_eq!(q.keep_as(&s, false), Some(Told::Discard));
        for o in [
            Outcome::Locked,
            Outcome::Oversize,
            Outcome::Busy,
            Outcome::Fallback,
            Outcome::Deliver,
        ] {
            assert_eq!(Decision::new(o).keep_as(&s, true), None, "{o}");
        }
        let id = EntryId::new(1, 1);
        let kept = Decision {
            kept: Some((id, Told::Discard)),
            ..q.clone()
        };
        assert_eq!(
            responses(&kept, &s, all(), OwnHeaders::default()),
            vec![Response::Discard]
        );
        let held = Decision {
            kept: Some((id, Told::Hold)),
            ..q.clone()
        };
        assert!(matches!(
            responses(&held, &s, all(), OwnHeaders::default())[2],
            Response::Quarantine(_)
        ));
        let rejected = Decision {
            kept: Some((id, Told::Reject)),
            ..r.clone()
        };
        assert_eq!(
            responses(&rejected, &s, all(), OwnHeaders::default()),
            vec![Response::ReplyCode(
                "557 5.7.1 forbid to send spam mail".into()
            )]
        );
        let failed = q.keep_failed("disk full".into());
        assert_eq!(failed.outcome, Outcome::QuarantineTempfail);
        assert_eq!(
            responses(&failed, &s, all(), OwnHeaders::default()),
            vec![Response::ReplyCode(QUARANTINE_TEMPFAIL_REPLY.into())]
        );
    }

    #[test]
    fn a_valid_release_token_delivers_unscanned_once_and_is_removed() {
        use crate::budget::Reservation;
        use crate::release::{ReleaseKey, token};
        let key = ReleaseKey::from_bytes([3; 32]);
        let gate = ReleaseGate::new(key.clone());
        let mut config = chaff::Config::default();
        config.thresholds.quarantine = 0.5;
        config.thresholds.reject = 1.0;
        let engine = Engine::new(&config).unwrap();
        let raw = "Subject: free\r\n\r\n免费 代开发票 free viagra\r\n";
        let now = 1_700_000_000;
        let value = token::issue(&key, "Q7", token::body_of(raw.as_bytes()), now, 60).unwrap();
        let job = |tokens: Vec<String>| ScanJob {
            raw: token::prefixed(raw.as_bytes(), &value),
            envelope: Envelope::default(),
            reservation: Reservation::none(),
            release_tokens: tokens,
        };
        let s = Settings::default();
        // Without the header the message is spam.
        let d = decide(&engine, &s, None, Some(&gate), &job(vec![]), now);
        assert_eq!((d.outcome, d.release_refused), (Outcome::Reject, None));
        // With it: delivered, not scanned.
        let d = decide(
            &engine,
            &s,
            None,
            Some(&gate),
            &job(vec![value.clone()]),
            now,
        );
        assert_eq!(d.outcome, Outcome::Deliver);
        assert_eq!(d.released.as_ref().map(|m| m.id.as_str()), Some("Q7"));
        assert!(d.verdict.is_none());
        let own = OwnHeaders {
            release: 1,
            ..OwnHeaders::default()
        };
        assert_eq!(
            responses(&d, &s, all(), own),
            vec![
                Response::ChangeHeader {
                    index: 1,
                    name: "X-Chaff-Release".into(),
                    value: String::new()
                },
                Response::Continue
            ]
        );
        // Without CHGHDRS granted the header stays; the message still goes.
        let mut neg = all();
        neg.actions = actions::ADDHDRS;
        assert_eq!(responses(&d, &s, neg, own), vec![Response::Continue]);
        // Used once: the same token again is scanned, and says why.
        let d = decide(
            &engine,
            &s,
            None,
            Some(&gate),
            &job(vec![value.clone()]),
            now,
        );
        assert_eq!(d.outcome, Outcome::Reject);
        assert_eq!(
            d.release_refused,
            Some(Refusal::Replayed { id: "Q7".into() })
        );
        // Forged (another key), or no key configured: scanned.
        let forged = token::issue(&ReleaseKey::from_bytes([4; 32]), "Q8", b"x", now, 60).unwrap();
        let d = decide(&engine, &s, None, Some(&gate), &job(vec![forged]), now);
        assert_eq!(d.outcome, Outcome::Reject);
        assert_eq!(
            d.release_refused.as_ref().map(Refusal::kind),
            Some("bad_mac")
        );
        let d = decide(&engine, &s, None, None, &job(vec![value.clone()]), now);
        assert_eq!(
            (d.outcome, d.release_refused),
            (Outcome::Reject, Some(Refusal::NoKey))
        );
    }

    #[test]
    fn fallback_follows_the_setting() {
        let mut s = Settings::default();
        let d = Decision::fallback(&s, "boom".into());
        assert_eq!(
            responses(&d, &s, all(), OwnHeaders::default()),
            vec![Response::Continue]
        );
        s.milter.fallback = Fallback::Tempfail;
        let d = Decision::fallback(&s, "boom".into());
        assert_eq!(
            responses(&d, &s, all(), OwnHeaders::default()),
            vec![Response::Tempfail]
        );
    }
}
