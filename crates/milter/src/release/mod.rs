//! Releasing quarantined mail ("resend", 重新发送): delivering a message chaff
//! held to its original recipients, with its original envelope, so that chaff
//! does not filter it again.
//!
//! Two ways, after `[quarantine] mode`:
//! - **store** (chaff kept the message and told the MTA to discard it): the
//!   stored message goes by SMTP to the relay, the local MTA ([`smtp`]), with a
//!   [release token](token) in front: a header that the milter, seeing it come
//!   back through the MTA, verifies with the [release key](key) and lets through
//!   unscanned, once ([`gate`]). Nobody without the key can make one.
//! - **hold** (the MTA keeps the message in its hold queue): Postfix is told to
//!   release its queue file ([`hold`]); the milter does not see it again.
//!
//! [`deliver`] does either and says what happened ([`Delivery`]) and what that
//! means for the quarantine entry ([`Settlement`]). It knows nothing of the
//! quarantine store; the caller (the `chaff quarantine release` command, the
//! HTTP API, both through [`crate::resend::release_entry`]) wraps it so that two
//! releases asked at the same moment deliver once and a crash never re-sends
//! silently:
//!
//! ```text
//! store.begin_release(id, who)   // compare-and-set Held → Releasing, durable;
//!                                // refused (409) unless Held: one caller wins
//! match release::deliver(&request, &config) {
//!     Ok(d) => match d.settlement() {
//!         Settlement::Released     => store.finish_release(id, &d),   // → Released
//!         Settlement::NotDelivered => store.abandon_release(id, &d),  // → Held, with why
//!         Settlement::InDoubt      => store.mark_in_doubt(id, &d),    // → InDoubt
//!     },
//!     Err(e) => store.abandon_release(id, &e),  // nothing was sent
//! }
//! ```
//!
//! An entry left in `Releasing` by a crash between the claim and the finish is
//! in doubt as well (the message may have been delivered): it is shown to the
//! admin as such and never released again without being asked to explicitly.
//! `Releasing` lasts at most the relay's time limits ([`smtp::RelayTimeouts`]:
//! connect, each command, the end of the message) or the Postfix commands'
//! ([`hold::Postfix::timeout`]), so one older than that was interrupted.
//!
//! Everything here blocks (sockets, child processes): from async code, call it
//! in `spawn_blocking`.

pub mod gate;
pub mod hold;
pub mod key;
pub mod smtp;
pub mod token;

pub use gate::{Refusal, ReleaseGate};
pub use hold::{HoldError, HoldOutcome, Postfix, Privilege};
pub use key::{KeyError, ReleaseKey};
pub use smtp::{RecipientResult, Relay, RelayError, RelayOutcome, RelayTimeouts, SmtpReply, Stage};
pub use token::{ReleaseMark, TokenError};

use std::fmt;

/// How a quarantined message is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseMode {
    /// By SMTP to the relay, from chaff's own copy, with a release token.
    Store,
    /// From Postfix's hold queue, by queue id.
    Hold,
}

/// The message to release, as the quarantine entry has it.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseRequest<'a> {
    /// The quarantine entry's id (it goes in the token: 1–48 of
    /// `A-Z a-z 0-9 . _ -`).
    pub id: &'a str,
    /// The original envelope sender; `None` or empty for the null sender `<>`.
    pub sender: Option<&'a str>,
    /// The original envelope recipients.
    pub recipients: &'a [String],
    /// The message as received (store mode).
    pub raw: &'a [u8],
    /// The MTA's queue id (hold mode).
    pub queue_id: Option<&'a str>,
    /// Which way.
    pub mode: ReleaseMode,
}

/// How to release.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    /// The relay for store mode (`[quarantine] release_relay`; default
    /// `127.0.0.1:25`).
    pub relay: Relay,
    /// The release key, the same file the milter service reads (store mode).
    /// Load it with [`ReleaseKey::load`], not `load_or_create`: the service
    /// makes it.
    pub key: Option<ReleaseKey>,
    /// How long a token stays good, in seconds ([`token::DEFAULT_TTL`]).
    pub token_ttl: u64,
    /// The Postfix commands for hold mode.
    pub postfix: Postfix,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        ReleaseConfig {
            relay: Relay::default(),
            key: None,
            token_ttl: token::DEFAULT_TTL,
            postfix: Postfix::default(),
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Store mode: what the relay did with the message.
    Relayed(RelayOutcome),
    /// Hold mode: what happened to the held queue file.
    Unheld(HoldOutcome),
}

/// What a [`Delivery`] means for the quarantine entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The message is on its way (for some recipients at least: see
    /// [`RelayOutcome::refused`]): the entry is released.
    Released,
    /// Certainly not delivered (refused, or a temporary failure before the
    /// message was handed over): the entry goes back to held, and may be
    /// released again.
    NotDelivered,
    /// Perhaps delivered, perhaps not: the entry is in doubt until the admin
    /// has looked (the MTA's log) and decided.
    InDoubt,
}

impl Delivery {
    /// What this means for the quarantine entry.
    pub fn settlement(&self) -> Settlement {
        match self {
            Delivery::Relayed(RelayOutcome::Delivered { .. }) => Settlement::Released,
            Delivery::Relayed(
                RelayOutcome::Rejected { .. } | RelayOutcome::TemporaryFailure { .. },
            ) => Settlement::NotDelivered,
            Delivery::Relayed(RelayOutcome::InDoubt { .. }) => Settlement::InDoubt,
            // Out of the hold queue, by this release or an earlier one: on its way.
            Delivery::Unheld(HoldOutcome::Released { .. } | HoldOutcome::NotHeld { .. }) => {
                Settlement::Released
            }
            // Gone from the queue (delivered, deleted or expired), or not seen
            // after postsuper: nobody can tell.
            Delivery::Unheld(HoldOutcome::NotFound | HoldOutcome::Unconfirmed { .. }) => {
                Settlement::InDoubt
            }
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Relayed(o) => write!(f, "{o}"),
            Delivery::Unheld(HoldOutcome::Released {
                queue,
                flush_failed,
            }) => {
                f.write_str("released from the hold queue")?;
                if let Some(q) = queue {
                    write!(f, " (now {q})")?;
                }
                if let Some(why) = flush_failed {
                    write!(f, "; delivery waits for the next queue run: {why}")?;
                }
                Ok(())
            }
            Delivery::Unheld(HoldOutcome::NotHeld { queue }) => {
                write!(f, "not on hold: already released (in the {queue} queue)")
            }
            Delivery::Unheld(HoldOutcome::NotFound) => f.write_str(
                "not in the queue: delivered after an earlier release, deleted or expired",
            ),
            Delivery::Unheld(HoldOutcome::Unconfirmed { reason }) => {
                write!(f, "release not confirmed: {reason}")
            }
        }
    }
}

/// Why nothing was delivered (nothing was sent, or `postsuper` did not move the
/// file): the entry goes back to held.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Store mode without a release key.
    #[error(
        "no release key: store-mode release needs the key the milter service uses \
         (quarantine.release_key)"
    )]
    NoKey,
    /// Hold mode without a queue id.
    #[error("the entry has no queue id: it cannot be released from the hold queue")]
    NoQueueId,
    /// The token could not be made (a bad entry id, no random bytes).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The envelope cannot be sent.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The hold queue could not be released.
    #[error(transparent)]
    Hold(#[from] HoldError),
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Releases one message: in store mode, a new token for it and SMTP to the
/// relay; in hold mode, `postsuper -H` on its queue id. See the module's
/// documentation for what the caller does around it.
pub fn deliver(req: &ReleaseRequest<'_>, config: &ReleaseConfig) -> Result<Delivery, ReleaseError> {
    deliver_at(req, config, now_secs())
}

/// [`deliver`] at `now` (seconds since the epoch), for tests.
pub fn deliver_at(
    req: &ReleaseRequest<'_>,
    config: &ReleaseConfig,
    now: u64,
) -> Result<Delivery, ReleaseError> {
    match req.mode {
        ReleaseMode::Store => {
            let key = config.key.as_ref().ok_or(ReleaseError::NoKey)?;
            let value = token::issue(key, req.id, token::body_of(req.raw), now, config.token_ttl)?;
            let message = token::prefixed(req.raw, &value);
            let outcome = smtp::send(&config.relay, req.sender, req.recipients, &message)?;
            Ok(Delivery::Relayed(outcome))
        }
        ReleaseMode::Hold => {
            let queue_id = req.queue_id.ok_or(ReleaseError::NoQueueId)?;
            Ok(Delivery::Unheld(config.postfix.release(queue_id)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mode: ReleaseMode) -> ReleaseRequest<'static> {
        ReleaseRequest {
            id: "E1",
            sender: None,
            recipients: &[],
            raw: b"Subject: x\r\n\r\nbody\r\n",
            queue_id: None,
            mode,
        }
    }

    #[test]
    fn what_is_missing_is_said_before_anything_is_sent() {
        let c = ReleaseConfig::default();
        assert!(matches!(
            deliver(&request(ReleaseMode::Store), &c),
            Err(ReleaseError::NoKey)
        ));
        assert!(matches!(
            deliver(&request(ReleaseMode::Hold), &c),
            Err(ReleaseError::NoQueueId)
        ));
        let c = ReleaseConfig {
            key: Some(ReleaseKey::from_bytes([1; 32])),
            ..ReleaseConfig::default()
        };
        assert!(matches!(
            deliver(&request(ReleaseMode::Store), &c),
            Err(ReleaseError::Relay(RelayError::NoRecipients))
        ));
        let mut r = request(ReleaseMode::Store);
        r.id = "no spaces";
        let rcpt = ["a@example.org".to_string()];
        r.recipients = &rcpt;
        assert!(matches!(
            deliver(&r, &c),
            Err(ReleaseError::Token(TokenError::BadId(_)))
        ));
    }

    #[test]
    fn settlements() {
        let reply = SmtpReply {
            code: 250,
            text: "ok".into(),
        };
        let cases = [
            (
                Delivery::Relayed(RelayOutcome::Delivered {
                    reply: reply.clone(),
                    queue_id: None,
                    recipients: vec![],
                }),
                Settlement::Released,
            ),
            (
                Delivery::Relayed(RelayOutcome::TemporaryFailure {
                    stage: Stage::Connect,
                    reply: None,
                    reason: "refused".into(),
                    recipients: vec![],
                }),
                Settlement::NotDelivered,
            ),
            (
                Delivery::Relayed(RelayOutcome::InDoubt {
                    reason: "timeout".into(),
                    recipients: vec![],
                }),
                Settlement::InDoubt,
            ),
            (
                Delivery::Unheld(HoldOutcome::NotHeld {
                    queue: "deferred".into(),
                }),
                Settlement::Released,
            ),
            (Delivery::Unheld(HoldOutcome::NotFound), Settlement::InDoubt),
        ];
        for (d, s) in cases {
            assert_eq!(d.settlement(), s, "{d}");
        }
    }
}
