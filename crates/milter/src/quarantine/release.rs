//! An entry's state machine (see [`EntryState`]): each change is one write
//! transaction that reads the state, checks it and writes the next one with the
//! admin action's log row, so of two admins (or processes) asking at the same
//! moment exactly one wins and the other gets a [`StateError::Conflict`] saying
//! who did what when (HTTP 409).
//!
//! A release is three steps around the delivery, which happens outside the
//! store: [`StateStore::begin_release`] marks the entry `Releasing` and hands the
//! message over; then [`StateStore::finish_release`] (delivered) or
//! [`StateStore::abandon_release`] (refused cleanly: back to `Held`), or
//! [`StateStore::mark_in_doubt`] (the delivery cannot tell whether the message
//! went: in doubt at once). A process that dies between them leaves the entry
//! `Releasing`; after [`super::RELEASE_IN_DOUBT_AFTER`] it is in doubt too. Only
//! an admin settles an entry in doubt: [`StateStore::resolve_in_doubt`], or
//! `begin_release` with `force`.

use super::audit::{self, AdminAction};
use super::db::{ENTRIES, MESSAGES, META, META_BYTES, meta_add};
use super::entry::{Detail, EntryState, StoredEnvelope, Summary, decompress};
use super::id::EntryId;
use super::{StateStore, StoreError, json, parse, salt, summary_in};
use crate::accounts::format_time;
use redb::{ReadableTable, WriteTransaction};

/// A state change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// There is no such entry.
    #[error("no quarantine entry {0}")]
    NotFound(EntryId),
    /// The entry is not in a state that allows the change; says who did what when.
    #[error("{id}: {}", describe(state, *now))]
    Conflict {
        /// The entry.
        id: EntryId,
        /// Its state.
        state: EntryState,
        /// When it was checked (in doubt or not).
        now: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state in words, for a refusal.
fn describe(s: &EntryState, now: u64) -> String {
    match s {
        EntryState::Held => "is held".into(),
        EntryState::Releasing { by, at, doubt, .. } if s.in_doubt(now) => format!(
            "a release by {by} started at {} {}: it is in doubt (the message may \
             or may not have been delivered); check the recipient's mailbox and the MTA's log, \
             then force a new release or mark it done",
            format_time(*at),
            match doubt {
                Some(why) => format!("ended uncertain ({why})"),
                None => "never finished".into(),
            }
        ),
        EntryState::Releasing { by, at, .. } => {
            format!("is being released by {by} since {}", format_time(*at))
        }
        EntryState::Released { by, at, how } => {
            format!(
                "was already released by {by} at {} ({how})",
                format_time(*at)
            )
        }
        EntryState::Deleted { by, at } => {
            format!("was deleted by {by} at {}", format_time(*at))
        }
    }
}

/// A release under way: what the delivery needs, and the attempt to finish or
/// abandon.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseTicket {
    /// The entry.
    pub id: EntryId,
    /// Who asked.
    pub by: String,
    /// This attempt.
    pub attempt: u64,
    /// The entry as it was (its state before this release).
    pub summary: Summary,
    /// The original envelope: deliver from its sender to its recipients.
    pub envelope: StoredEnvelope,
    /// The message as it was received.
    pub message: Vec<u8>,
}

/// The entry's summary and detail rows as read in `txn`, or `NotFound`.
fn load(txn: &WriteTransaction, id: EntryId) -> Result<Result<Summary, StateError>, redb::Error> {
    Ok(summary_in(&txn.open_table(ENTRIES)?, id)?.ok_or(StateError::NotFound(id)))
}

fn store_summary(txn: &WriteTransaction, s: &Summary) -> Result<(), redb::Error> {
    txn.open_table(ENTRIES)?
        .insert(s.id.as_u64(), json(s)?.as_slice())?;
    Ok(())
}

fn conflict(s: &Summary, now: u64) -> StateError {
    StateError::Conflict {
        id: s.id,
        state: s.state.clone(),
        now,
    }
}

fn log(
    txn: &WriteTransaction,
    now: u64,
    by: &str,
    what: &str,
    id: EntryId,
    detail: String,
) -> Result<(), redb::Error> {
    audit::append(
        txn,
        &AdminAction {
            at: now,
            by: by.to_string(),
            what: what.to_string(),
            id: Some(id),
            detail,
        },
    )
}

impl StateStore {
    /// Starts releasing entry `id` for `by` at `now`: a held entry becomes
    /// `Releasing` and its message and envelope are returned for delivery. An
    /// entry already released, being released or deleted is refused with who and
    /// when; an in-doubt release is refused too unless `force` (the admin has
    /// checked it was not delivered).
    pub fn begin_release(
        &self,
        id: EntryId,
        by: &str,
        force: bool,
        now: u64,
    ) -> Result<ReleaseTicket, StateError> {
        self.await_kept();
        let attempt = salt();
        self.db.write(|txn| {
            let mut s = match load(txn, id)? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            let detail = match &s.state {
                EntryState::Held => String::new(),
                st @ EntryState::Releasing { by: was, at, .. } if force && st.in_doubt(now) => {
                    format!(
                        "forced: the release by {was} at {} was in doubt",
                        format_time(*at)
                    )
                }
                _ => return Ok(Err(conflict(&s, now))),
            };
            let Some(bytes) = txn
                .open_table(MESSAGES)?
                .get(id.as_u64())?
                .map(|v| v.value().to_vec())
            else {
                return Err(redb::Error::Corrupted(format!("entry {id} has no message")));
            };
            let message = decompress(&bytes, s.size)
                .map_err(|e| redb::Error::Corrupted(format!("message of entry {id}: {e}")))?;
            let d: Detail = match txn.open_table(super::db::DETAILS)?.get(id.as_u64())? {
                Some(v) => parse(v.value(), "detail")?,
                None => return Err(redb::Error::Corrupted(format!("entry {id} has no detail"))),
            };
            let before = s.clone();
            s.state = EntryState::Releasing {
                by: by.to_string(),
                at: now,
                attempt,
                doubt: None,
            };
            store_summary(txn, &s)?;
            log(txn, now, by, "release-begin", id, detail)?;
            Ok(Ok(ReleaseTicket {
                id,
                by: by.to_string(),
                attempt,
                summary: before,
                envelope: d.envelope,
                message,
            }))
        })?
    }

    /// Reads the entry in `txn` and checks it is still in `ticket`'s attempt.
    fn in_attempt(
        txn: &WriteTransaction,
        ticket: &ReleaseTicket,
        now: u64,
    ) -> Result<Result<Summary, StateError>, redb::Error> {
        let s = match load(txn, ticket.id)? {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match &s.state {
            EntryState::Releasing { attempt, .. } if *attempt == ticket.attempt => Ok(s),
            _ => Err(conflict(&s, now)),
        })
    }

    /// The delivery of `ticket` succeeded (`how`: the relay's reply, or the
    /// command that released the held file): the entry becomes `Released`.
    pub fn finish_release(
        &self,
        ticket: &ReleaseTicket,
        how: &str,
        now: u64,
    ) -> Result<Summary, StateError> {
        let state = EntryState::Released {
            by: ticket.by.clone(),
            at: now,
            how: how.to_string(),
        };
        self.settle(ticket, state, "release", how, now)
    }

    /// Ends `ticket`'s attempt: the entry, if still in that attempt, takes
    /// `state`, with an action-log row `what` carrying `detail`.
    fn settle(
        &self,
        ticket: &ReleaseTicket,
        state: EntryState,
        what: &str,
        detail: &str,
        now: u64,
    ) -> Result<Summary, StateError> {
        self.db.write(|txn| {
            let mut s = match Self::in_attempt(txn, ticket, now)? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            s.state = state;
            store_summary(txn, &s)?;
            log(txn, now, &ticket.by, what, ticket.id, detail.to_string())?;
            Ok(Ok(s))
        })?
    }

    /// The delivery of `ticket` failed cleanly (nothing was delivered): the
    /// entry is held again; `why` goes to the action log.
    pub fn abandon_release(
        &self,
        ticket: &ReleaseTicket,
        why: &str,
        now: u64,
    ) -> Result<Summary, StateError> {
        self.settle(ticket, EntryState::Held, "release-failed", why, now)
    }

    /// The delivery of `ticket` may or may not have happened (`why`: the relay's
    /// answer to the message was lost, the held file was gone afterwards): the
    /// entry stays `Releasing` but is in doubt from now on, not only after
    /// [`super::RELEASE_IN_DOUBT_AFTER`], so nothing releases it again until an
    /// admin has checked ([`StateStore::resolve_in_doubt`], or `begin_release`
    /// with `force`).
    pub fn mark_in_doubt(
        &self,
        ticket: &ReleaseTicket,
        why: &str,
        now: u64,
    ) -> Result<Summary, StateError> {
        self.db.write(|txn| {
            let mut s = match Self::in_attempt(txn, ticket, now)? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            if let EntryState::Releasing { doubt, .. } = &mut s.state {
                *doubt = Some(why.to_string());
            }
            store_summary(txn, &s)?;
            log(
                txn,
                now,
                &ticket.by,
                "release-in-doubt",
                ticket.id,
                why.to_string(),
            )?;
            Ok(Ok(s))
        })?
    }

    /// An admin settles an in-doubt release after checking: `delivered` marks it
    /// released, otherwise it is held again (to release it anew). Refused for an
    /// entry that is not in doubt.
    pub fn resolve_in_doubt(
        &self,
        id: EntryId,
        by: &str,
        delivered: bool,
        now: u64,
    ) -> Result<Summary, StateError> {
        self.db.write(|txn| {
            let mut s = match load(txn, id)? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            if !s.state.in_doubt(now) {
                return Ok(Err(conflict(&s, now)));
            }
            let (what, detail) = if delivered {
                s.state = EntryState::Released {
                    by: by.to_string(),
                    at: now,
                    how: format!("marked delivered by {by} after an in-doubt release"),
                };
                ("resolve-delivered", "the in-doubt release was delivered")
            } else {
                s.state = EntryState::Held;
                ("resolve-held", "the in-doubt release was not delivered")
            };
            store_summary(txn, &s)?;
            log(txn, now, by, what, id, detail.to_string())?;
            Ok(Ok(s))
        })?
    }

    /// Deletes entry `id`'s message for `by` (the record stays, `Deleted`, until
    /// retention drops it). Refused while a release is under way (not in doubt)
    /// and for an entry already deleted.
    pub fn delete(&self, id: EntryId, by: &str, now: u64) -> Result<Summary, StateError> {
        self.await_kept();
        self.db.write(|txn| {
            let mut s = match load(txn, id)? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            if !s.state.can_delete(now) {
                return Ok(Err(conflict(&s, now)));
            }
            txn.open_table(MESSAGES)?.remove(id.as_u64())?;
            meta_add(
                &mut txn.open_table(META)?,
                META_BYTES,
                -(s.stored_bytes as i64),
            )?;
            s.stored_bytes = 0;
            s.state = EntryState::Deleted {
                by: by.to_string(),
                at: now,
            };
            store_summary(txn, &s)?;
            log(txn, now, by, "delete", id, String::new())?;
            Ok(Ok(s))
        })?
    }
}
