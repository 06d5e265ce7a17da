//! State that must agree across hosts (`[state] backend`): account locks, their
//! reject history and sending-rate counters.
//!
//! - `embedded` (the default): locks in the redb account store
//!   ([`crate::accounts`]), rate counters in this process's memory
//!   ([`ratelimit::MemLimiter`]).
//! - a Redis URL: everything in Redis ([`redis::RedisState`]), shared by every
//!   host using the same Redis, with a journal of lock changes made while Redis
//!   was away ([`journal`]).
//!
//! The service checks a message before scanning it (`Service::admit`: with Redis
//! the account's lock and the rate limits, [`redis::RedisState::admit`]; with the
//! embedded backend the limits) and counts its reject after.

pub mod journal;
pub mod ratelimit;
pub mod redis;

use crate::accounts::{AccountStore, LockRecord, StoreError};
use ratelimit::{Measure, RateLimitConfig, Subject};
use std::sync::Arc;
use std::time::Duration;

/// The state backend's lock operations for admins (`chaff accounts`, the admin
/// API), whichever backend is configured. Blocking: call off the runtimes.
#[derive(Clone, Copy)]
pub enum Locks<'a> {
    /// The redb account store.
    Embedded(&'a AccountStore),
    /// Redis.
    Redis(&'a Arc<redis::RedisState>),
}

/// A lock operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocksError {
    /// The redb store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis (or the journal) failed.
    #[error(transparent)]
    State(#[from] redis::StateError),
    /// Redis did not answer in time.
    #[error("the state backend did not answer in time")]
    Timeout,
}

impl Locks<'_> {
    fn block<T: Send + 'static>(
        r: &Arc<redis::RedisState>,
        f: impl std::future::Future<Output = Result<T, redis::StateError>> + Send + 'static,
    ) -> Result<T, LocksError> {
        Ok(r.block(f).ok_or(LocksError::Timeout)??)
    }

    /// Every locked account, by name.
    pub fn list(&self) -> Result<Vec<(String, LockRecord)>, LocksError> {
        match self {
            Locks::Embedded(s) => Ok(s.list()?),
            Locks::Redis(r) => {
                let me = Arc::clone(r);
                Self::block(r, async move { me.list().await })
            }
        }
    }

    /// The lock on `user`.
    pub fn lock_of(&self, user: &str) -> Result<Option<LockRecord>, LocksError> {
        match self {
            Locks::Embedded(s) => Ok(s.lock_of(user)?),
            Locks::Redis(r) => {
                let (me, u) = (Arc::clone(r), user.to_string());
                Self::block(r, async move { me.lock_of(&u).await })
            }
        }
    }

    /// Locks `user` by hand; false when it was locked already.
    pub fn lock(&self, user: &str, now: u64, reason: &str) -> Result<bool, LocksError> {
        match self {
            Locks::Embedded(s) => Ok(s.lock(user, now, reason)?),
            Locks::Redis(r) => {
                let rec = LockRecord {
                    locked_at: now,
                    reason: reason.to_string(),
                    rejects: 0,
                    window_secs: 0,
                    last_queue_id: None,
                    last_score: None,
                    messages: Vec::new(),
                };
                let (me, u) = (Arc::clone(r), user.to_string());
                let at = crate::quarantine::now_ms();
                Self::block(r, async move { me.set_lock(&u, at, Some(rec)).await })
            }
        }
    }

    /// Unlocks `user`; false when it was not locked.
    pub fn unlock(&self, user: &str) -> Result<bool, LocksError> {
        match self {
            Locks::Embedded(s) => Ok(s.unlock(user)?),
            Locks::Redis(r) => {
                let (me, u) = (Arc::clone(r), user.to_string());
                let at = crate::quarantine::now_ms();
                Self::block(r, async move { me.set_lock(&u, at, None).await })
            }
        }
    }

    /// A subject's use against each of its limits: `(window, measure, used,
    /// limit)`. With the embedded backend the counters live in the service's
    /// memory: `limiter` is the service's (None from a command: no use known).
    pub fn usage(
        &self,
        cfg: &RateLimitConfig,
        limiter: Option<&ratelimit::MemLimiter>,
        subject: &Subject,
    ) -> Result<Vec<(Duration, Measure, u64, u64)>, LocksError> {
        let now = crate::quarantine::now_ms();
        match self {
            Locks::Embedded(_) => Ok(match limiter {
                Some(l) => l.usage(cfg, subject, now),
                None => ratelimit::usage_of(subject.windows(cfg), &[], now),
            }),
            Locks::Redis(r) => {
                let (me, c, s) = (Arc::clone(r), cfg.clone(), subject.clone());
                Self::block(r, async move { me.usage(&c, &s, now).await })
            }
        }
    }

    /// Clears a subject's counters.
    pub fn reset(
        &self,
        cfg: &RateLimitConfig,
        limiter: Option<&ratelimit::MemLimiter>,
        subject: &Subject,
    ) -> Result<(), LocksError> {
        match self {
            Locks::Embedded(_) => {
                if let Some(l) = limiter {
                    l.reset(subject);
                }
                Ok(())
            }
            Locks::Redis(r) => {
                let (me, c, s) = (Arc::clone(r), cfg.clone(), subject.clone());
                let now = crate::quarantine::now_ms();
                Self::block(r, async move { me.reset(&c, &s, now).await })
            }
        }
    }
}
