//! Retention: entries older than `[quarantine] max_age` are dropped, and while
//! the kept messages take more than `max_bytes` the oldest entries are dropped,
//! oldest first either way. `purge` drops entries older than a given age at an
//! admin's request. Work is done in transactions of at most
//! [`RETENTION_CHUNK`] entries, so a large purge never holds the store's write
//! lock for long (the service's writer keeps messages between two chunks).

use super::audit::AdminAction;
use super::db::{DETAILS, ENTRIES, MESSAGES, META, META_BYTES, META_ENTRIES, meta_add, meta_get};
use super::entry::Summary;
use super::id::EntryId;
use super::{StateStore, StoreError, index, parse};
use redb::{ReadableTable, WriteTransaction};
use std::time::Duration;

/// Most entries dropped in one transaction.
pub const RETENTION_CHUNK: usize = 500;

/// What a retention pass or a purge dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Removed {
    /// Entries dropped.
    pub entries: u64,
    /// Bytes of messages freed.
    pub bytes: u64,
}

/// Drops entry `s` whole (rows, indexes, totals) in `txn`.
pub(super) fn remove_entry(txn: &WriteTransaction, s: &Summary) -> Result<(), redb::Error> {
    let id = s.id.as_u64();
    txn.open_table(ENTRIES)?.remove(id)?;
    txn.open_table(DETAILS)?.remove(id)?;
    let freed = txn
        .open_table(MESSAGES)?
        .remove(id)?
        .map_or(0, |v| v.value().len() as i64);
    index::remove(txn, s)?;
    let mut meta = txn.open_table(META)?;
    meta_add(&mut meta, META_BYTES, -freed)?;
    meta_add(&mut meta, META_ENTRIES, -1)?;
    Ok(())
}

/// One chunk: drops the oldest entries made before `cutoff` (an id), and then
/// more of the oldest while the kept bytes exceed `max_bytes`. Returns what it
/// dropped and whether more is due.
fn chunk(
    txn: &WriteTransaction,
    cutoff: u64,
    max_bytes: u64,
) -> Result<(Removed, bool), redb::Error> {
    let victims: Vec<Summary> = {
        let entries = txn.open_table(ENTRIES)?;
        let meta = txn.open_table(META)?;
        let mut bytes = meta_get(&meta, META_BYTES)?;
        let mut out = Vec::new();
        for row in entries.iter()? {
            let (k, v) = row?;
            if out.len() == RETENTION_CHUNK || (k.value() >= cutoff && bytes <= max_bytes) {
                break;
            }
            let s: Summary = parse(v.value(), "entry")?;
            bytes = bytes.saturating_sub(s.stored_bytes);
            out.push(s);
        }
        out
    };
    let mut removed = Removed::default();
    for s in &victims {
        remove_entry(txn, s)?;
        removed.entries += 1;
        removed.bytes += s.stored_bytes;
    }
    Ok((removed, victims.len() == RETENTION_CHUNK))
}

impl StateStore {
    /// Drops entries older than `max_age` before `now` (seconds), then the oldest
    /// while the messages take more than `max_bytes`.
    pub fn apply_retention(
        &self,
        now: u64,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<Removed, StoreError> {
        let cutoff = EntryId::first_at(now.saturating_sub(max_age.as_secs()).saturating_mul(1000));
        self.drop_oldest(cutoff.as_u64(), max_bytes)
    }

    fn drop_oldest(&self, cutoff: u64, max_bytes: u64) -> Result<Removed, StoreError> {
        let mut total = Removed::default();
        loop {
            let (r, more) = self
                .db
                .write(|txn| chunk(txn, cutoff, max_bytes).map(Ok::<_, ()>))?
                .map_err(|()| self.db.corrupt("unreachable"))?;
            total.entries += r.entries;
            total.bytes += r.bytes;
            if !more {
                return Ok(total);
            }
        }
    }

    /// Drops every entry kept more than `older_than` before `now`, for `by`
    /// (logged as `purge`).
    pub fn purge(&self, older_than: Duration, by: &str, now: u64) -> Result<Removed, StoreError> {
        let cutoff = EntryId::first_at(
            now.saturating_sub(older_than.as_secs())
                .saturating_mul(1000),
        );
        let removed = self.drop_oldest(cutoff.as_u64(), u64::MAX)?;
        self.log_action(&AdminAction {
            at: now,
            by: by.to_string(),
            what: "purge".into(),
            id: None,
            detail: format!(
                "older than {} s: {} entries, {} bytes",
                older_than.as_secs(),
                removed.entries,
                removed.bytes
            ),
        })?;
        Ok(removed)
    }
}
