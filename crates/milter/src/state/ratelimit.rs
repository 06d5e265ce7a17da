//! Sending-rate limits (`[ratelimit]`): the configuration, the one arithmetic
//! rule both backends apply, and the in-memory limiter of the embedded backend
//! (and of a Redis backend while Redis is away, `[state] fail = "open"`).
//!
//! A limit is a number of messages, or of recipients, per window (`1m`, `1h`,
//! `1d`; several at once). Each window is counted as a *sliding window counter*:
//! the count of the current fixed window plus the previous window's count weighted
//! by how much of it the sliding window still covers. A message is admitted when
//! that estimate plus its own cost stays within the limit, and only admitted
//! messages are counted. Why this rule: it needs two counters per window and
//! subject (a bounded, O(1) state, easy to update atomically in one Redis script),
//! and unlike fixed windows it does not let twice the limit through around a
//! window's edge; unlike GCRA it lets a burst of the whole limit through at once
//! (a user sending one newsletter), which is what operators write `500/hour` for.
//! An exact log of send times would need `limit` entries per subject.

use crate::accounts::LockRecord;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The default reply to a message over a limit.
pub const DEFAULT_REPLY: &str = "451 4.7.1 sending rate limit exceeded, try again later";
/// Largest limit (messages or recipients per window): keeps `count × window_ms`
/// within the 2^53 integers a Redis Lua number holds exactly.
pub const MAX_LIMIT: u64 = 1_000_000;
/// Longest window.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Most windows per subject kind.
pub const MAX_WINDOWS: usize = 8;
/// Most subjects the in-memory limiter tracks; past it, expired subjects are
/// swept, and if none is expired a new subject is admitted uncounted (logged by
/// the caller through [`Check::Untracked`]).
pub const MAX_TRACKED: usize = 200_000;

/// One limit: at most `messages` messages and `recipients` recipients per `window`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The window (`1m`, `1h`, `1d`, or seconds).
    #[serde(deserialize_with = "chaff::config::deserialize_duration")]
    pub window: Duration,
    /// Most messages in the window (0 or absent: no message limit).
    #[serde(default)]
    pub messages: u64,
    /// Most recipients in the window, all messages together (0 or absent: none).
    #[serde(default)]
    pub recipients: u64,
}

impl Window {
    /// The window in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }
}

/// `[ratelimit]` in `chaff.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Limits per authenticated account (SMTP AUTH login), for authenticated mail.
    pub account: Vec<Window>,
    /// Limits per envelope sender domain, for authenticated mail.
    pub sender_domain: Vec<Window>,
    /// Limits per client address, for all mail.
    pub client: Vec<Window>,
    /// The reply to a message over a limit (a 4xx reply: the MTA tells the
    /// client to retry later).
    pub reply: String,
    /// An account refused this many times within `lock_window` is locked as a
    /// spam sender is, with reason "rate" (0: never).
    pub lock_after: u32,
    /// The window for `lock_after`.
    #[serde(deserialize_with = "chaff::config::deserialize_duration")]
    pub lock_window: Duration,
    /// Accounts no limit applies to.
    pub exempt_accounts: Vec<String>,
    /// Sender domains no limit applies to.
    pub exempt_domains: Vec<String>,
    /// Client addresses or networks (`10.0.0.0/8`, `::1`) no limit applies to.
    pub exempt_clients: Vec<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            account: Vec::new(),
            sender_domain: Vec::new(),
            client: Vec::new(),
            reply: DEFAULT_REPLY.into(),
            lock_after: 0,
            lock_window: Duration::from_secs(3600),
            exempt_accounts: Vec::new(),
            exempt_domains: Vec::new(),
            exempt_clients: Vec::new(),
        }
    }
}

/// An address or network, for `exempt_clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Reads `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<Net, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("`{s}` is not an address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Net { addr, prefix })
    }

    /// True when `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn check_windows(field: &'static str, ws: &[Window]) -> Result<(), (&'static str, String)> {
    if ws.len() > MAX_WINDOWS {
        return Err((field, format!("at most {MAX_WINDOWS} windows")));
    }
    for w in ws {
        if w.window < Duration::from_secs(1) || w.window > MAX_WINDOW {
            return Err((field, "a window must be between 1 s and 7 days".into()));
        }
        if w.messages == 0 && w.recipients == 0 {
            return Err((field, "a window needs `messages` or `recipients`".into()));
        }
        if w.messages > MAX_LIMIT || w.recipients > MAX_LIMIT {
            return Err((field, format!("a limit must be at most {MAX_LIMIT}")));
        }
    }
    Ok(())
}

impl RateLimitConfig {
    /// The lock record an account over its limits `lock_after` times gets, on
    /// either backend.
    pub fn lock_record(&self, now_ms: u64) -> LockRecord {
        LockRecord {
            locked_at: now_ms / 1000,
            reason: format!(
                "rate: over its sending-rate limit {} times within {} s",
                self.lock_after,
                self.lock_window.as_secs()
            ),
            rejects: self.lock_after,
            window_secs: self.lock_window.as_secs(),
            last_queue_id: None,
            last_score: None,
            messages: Vec::new(),
        }
    }

    /// Checks the values; on error returns the offending field and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        check_windows("ratelimit.account", &self.account)?;
        check_windows("ratelimit.sender_domain", &self.sender_domain)?;
        check_windows("ratelimit.client", &self.client)?;
        match chaff::Reply::parse(&self.reply) {
            Ok(r) if r.as_str().starts_with('4') => {}
            Ok(_) => return Err(("ratelimit.reply", "must be a 4xx reply".into())),
            Err(e) => return Err(("ratelimit.reply", e.to_string())),
        }
        if self.lock_after > 0
            && (self.lock_window < Duration::from_secs(1) || self.lock_window > MAX_WINDOW)
        {
            return Err((
                "ratelimit.lock_window",
                "must be between 1 s and 7 days".into(),
            ));
        }
        for c in &self.exempt_clients {
            Net::parse(c).map_err(|e| ("ratelimit.exempt_clients", e))?;
        }
        Ok(())
    }

    /// True when some limit is set.
    pub fn any(&self) -> bool {
        !(self.account.is_empty() && self.sender_domain.is_empty() && self.client.is_empty())
    }
}

/// What is limited, with the exemptions applied: the subjects a message is
/// counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// An authenticated account (normalised).
    Account(String),
    /// A sender domain (lower case).
    Domain(String),
    /// A client address.
    Client(IpAddr),
}

impl Subject {
    /// The kind, as `chaff accounts limits` and the metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Account(_) => "account",
            Subject::Domain(_) => "sender_domain",
            Subject::Client(_) => "client",
        }
    }

    /// The subject's name.
    pub fn name(&self) -> String {
        match self {
            Subject::Account(a) => a.clone(),
            Subject::Domain(d) => d.clone(),
            Subject::Client(c) => c.to_string(),
        }
    }

    /// Its limits in `cfg`.
    pub fn windows<'a>(&self, cfg: &'a RateLimitConfig) -> &'a [Window] {
        match self {
            Subject::Account(_) => &cfg.account,
            Subject::Domain(_) => &cfg.sender_domain,
            Subject::Client(_) => &cfg.client,
        }
    }
}

/// The subjects a message is counted under: its account (normalised by the
/// caller) and sender domain when authenticated, its client address always, each
/// only when it has limits and is not exempt.
pub fn subjects(
    cfg: &RateLimitConfig,
    account: Option<&str>,
    sender: Option<&str>,
    client: Option<IpAddr>,
) -> Vec<Subject> {
    let mut out = Vec::new();
    if let Some(client) = client
        && cfg
            .exempt_clients
            .iter()
            .filter_map(|c| Net::parse(c).ok())
            .any(|n| n.contains(client))
    {
        return out;
    }
    if let Some(user) = account {
        if !cfg.account.is_empty()
            && !cfg
                .exempt_accounts
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(user))
        {
            out.push(Subject::Account(user.to_string()));
        }
        let domain = sender
            .and_then(|s| s.rsplit_once('@'))
            .map(|(_, d)| d.trim().to_lowercase())
            .filter(|d| !d.is_empty());
        if let Some(d) = domain
            && !cfg.sender_domain.is_empty()
            && !cfg
                .exempt_domains
                .iter()
                .any(|x| x.trim().eq_ignore_ascii_case(&d))
        {
            out.push(Subject::Domain(d));
        }
    }
    if let Some(c) = client
        && !cfg.client.is_empty()
    {
        out.push(Subject::Client(c));
    }
    out
}

/// What is measured: messages or recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Messages.
    Messages,
    /// Recipients.
    Recipients,
}

impl Measure {
    /// The name in replies and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Messages => "messages",
            Measure::Recipients => "recipients",
        }
    }
}

/// The limit a message was refused by.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// The subject over its limit.
    pub subject: Subject,
    /// The window.
    pub window: Duration,
    /// What was counted.
    pub measure: Measure,
    /// The limit.
    pub limit: u64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} over {} {} per {} s",
            self.subject.kind(),
            self.subject.name(),
            self.limit,
            self.measure.as_str(),
            self.window.as_secs()
        )
    }
}

/// The sliding-window estimate of use at `elapsed_ms` into the current window,
/// times `window_ms` (kept in integers, exactly as the Redis script computes it):
/// `prev × (window − elapsed) + cur × window`.
pub fn scaled_use(prev: u64, cur: u64, window_ms: u64, elapsed_ms: u64) -> u128 {
    let left = window_ms.saturating_sub(elapsed_ms.min(window_ms));
    u128::from(prev) * u128::from(left) + u128::from(cur) * u128::from(window_ms)
}

/// The one rule: a cost of `cost` is admitted when the estimate with it stays
/// within `limit`. A cost of 0 is always admitted.
pub fn admits(prev: u64, cur: u64, cost: u64, limit: u64, window_ms: u64, elapsed_ms: u64) -> bool {
    cost == 0
        || scaled_use(prev, cur.saturating_add(cost), window_ms, elapsed_ms)
            <= u128::from(limit) * u128::from(window_ms)
}

/// The use shown to an admin: the estimate, rounded up.
pub fn shown_use(prev: u64, cur: u64, window_ms: u64, elapsed_ms: u64) -> u64 {
    if window_ms == 0 {
        return cur;
    }
    scaled_use(prev, cur, window_ms, elapsed_ms).div_ceil(u128::from(window_ms)) as u64
}

/// One subject's counters for one window and measure: the fixed window's index
/// and the counts of it and of the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// `now_ms / window_ms` of the window `cur` counts.
    pub index: u64,
    /// This window's count.
    pub cur: u64,
    /// The previous window's count.
    pub prev: u64,
}

impl Counter {
    /// Moves the counter to the window holding `now_ms`.
    pub fn roll(&mut self, now_ms: u64, window_ms: u64) {
        let index = now_ms / window_ms.max(1);
        if index == self.index {
            return;
        }
        self.prev = if index == self.index + 1 { self.cur } else { 0 };
        self.cur = 0;
        self.index = index;
    }

    /// True when the counter is all zeros at `now_ms` (it can be forgotten).
    pub fn is_idle(&self, now_ms: u64, window_ms: u64) -> bool {
        let index = now_ms / window_ms.max(1);
        index > self.index + 1 || (self.cur == 0 && self.prev == 0)
    }
}

/// What the in-memory limiter says.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Admitted and counted.
    Admitted,
    /// Refused by this limit (nothing counted).
    Over(Exceeded),
    /// Admitted uncounted: the limiter tracks [`MAX_TRACKED`] subjects already.
    Untracked,
}

/// One subject's counters, per window and measure, in `cfg`'s order.
type Counters = Vec<[Counter; 2]>;

/// The limiter of the embedded backend: counters in this process's memory (lost
/// at restart; a limit is a short-term brake, not a record), bounded by
/// [`MAX_TRACKED`] subjects.
#[derive(Debug, Default)]
pub struct MemLimiter {
    counters: Mutex<HashMap<Subject, (Vec<u64>, Counters)>>,
    /// Recent refusals per account (ms), for `lock_after`.
    overs: Mutex<HashMap<String, Vec<u64>>>,
}

impl MemLimiter {
    /// Checks and counts a message with `rcpts` recipients for every subject, at
    /// `now_ms`: either all admit it and it is counted under each, or the first
    /// limit it is over is returned and nothing is counted.
    pub fn check(
        &self,
        cfg: &RateLimitConfig,
        subjects: &[Subject],
        rcpts: u64,
        now_ms: u64,
    ) -> Check {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let costs = [1, rcpts];
        // First pass: would every limit admit it?
        for s in subjects {
            let ws = s.windows(cfg);
            let Some((_, counters)) = map.get_mut(s) else {
                continue;
            };
            if counters.len() != ws.len() {
                counters.clear();
            }
            for (w, c) in ws.iter().zip(counters.iter_mut()) {
                let wm = w.window_ms();
                for (i, (limit, measure)) in [
                    (w.messages, Measure::Messages),
                    (w.recipients, Measure::Recipients),
                ]
                .into_iter()
                .enumerate()
                {
                    c[i].roll(now_ms, wm);
                    if limit > 0 && !admits(c[i].prev, c[i].cur, costs[i], limit, wm, now_ms % wm) {
                        return Check::Over(Exceeded {
                            subject: s.clone(),
                            window: w.window,
                            measure,
                            limit,
                        });
                    }
                }
            }
        }
        // A cost alone over a limit (a message to more recipients than allowed).
        for s in subjects {
            for w in s.windows(cfg) {
                for (limit, cost, measure) in [
                    (w.messages, costs[0], Measure::Messages),
                    (w.recipients, costs[1], Measure::Recipients),
                ] {
                    if limit > 0 && !admits(0, 0, cost, limit, w.window_ms(), 0) {
                        return Check::Over(Exceeded {
                            subject: s.clone(),
                            window: w.window,
                            measure,
                            limit,
                        });
                    }
                }
            }
        }
        if map.len() + subjects.len() > MAX_TRACKED {
            map.retain(|_, (wms, cs)| {
                !cs.iter()
                    .zip(wms.iter())
                    .all(|(c, &wm)| c.iter().all(|x| x.is_idle(now_ms, wm)))
            });
        }
        let mut untracked = false;
        for s in subjects {
            let ws = s.windows(cfg);
            if !map.contains_key(s) && map.len() >= MAX_TRACKED {
                untracked = true;
                continue;
            }
            let (wms, counters) = map.entry(s.clone()).or_insert_with(|| {
                (
                    ws.iter().map(Window::window_ms).collect(),
                    vec![[Counter::default(); 2]; ws.len()],
                )
            });
            if counters.len() != ws.len() {
                *wms = ws.iter().map(Window::window_ms).collect();
                *counters = vec![[Counter::default(); 2]; ws.len()];
            }
            for (w, c) in ws.iter().zip(counters.iter_mut()) {
                for (i, limit) in [w.messages, w.recipients].into_iter().enumerate() {
                    c[i].roll(now_ms, w.window_ms());
                    if limit > 0 {
                        c[i].cur += costs[i];
                    }
                }
            }
        }
        if untracked {
            Check::Untracked
        } else {
            Check::Admitted
        }
    }

    /// A subject's use against each of its limits at `now_ms`:
    /// `(window, measure, used, limit)`.
    pub fn usage(
        &self,
        cfg: &RateLimitConfig,
        subject: &Subject,
        now_ms: u64,
    ) -> Vec<(Duration, Measure, u64, u64)> {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let counters = map.get(subject).map(|(_, c)| c.as_slice()).unwrap_or(&[]);
        usage_of(subject.windows(cfg), counters, now_ms)
    }

    /// Counts a refusal of `user` at `now_ms`; true when it is the
    /// `cfg.lock_after`th within `cfg.lock_window` (the count starts again).
    pub fn count_over(&self, cfg: &RateLimitConfig, user: &str, now_ms: u64) -> bool {
        if cfg.lock_after == 0 {
            return false;
        }
        let window = cfg.lock_window.as_millis() as u64;
        let mut overs = self.overs.lock().unwrap_or_else(|e| e.into_inner());
        if overs.len() >= MAX_TRACKED {
            overs.retain(|_, t| t.last().is_some_and(|&l| l + window > now_ms));
        }
        let times = overs.entry(user.to_string()).or_default();
        times.retain(|&t| t + window > now_ms);
        times.push(now_ms);
        if times.len() >= cfg.lock_after as usize {
            overs.remove(user);
            return true;
        }
        false
    }

    /// Forgets a subject's counters; true when it had some.
    pub fn reset(&self, subject: &Subject) -> bool {
        if let Subject::Account(u) = subject {
            self.overs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(u);
        }
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(subject).is_some()
    }

    /// Every tracked subject.
    pub fn subjects(&self) -> Vec<Subject> {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Subject> = map.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The use of each limit in `ws` from `counters` (missing ones are zero).
pub fn usage_of(
    ws: &[Window],
    counters: &[[Counter; 2]],
    now_ms: u64,
) -> Vec<(Duration, Measure, u64, u64)> {
    let mut out = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let wm = w.window_ms();
        for (j, (limit, measure)) in [
            (w.messages, Measure::Messages),
            (w.recipients, Measure::Recipients),
        ]
        .into_iter()
        .enumerate()
        {
            if limit == 0 {
                continue;
            }
            let mut c = counters.get(i).map(|c| c[j]).unwrap_or_default();
            c.roll(now_ms, wm);
            out.push((
                w.window,
                measure,
                shown_use(c.prev, c.cur, wm, now_ms % wm),
                limit,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(ws: Vec<Window>) -> RateLimitConfig {
        RateLimitConfig {
            account: ws,
            ..RateLimitConfig::default()
        }
    }

    fn w(secs: u64, messages: u64, recipients: u64) -> Window {
        Window {
            window: Duration::from_secs(secs),
            messages,
            recipients,
        }
    }

    #[test]
    fn exactly_the_limit_passes_in_a_fresh_window() {
        let l = MemLimiter::default();
        let c = cfg(vec![w(60, 10, 0)]);
        let s = [Subject::Account("a".into())];
        let t0 = 60_000 * 1000;
        for i in 0..10 {
            assert_eq!(l.check(&c, &s, 1, t0 + i), Check::Admitted, "{i}");
        }
        assert!(matches!(l.check(&c, &s, 1, t0 + 11), Check::Over(_)));
        assert_eq!(
            l.usage(&c, &s[0], t0 + 11),
            vec![(Duration::from_secs(60), Measure::Messages, 10, 10)]
        );
        // Half way through the next window, half the old count still weighs.
        let half = t0 + 60_000 + 30_000;
        assert_eq!(l.usage(&c, &s[0], half)[0].2, 5);
        for _ in 0..5 {
            assert_eq!(l.check(&c, &s, 1, half), Check::Admitted);
        }
        assert!(matches!(l.check(&c, &s, 1, half), Check::Over(_)));
        assert!(l.reset(&s[0]));
        assert_eq!(l.check(&c, &s, 1, half), Check::Admitted);
    }

    #[test]
    fn recipients_and_several_windows_count_separately() {
        let l = MemLimiter::default();
        let c = cfg(vec![w(60, 100, 10), w(3600, 3, 0)]);
        let s = [Subject::Account("a".into())];
        assert_eq!(l.check(&c, &s, 6, 0), Check::Admitted);
        // 6 + 5 recipients is over the minute's 10.
        match l.check(&c, &s, 5, 1) {
            Check::Over(e) => assert_eq!((e.measure, e.limit), (Measure::Recipients, 10)),
            other => panic!("{other:?}"),
        }
        assert_eq!(l.check(&c, &s, 4, 2), Check::Admitted);
        // A minute later the previous minute still weighs (59/60 of 10): over.
        assert!(matches!(l.check(&c, &s, 1, 61_000), Check::Over(_)));
        assert_eq!(l.check(&c, &s, 1, 120_000), Check::Admitted);
        // The hour's 3 messages are used up.
        match l.check(&c, &s, 1, 121_000) {
            Check::Over(e) => assert_eq!(e.window, Duration::from_secs(3600)),
            other => panic!("{other:?}"),
        }
        // A message to more recipients than a limit allows is never admitted.
        let l = MemLimiter::default();
        assert!(matches!(l.check(&c, &s, 11, 0), Check::Over(_)));
    }

    #[test]
    fn a_refusal_by_one_subject_counts_nothing_anywhere() {
        let l = MemLimiter::default();
        let c = RateLimitConfig {
            account: vec![w(60, 100, 0)],
            client: vec![w(60, 1, 0)],
            ..RateLimitConfig::default()
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let s = subjects(&c, Some("a"), Some("a@example.com"), Some(ip));
        assert_eq!(s.len(), 2);
        assert_eq!(l.check(&c, &s, 1, 0), Check::Admitted);
        assert!(matches!(l.check(&c, &s, 1, 1), Check::Over(_)));
        assert_eq!(l.usage(&c, &s[0], 2)[0].2, 1);
    }

    #[test]
    fn exemptions_and_networks() {
        let c = RateLimitConfig {
            account: vec![w(60, 1, 0)],
            sender_domain: vec![w(60, 1, 0)],
            client: vec![w(60, 1, 0)],
            exempt_accounts: vec!["Boss".into()],
            exempt_domains: vec!["Lists.Example.com".into()],
            exempt_clients: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            ..RateLimitConfig::default()
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(subjects(&c, Some("x"), None, ip("10.1.2.3")).is_empty());
        assert!(subjects(&c, Some("x"), None, ip("::ffff:10.1.2.3")).is_empty());
        assert!(subjects(&c, Some("x"), None, ip("2001:db8::1")).is_empty());
        assert_eq!(
            subjects(
                &c,
                Some("boss"),
                Some("b@lists.example.com"),
                ip("11.0.0.1")
            ),
            vec![Subject::Client("11.0.0.1".parse().unwrap())]
        );
        assert_eq!(subjects(&c, None, Some("x@y"), None), vec![]);
        assert_eq!(subjects(&c, Some("u"), Some("u@Y.org"), None).len(), 2);
        assert!(Net::parse("10.0.0.0/33").is_err());
        assert!(Net::parse("nonsense").is_err());
        assert!(
            Net::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn the_configuration_is_checked() {
        let mut c = cfg(vec![w(60, 0, 0)]);
        assert_eq!(c.check().unwrap_err().0, "ratelimit.account");
        c.account = vec![w(60, 10, 0)];
        c.check().unwrap();
        c.reply = "550 5.7.1 no".into();
        assert_eq!(c.check().unwrap_err().0, "ratelimit.reply");
        c.reply = DEFAULT_REPLY.into();
        c.exempt_clients = vec!["x".into()];
        assert_eq!(c.check().unwrap_err().0, "ratelimit.exempt_clients");
        let parsed: RateLimitConfig = toml::from_str(
            "account = [{ window = \"1m\", messages = 60 }, { window = \"1d\", messages = 2000, \
             recipients = 5000 }]\nlock_after = 3\n",
        )
        .unwrap();
        assert_eq!(parsed.account[1].window, Duration::from_secs(86_400));
        parsed.check().unwrap();
    }

    proptest! {
        /// Whatever the times and costs, the use estimated at any admission never
        /// exceeds the limit, and within one fixed window the admitted cost is at
        /// most the limit.
        #[test]
        fn never_more_than_the_limit(
            limit in 1u64..50,
            window_s in 1u64..120,
            steps in proptest::collection::vec((0u64..5_000, 0u64..4), 1..200),
        ) {
            let l = MemLimiter::default();
            let c = cfg(vec![w(window_s, 0, limit)]);
            let s = [Subject::Account("p".into())];
            let wm = window_s * 1000;
            let mut now = 1_000_000u64;
            let mut per_window: HashMap<u64, u64> = HashMap::new();
            for (dt, cost) in steps {
                now += dt;
                if l.check(&c, &s, cost, now) == Check::Admitted {
                    *per_window.entry(now / wm).or_default() += cost;
                }
                let used = l.usage(&c, &s[0], now);
                prop_assert!(used[0].2 <= limit);
            }
            for (_, n) in per_window {
                prop_assert!(n <= limit);
            }
        }

        /// The rule is monotone: more use or more cost never admits what less refused.
        #[test]
        fn admits_is_monotone(
            prev in 0u64..100, cur in 0u64..100, cost in 1u64..10,
            limit in 1u64..200, window in 1u64..100_000, elapsed in 0u64..100_000,
        ) {
            if admits(prev + 1, cur, cost, limit, window, elapsed) {
                prop_assert!(admits(prev, cur, cost, limit, window, elapsed));
            }
            if admits(prev, cur, cost + 1, limit, window, elapsed) {
                prop_assert!(admits(prev, cur, cost, limit, window, elapsed));
            }
        }
    }
}
