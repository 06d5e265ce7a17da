//! Failed authentication attempts, counted per source address and per user name,
//! and the delays they earn.
//!
//! - A source address gets [`FREE_FAILURES`] failures free; after that it is
//!   refused (429, `Retry-After`) without any check for 2^(n − free) seconds after
//!   its last failure, at most [`MAX_SOURCE_DELAY`]. A refusal costs nothing
//!   (no Argon2), so a guesser is held to a few tries an hour.
//! - A user name's failures make every password check for that name wait
//!   100 ms × 2^(n − 1) before it starts, at most [`MAX_USER_DELAY`]. The wait is
//!   a delay, not a refusal: someone guessing the admin's password from many
//!   addresses slows the admin's logins down by seconds, but cannot lock the admin
//!   out.
//! - Failures are forgotten [`FORGET_AFTER`] after the last one; a correct password
//!   clears its user's count (not its address's: a guesser holding one valid
//!   account could otherwise clear their address between guesses).
//!
//! Both tables hold at most [`MAX_ENTRIES`] entries: when full, forgotten entries
//! go first, then the oldest.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures a source address may make before it has to wait.
pub const FREE_FAILURES: u32 = 5;
/// Longest wait imposed on a source address.
pub const MAX_SOURCE_DELAY: Duration = Duration::from_secs(15 * 60);
/// Longest wait imposed on the password checks of one user name.
pub const MAX_USER_DELAY: Duration = Duration::from_secs(5);
/// Failures are forgotten this long after the last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Most entries per table.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

#[derive(Debug)]
struct Table<K>(HashMap<K, Entry>);

impl<K: Hash + Eq + Clone> Table<K> {
    fn get(&self, k: &K, now: Instant) -> u32 {
        self.0
            .get(k)
            .filter(|e| now.saturating_duration_since(e.last) < FORGET_AFTER)
            .map_or(0, |e| e.failures)
    }

    fn last(&self, k: &K) -> Option<Instant> {
        self.0.get(k).map(|e| e.last)
    }

    fn fail(&mut self, k: &K, now: Instant) -> u32 {
        let failures = self.get(k, now).saturating_add(1);
        if !self.0.contains_key(k) && self.0.len() >= MAX_ENTRIES {
            self.0
                .retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
            if self.0.len() >= MAX_ENTRIES
                && let Some(oldest) = self
                    .0
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
            {
                self.0.remove(&oldest);
            }
        }
        self.0.insert(
            k.clone(),
            Entry {
                failures,
                last: now,
            },
        );
        failures
    }
}

/// The wait a source address with `failures` failures owes after its last one.
pub fn source_delay(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES).min(20);
    Duration::from_secs(1u64 << exp).min(MAX_SOURCE_DELAY)
}

/// The wait before checking a password of a user name with `failures` failures.
pub fn user_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exp = (failures - 1).min(16);
    (Duration::from_millis(100) * (1u32 << exp)).min(MAX_USER_DELAY)
}

/// The failure counts of the listener.
#[derive(Debug)]
pub struct Attempts {
    sources: Mutex<Table<IpAddr>>,
    users: Mutex<Table<String>>,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts {
            sources: Mutex::new(Table(HashMap::new())),
            users: Mutex::new(Table(HashMap::new())),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Attempts {
    /// How long `source` must still wait before it may try again (None: it may
    /// try now).
    pub fn source_wait(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        let t = lock(&self.sources);
        let failures = t.get(&source, now);
        let until = t.last(&source)? + source_delay(failures);
        (until > now).then(|| until - now)
    }

    /// The delay before checking a password for `user`.
    pub fn user_wait(&self, user: &str, now: Instant) -> Duration {
        user_delay(lock(&self.users).get(&user.to_string(), now))
    }

    /// Counts a failure of `source` (and of `user`, for a password); returns the
    /// source's count.
    pub fn failed(&self, source: IpAddr, user: Option<&str>, now: Instant) -> u32 {
        if let Some(u) = user {
            lock(&self.users).fail(&u.to_string(), now);
        }
        lock(&self.sources).fail(&source, now)
    }

    /// A correct password for `user`: its failures are forgotten.
    pub fn succeeded(&self, user: &str) {
        lock(&self.users).0.remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(source_delay(FREE_FAILURES - 1), Duration::ZERO);
        assert_eq!(source_delay(FREE_FAILURES), Duration::from_secs(1));
        assert_eq!(source_delay(FREE_FAILURES + 3), Duration::from_secs(8));
        assert_eq!(source_delay(u32::MAX), MAX_SOURCE_DELAY);
        assert_eq!(user_delay(0), Duration::ZERO);
        assert_eq!(user_delay(1), Duration::from_millis(100));
        assert_eq!(user_delay(3), Duration::from_millis(400));
        assert_eq!(user_delay(u32::MAX), MAX_USER_DELAY);
    }

    #[test]
    fn a_source_waits_after_its_free_failures_and_is_forgotten_later() {
        let a = Attempts::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..FREE_FAILURES - 1 {
            a.failed(ip, None, t0);
            assert_eq!(a.source_wait(ip, t0), None, "after {} failures", i + 1);
        }
        a.failed(ip, Some("admin"), t0);
        assert_eq!(a.source_wait(ip, t0), Some(Duration::from_secs(1)));
        assert_eq!(a.source_wait(ip, t0 + Duration::from_secs(1)), None);
        assert_eq!(a.source_wait(other, t0), None);
        // The user's checks are slowed, not refused; a success clears them.
        assert_eq!(a.user_wait("admin", t0), Duration::from_millis(100));
        a.succeeded("admin");
        assert_eq!(a.user_wait("admin", t0), Duration::ZERO);
        // An hour later the address starts afresh.
        let later = t0 + FORGET_AFTER;
        a.failed(ip, None, later);
        assert_eq!(a.source_wait(ip, later), None);
    }

    #[test]
    fn the_tables_stay_bounded() {
        let a = Attempts::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 100) {
            let ip = IpAddr::from(i.to_be_bytes());
            a.failed(
                ip,
                Some(&format!("u{i}")),
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(lock(&a.sources).0.len() <= MAX_ENTRIES);
        assert!(lock(&a.users).0.len() <= MAX_ENTRIES);
    }
}
