//! The admin action log: who did what, when, to which entry. The store writes a
//! row in the same transaction as each change it makes for an admin (release
//! steps, delete, purge, sender list edits); other actions (learning, account
//! locks through the API) are logged with [`StateStore::log_action`]. At most
//! [`MAX_ACTIONS`] rows are kept, the oldest dropped first.

use super::db::{ACTIONS, META, META_ACTIONS, meta_add};
use super::id::EntryId;
use super::{StateStore, StoreError, json, parse};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

/// Most rows the action log keeps.
pub const MAX_ACTIONS: u64 = 100_000;
/// Longest `detail` kept, in bytes.
const MAX_DETAIL: usize = 2000;

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAction {
    /// When (seconds since the epoch).
    pub at: u64,
    /// Who (the admin's user name, or `root` for the command line).
    pub by: String,
    /// What: `release-begin`, `release`, `release-failed`, `release-in-doubt`, `resolve-delivered`,
    /// `resolve-held`, `delete`, `purge`, `allow-add`, `allow-remove`,
    /// `block-add`, `block-remove`, or what the caller of
    /// [`StateStore::log_action`] names.
    pub what: String,
    /// The entry, if the action concerns one.
    pub id: Option<EntryId>,
    /// Anything else worth knowing (the relay's reply, the sender entry, …).
    pub detail: String,
}

/// Appends `a` in `txn` under a key after every existing one, and drops the
/// oldest rows beyond [`MAX_ACTIONS`].
pub(super) fn append(txn: &WriteTransaction, a: &AdminAction) -> Result<(), redb::Error> {
    let mut a = a.clone();
    if a.detail.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !a.detail.is_char_boundary(end) {
            end -= 1;
        }
        a.detail.truncate(end);
    }
    let mut table = txn.open_table(ACTIONS)?;
    let last = table.last()?.map_or(0, |(k, _)| k.value());
    let key = last.saturating_add(1).max(a.at.saturating_mul(1_000_000));
    table.insert(key, json(&a)?.as_slice())?;
    let mut meta = txn.open_table(META)?;
    let mut rows = meta_add(&mut meta, META_ACTIONS, 1)?;
    while rows > MAX_ACTIONS {
        if table.pop_first()?.is_none() {
            break;
        }
        rows = meta_add(&mut meta, META_ACTIONS, -1)?;
    }
    Ok(())
}

impl StateStore {
    /// Logs an admin action that the store did not make itself.
    pub fn log_action(&self, action: &AdminAction) -> Result<(), StoreError> {
        self.db
            .write(|txn| append(txn, action).map(Ok::<_, ()>))?
            .map_err(|()| self.db.corrupt("unreachable"))
    }

    /// The newest `limit` admin actions, newest first.
    pub fn actions(&self, limit: usize) -> Result<Vec<AdminAction>, StoreError> {
        self.db.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(ACTIONS)?.iter()?.rev().take(limit) {
                let (_, v) = row?;
                out.push(parse(v.value(), "action")?);
            }
            Ok(out)
        })
    }
}
