//! The milter's side of a release: does a message carry a token that lets it
//! through unscanned, and has that token been used before?
//!
//! A token is accepted for one message only. The gate remembers the tokens it
//! accepted (their MACs, unique to each) until they expire, at most
//! [`MAX_REMEMBERED`] at once: past that, after dropping the expired ones, a new
//! token is refused (the message is scanned) rather than forgetting one that
//! could then be replayed. Only genuine tokens are remembered, and only the admin
//! makes those, so an outsider cannot fill the set.
//!
//! The set lives in memory: after a restart of the service a token accepted
//! before it could be accepted once more until it expires ([`DEFAULT_TTL`], one
//! hour). That is accepted on purpose: the replay needs the token and the very
//! same body, and the token is seen only by the relay and chaff (the milter
//! removes the header before delivery), so whoever can replay it can already read
//! the MTA's queue, and the most it gets is the message the admin released
//! delivered again. Persisting the set would put a disk write on the path of
//! every released message for that.
//!
//! [`DEFAULT_TTL`]: super::token::DEFAULT_TTL

use super::key::ReleaseKey;
use super::token::{self, ReleaseMark, TokenError};
use std::collections::HashMap;
use std::sync::Mutex;

/// Most accepted tokens remembered at once (about 1 MiB): 16,384 releases within
/// one token lifetime.
pub const MAX_REMEMBERED: usize = 16_384;

/// Most token headers examined on one message; more are ignored.
pub const MAX_TOKENS_PER_MESSAGE: usize = 4;

/// Why a message's token did not let it through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The token did not verify.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token verified but was used for a message before.
    #[error("release token for {id} already used")]
    Replayed {
        /// The entry it released.
        id: String,
    },
    /// The token verified but [`MAX_REMEMBERED`] unexpired tokens are remembered.
    #[error("release token for {id} refused: {MAX_REMEMBERED} release tokens in use")]
    Full {
        /// The entry it released.
        id: String,
    },
    /// The message carries a token but the service has no release key
    /// (`quarantine.release_key`).
    #[error("release token ignored: no release key configured (quarantine.release_key)")]
    NoKey,
}

impl Refusal {
    /// Every label [`Refusal::kind`] gives, for metrics.
    pub const KINDS: [&'static str; 9] = [
        "malformed",
        "bad_mac",
        "expired",
        "too_long",
        "body_changed",
        "replayed",
        "full",
        "no_key",
        "other",
    ];

    /// A short name for logs and metrics labels (one of [`Refusal::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Token(e) => match e.kind() {
                k @ ("malformed" | "bad_mac" | "expired" | "too_long" | "body_changed") => k,
                _ => "other",
            },
            Refusal::Replayed { .. } => "replayed",
            Refusal::Full { .. } => "full",
            Refusal::NoKey => "no_key",
        }
    }
}

/// Tokens accepted and not yet expired: MAC → expiry.
#[derive(Debug, Default)]
struct Used {
    tags: HashMap<[u8; 32], u64>,
}

impl Used {
    fn claim(&mut self, mark: &ReleaseMark, now: u64, cap: usize) -> Result<(), Refusal> {
        if self.tags.get(&mark.tag).is_some_and(|&exp| exp > now) {
            return Err(Refusal::Replayed {
                id: mark.id.clone(),
            });
        }
        if self.tags.len() >= cap {
            self.tags.retain(|_, exp| *exp > now);
            if self.tags.len() >= cap {
                return Err(Refusal::Full {
                    id: mark.id.clone(),
                });
            }
        }
        self.tags.insert(mark.tag, mark.expires);
        Ok(())
    }
}

/// The release key and the tokens already used.
#[derive(Debug)]
pub struct ReleaseGate {
    key: ReleaseKey,
    used: Mutex<Used>,
    cap: usize,
}

impl ReleaseGate {
    /// A gate that accepts tokens made with `key`.
    pub fn new(key: ReleaseKey) -> ReleaseGate {
        ReleaseGate::with_capacity(key, MAX_REMEMBERED)
    }

    /// A gate remembering at most `cap` tokens (tests).
    pub fn with_capacity(key: ReleaseKey, cap: usize) -> ReleaseGate {
        ReleaseGate {
            key,
            used: Mutex::new(Used::default()),
            cap: cap.max(1),
        }
    }

    /// Checks the token header values of a message whose body is `body` at `now`
    /// (seconds since the epoch): the first that verifies and was not used before
    /// releases the message, and is used up. Otherwise the refusal of the first.
    /// `values` must not be empty.
    pub fn check(&self, values: &[String], body: &[u8], now: u64) -> Result<ReleaseMark, Refusal> {
        let hash = token::body_hash(body);
        let mut first = None;
        for v in values.iter().take(MAX_TOKENS_PER_MESSAGE) {
            let r = token::verify_hashed(&self.key, v, &hash, now)
                .map_err(Refusal::from)
                .and_then(|mark| {
                    self.used
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .claim(&mark, now, self.cap)
                        .map(|()| mark)
                });
            match r {
                Ok(mark) => return Ok(mark),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or(Refusal::Token(TokenError::Malformed("no token".into()))))
    }

    /// Tokens remembered now (tests, metrics).
    pub fn remembered(&self) -> usize {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tags
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::token::{DEFAULT_TTL, issue};

    const NOW: u64 = 1_700_000_000;

    fn key() -> ReleaseKey {
        ReleaseKey::from_bytes([9; 32])
    }

    #[test]
    fn a_token_releases_one_message_only() {
        let gate = ReleaseGate::new(key());
        let body = b"the released body\r\n";
        let t = issue(&key(), "E1", body, NOW, DEFAULT_TTL).unwrap();
        let mark = gate.check(std::slice::from_ref(&t), body, NOW).unwrap();
        assert_eq!(mark.id, "E1");
        assert_eq!(
            gate.check(std::slice::from_ref(&t), body, NOW + 1),
            Err(Refusal::Replayed { id: "E1".into() })
        );
        // A new token for the same entry (a retry after a temporary failure) works.
        let again = issue(&key(), "E1", body, NOW, DEFAULT_TTL).unwrap();
        assert!(gate.check(&[again], body, NOW + 2).is_ok());
        // After expiry the old one is refused as expired, whatever the set holds.
        assert!(matches!(
            gate.check(&[t], body, NOW + DEFAULT_TTL),
            Err(Refusal::Token(TokenError::Expired { .. }))
        ));
    }

    #[test]
    fn a_forged_token_beside_a_good_one_does_not_hide_it() {
        let gate = ReleaseGate::new(key());
        let body = b"x\r\n";
        let good = issue(&key(), "E2", body, NOW, 60).unwrap();
        let forged = issue(&ReleaseKey::from_bytes([1; 32]), "E2", body, NOW, 60).unwrap();
        assert_eq!(
            gate.check(std::slice::from_ref(&forged), body, NOW),
            Err(Refusal::Token(TokenError::BadMac))
        );
        assert_eq!(gate.check(&[forged, good], body, NOW).unwrap().id, "E2");
        assert_eq!(Refusal::Token(TokenError::BadMac).kind(), "bad_mac");
        assert_eq!(Refusal::NoKey.kind(), "no_key");
    }

    #[test]
    fn a_full_set_refuses_until_tokens_expire() {
        let gate = ReleaseGate::with_capacity(key(), 2);
        let body = b"b\r\n";
        let t = |ttl| issue(&key(), "E", body, NOW, ttl).unwrap();
        assert!(gate.check(&[t(10)], body, NOW).is_ok());
        assert!(gate.check(&[t(100)], body, NOW).is_ok());
        assert_eq!(
            gate.check(&[t(100)], body, NOW),
            Err(Refusal::Full { id: "E".into() })
        );
        // Once the first has expired there is room again.
        assert!(gate.check(&[t(100)], body, NOW + 10).is_ok());
        assert_eq!(gate.remembered(), 2);
    }
}
