//! The service's own state store: the quarantine (the "spam report list"), the
//! scan history, the hourly counts, the allow and block entries an admin added,
//! and the admin action log, in one redb file (`[state] path`).
//!
//! The running service and the `chaff quarantine` and `chaff senders` commands
//! share the file (redb in multi-writer mode), as the lock store is shared with
//! `chaff accounts`. One file per concern:
//!
//! - `db`: the file, its tables, opening and recovery ([`StoreError`]);
//! - `id`: entry ids ([`EntryId`]: time-ordered, 13 printable characters);
//! - `entry`: what an entry holds ([`NewEntry`], [`Summary`], [`Entry`],
//!   [`EntryState`]) and the message's compression;
//! - `index`: the sender, recipient and score indexes;
//! - `list`: the filtered, paged list, newest first ([`Filter`], [`Page`]);
//! - `preview`: a kept message as an admin reads it: headers, decoded text, hits
//!   located ([`Preview`]);
//! - `release`: the entry's state machine, each change one compare-and-set
//!   transaction ([`StateStore::begin_release`], [`StateError`]);
//! - `retention`: dropping the oldest entries by age and total size, and `purge`;
//! - `history`: every scan's record and the counts per action per hour;
//! - `senders`: the admin's allow and block entries, layered over `[senders]`;
//! - `audit`: the admin action log;
//! - `keep_log`: the log a kept message is synced to before the MTA is answered,
//!   ahead of the store's file;
//! - `keeper`: the service's writer threads: group commit of kept messages to the
//!   keep log (each durable before the MTA is answered), moving them into the
//!   store in large transactions, history in batches, retention.
//!
//! Every write is one redb transaction, committed durably (fsync) before it
//! returns: an entry is in the file whole (summary, detail, message and index
//! rows) or not at all, whatever the moment the process dies.

mod audit;
mod db;
mod entry;
mod history;
mod id;
mod index;
mod keep_log;
mod keeper;
mod list;
mod policies;
mod preview;
mod release;
mod retention;
mod senders;

pub use audit::{AdminAction, MAX_ACTIONS};
pub use db::{DbStats, StoreError};
pub use entry::{
    COMPRESSION_LEVEL, Detail, Entry, EntryState, MAX_SUBJECT_CHARS, NewEntry,
    RELEASE_IN_DOUBT_AFTER, StoredEnvelope, StoredHit, StoredLocation, StoredToken, StoredVerdict,
    Summary, Told, compress, decompress, subject_of,
};
pub use history::{
    COUNT_HOURS, HistoryPage, HourCounts, MAX_HISTORY_HITS, MAX_HISTORY_RCPTS, ScanRecord,
};
pub use id::{BadId, EntryId};
pub use index::{address_keys, filter_key};
pub use keeper::{
    HISTORY_FLUSH_INTERVAL, KeepError, Keeper, KeeperLimits, KeeperStats, MAX_PENDING_HISTORY,
    MOVE_INTERVAL, RETENTION_INTERVAL,
};
pub use list::{DEFAULT_PAGE, Filter, MAX_PAGE, Page, StateFilter};
pub use preview::{MAX_HEADER_BYTES, Mark, Preview, PreviewText, mark};
pub use release::{ReleaseTicket, StateError};
pub use retention::{RETENTION_CHUNK, Removed};
pub use senders::{
    MAX_SENDER_ENTRIES, SenderEntry, SenderList, SendersError, apply_senders, canonical_entry,
};

use db::{DETAILS, Db, ENTRIES, MESSAGES, META, META_BYTES, META_ENTRIES, meta_add, meta_get};
use redb::{ReadableTable, WriteTransaction};
use std::path::Path;

/// Milliseconds since the UNIX epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// This host's name (`/proc/sys/kernel/hostname`), for the entries it keeps.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Random bits for ids and release attempts (std's per-process random hash
/// keys over a counter: unpredictable enough to keep two processes apart; not
/// a secret).
pub(crate) fn salt() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::hash::RandomState::new().hash_one(COUNTER.fetch_add(1, Relaxed))
}

/// Totals of the quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Totals {
    /// Entries kept (deleted ones too, until retention drops them).
    pub entries: u64,
    /// Bytes of compressed messages kept.
    pub bytes: u64,
}

/// The state store. Cheap to share behind an `Arc`; every method is one
/// transaction.
pub struct StateStore {
    db: Db,
    /// Waits for this process's keeper to move what it has answered as kept
    /// (set by [`Keeper::start`]).
    settle: std::sync::OnceLock<Settle>,
}

/// See [`StateStore::settle`].
type Settle = Box<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.db.path())
            .field("stats", &self.db.stats())
            .finish()
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, redb::Error> {
    serde_json::to_vec(v).map_err(|e| redb::Error::Corrupted(format!("cannot encode a row: {e}")))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, redb::Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| redb::Error::Corrupted(format!("bad {what} row: {e}")))
}

/// Writes one new entry (summary, detail, message, indexes, totals) in `txn`;
/// returns its id: the first free id at its time.
pub(crate) fn insert_entry(txn: &WriteTransaction, e: &NewEntry) -> Result<EntryId, redb::Error> {
    insert_entry_at(txn, e, EntryId::new(e.time_ms, salt()), false)?
        .ok_or_else(|| redb::Error::Corrupted("unreachable: a new entry skipped".into()))
}

/// Writes an entry from the keep log under the id its MTA answer named, unless
/// it is there already (a log moved into the store twice, after a crash):
/// `None` then. An id taken by another entry (another process's, made in the
/// same millisecond with the same 22 random bits) moves it to the next free id.
pub(crate) fn insert_logged(
    txn: &WriteTransaction,
    e: &NewEntry,
    id: EntryId,
) -> Result<Option<EntryId>, redb::Error> {
    insert_entry_at(txn, e, id, true)
}

fn insert_entry_at(
    txn: &WriteTransaction,
    e: &NewEntry,
    first: EntryId,
    skip_same: bool,
) -> Result<Option<EntryId>, redb::Error> {
    let mut entries = txn.open_table(ENTRIES)?;
    let mut id = first;
    while let Some(there) = entries.get(id.as_u64())? {
        let there: Summary = parse(there.value(), "entry")?;
        if skip_same
            && there.queue_id == e.envelope.queue_id
            && there.size == e.size
            && there.time == e.time_ms / 1000
            && there.sender == e.envelope.sender
        {
            return Ok(None);
        }
        id = id.next();
    }
    let summary = e.summary(id);
    entries.insert(id.as_u64(), json(&summary)?.as_slice())?;
    txn.open_table(DETAILS)?
        .insert(id.as_u64(), json(&e.detail())?.as_slice())?;
    txn.open_table(MESSAGES)?
        .insert(id.as_u64(), e.compressed.as_slice())?;
    index::insert(txn, &summary)?;
    let mut meta = txn.open_table(META)?;
    meta_add(&mut meta, META_BYTES, e.compressed.len() as i64)?;
    meta_add(&mut meta, META_ENTRIES, 1)?;
    Ok(Some(id))
}

/// Reads a summary in `txn`.
pub(crate) fn summary_in(
    t: &impl ReadableTable<u64, &'static [u8]>,
    id: EntryId,
) -> Result<Option<Summary>, redb::Error> {
    t.get(id.as_u64())?
        .map(|v| parse(v.value(), "entry"))
        .transpose()
}

impl StateStore {
    /// Opens the store at `path`, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        let store = StateStore {
            db: Db::open(path)?,
            settle: std::sync::OnceLock::new(),
        };
        store.move_unowned_keep_logs();
        Ok(store)
    }

    /// Moves into the store what the keep logs beside it hold and the store
    /// lacks: what a dead service left, or what a live one answered as kept and
    /// has not moved yet (it moves at most [`MOVE_INTERVAL`] later), so that
    /// every message an MTA was told was kept can be found by whoever opens the
    /// store. Moving is idempotent; only the logs' owner empties them (here, when
    /// no service holds them).
    fn move_unowned_keep_logs(&self) {
        for path in keep_log::log_paths(self.path()) {
            if !path.exists() {
                continue;
            }
            let (owned, records) = match keep_log::LogFile::take(&path) {
                Ok((log, records)) => (Some(log), records),
                Err(keep_log::TakeError::Held) => match keep_log::read(&path) {
                    Ok(records) => (None, records),
                    Err(e) => {
                        tracing::debug!(log = %path.display(), error = %e, "keep log not read");
                        continue;
                    }
                },
                Err(keep_log::TakeError::Io(e)) => {
                    tracing::debug!(log = %path.display(), error = %e, "keep log not read");
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            match self.put_logged(&records) {
                Ok(n) => {
                    if n > 0 && owned.is_some() {
                        tracing::warn!(
                            log = %path.display(),
                            moved = n,
                            "kept messages left in the keep log moved into the store"
                        );
                    }
                    if let Some(mut log) = owned
                        && let Err(e) = log.clear()
                    {
                        tracing::warn!(log = %path.display(), error = %e, "cannot empty the keep log");
                    }
                }
                Err(e) => tracing::error!(
                    log = %path.display(),
                    error = %e,
                    "cannot move the keep log's messages into the store; they stay in the log"
                ),
            }
        }
    }

    /// Makes the readers and state changes below wait, when this process's
    /// keeper holds kept messages not yet moved into the file, until they are:
    /// what the MTA was told was kept can be found (the first keeper started on
    /// this store sets it).
    pub(crate) fn on_settle(&self, f: Settle) {
        let _ = self.settle.set(f);
    }

    /// See [`StateStore::on_settle`]; cheap when nothing waits.
    pub(crate) fn await_kept(&self) {
        if let Some(f) = self.settle.get() {
            f();
        }
    }

    /// Fails with [`StoreError::Unavailable`] while the file is failed and not yet
    /// due to be reopened (tries to reopen it when due).
    pub(crate) fn check_usable(&self) -> Result<(), StoreError> {
        self.db.usable()
    }

    /// Writes entries from the keep log in one durable transaction, skipping
    /// those already in the store; how many were written.
    pub(crate) fn put_logged(&self, records: &[(EntryId, NewEntry)]) -> Result<usize, StoreError> {
        self.db
            .write(|txn| {
                let mut n = 0;
                for (id, e) in records {
                    if insert_logged(txn, e, *id)?.is_some() {
                        n += 1;
                    }
                }
                Ok(Ok::<_, ()>(n))
            })?
            .map_err(|()| self.db.corrupt("unreachable"))
    }

    /// Opens the store at `path` only if it exists (the commands that read or
    /// change entries): a mistyped path is an error, not a new store.
    pub fn open_existing(path: &Path) -> Result<StateStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        StateStore::open(path)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// How the file is doing.
    pub fn db_stats(&self) -> DbStats {
        self.db.stats()
    }

    /// Tries to reopen a failed store now, whatever its backoff (SIGHUP does);
    /// true when it is usable.
    pub fn try_recover(&self) -> bool {
        self.db.try_recover()
    }

    /// Keeps one message, durably, in its own transaction (the service batches
    /// through [`Keeper`] instead).
    pub fn put(&self, entry: &NewEntry) -> Result<EntryId, StoreError> {
        Ok(self
            .put_batch(std::slice::from_ref(entry))?
            .pop()
            .unwrap_or(EntryId::from_u64(0)))
    }

    /// Keeps several messages in one durable transaction; their ids, in order.
    pub fn put_batch(&self, entries: &[NewEntry]) -> Result<Vec<EntryId>, StoreError> {
        self.db
            .write(|txn| {
                let ids = entries
                    .iter()
                    .map(|e| insert_entry(txn, e))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Ok::<_, ()>(ids))
            })?
            .map_err(|()| self.db.corrupt("unreachable"))
    }

    /// The entry `id` (without its message), if there is one.
    pub fn get(&self, id: EntryId) -> Result<Option<Entry>, StoreError> {
        self.await_kept();
        self.db.read(|txn| {
            let Some(summary) = summary_in(&txn.open_table(ENTRIES)?, id)? else {
                return Ok(None);
            };
            let detail: Detail = match txn.open_table(DETAILS)?.get(id.as_u64())? {
                Some(v) => parse(v.value(), "detail")?,
                None => return Err(redb::Error::Corrupted(format!("entry {id} has no detail"))),
            };
            Ok(Some(Entry { summary, detail }))
        })
    }

    /// The message of entry `id`, decompressed: `None` if there is no such entry
    /// or its message was deleted.
    pub fn message(&self, id: EntryId) -> Result<Option<Vec<u8>>, StoreError> {
        self.await_kept();
        let found = self.db.read(|txn| {
            let Some(summary) = summary_in(&txn.open_table(ENTRIES)?, id)? else {
                return Ok(None);
            };
            let bytes = txn
                .open_table(MESSAGES)?
                .get(id.as_u64())?
                .map(|v| v.value().to_vec());
            Ok(bytes.map(|b| (b, summary.size)))
        })?;
        found
            .map(|(b, size)| {
                decompress(&b, size)
                    .map_err(|e| self.db.corrupt(format!("message of entry {id}: {e}")))
            })
            .transpose()
    }

    /// Entries and bytes kept.
    pub fn totals(&self) -> Result<Totals, StoreError> {
        self.db.read(|txn| {
            let meta = txn.open_table(META)?;
            Ok(Totals {
                entries: meta_get(&meta, META_ENTRIES)?,
                bytes: meta_get(&meta, META_BYTES)?,
            })
        })
    }

    /// Checks that every entry is whole: a summary, a detail, a message (unless
    /// deleted) of its recorded size, and its index rows; and that the totals add
    /// up. Returns what is wrong, empty when all is well. For tests after a
    /// crash, and `chaff quarantine check`.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        self.db.read(|txn| {
            let mut problems = Vec::new();
            let entries = txn.open_table(ENTRIES)?;
            let details = txn.open_table(DETAILS)?;
            let messages = txn.open_table(MESSAGES)?;
            let by_sender = txn.open_table(db::BY_SENDER)?;
            let by_rcpt = txn.open_table(db::BY_RCPT)?;
            let by_score = txn.open_table(db::BY_SCORE)?;
            let (mut n, mut bytes) = (0u64, 0u64);
            for row in entries.iter()? {
                let (k, v) = row?;
                let id = EntryId::from_u64(k.value());
                let s: Summary = match parse(v.value(), "entry") {
                    Ok(s) => s,
                    Err(e) => {
                        problems.push(format!("{id}: {e}"));
                        continue;
                    }
                };
                n += 1;
                bytes += s.stored_bytes;
                if s.id != id {
                    problems.push(format!("{id}: summary names {}", s.id));
                }
                match details.get(k.value())? {
                    Some(d) if parse::<Detail>(d.value(), "detail").is_ok() => {}
                    _ => problems.push(format!("{id}: no readable detail")),
                }
                let deleted = matches!(s.state, EntryState::Deleted { .. });
                match (messages.get(k.value())?, deleted) {
                    (Some(m), false) => {
                        if m.value().len() as u64 != s.stored_bytes {
                            problems.push(format!("{id}: message of the wrong size"));
                        } else if let Err(e) = decompress(m.value(), s.size) {
                            problems.push(format!("{id}: message unreadable: {e}"));
                        }
                    }
                    (None, true) => {}
                    (Some(_), true) => problems.push(format!("{id}: deleted, message kept")),
                    (None, false) => problems.push(format!("{id}: no message")),
                }
                for key in index::address_keys(&s.sender) {
                    if by_sender.get((key.as_str(), k.value()))?.is_none() {
                        problems.push(format!("{id}: not in the sender index under {key}"));
                    }
                }
                for r in &s.recipients {
                    for key in index::address_keys(r) {
                        if by_rcpt.get((key.as_str(), k.value()))?.is_none() {
                            problems.push(format!("{id}: not in the recipient index under {key}"));
                        }
                    }
                }
                if by_score
                    .get((index::score_key(s.score), k.value()))?
                    .is_none()
                {
                    problems.push(format!("{id}: not in the score index"));
                }
            }
            for (name, table) in [("detail", &details), ("message", &messages)] {
                for row in table.iter()? {
                    let (k, _) = row?;
                    if entries.get(k.value())?.is_none() {
                        problems.push(format!(
                            "{}: {name} without an entry",
                            EntryId::from_u64(k.value())
                        ));
                    }
                }
            }
            let meta = txn.open_table(META)?;
            let (mn, mb) = (meta_get(&meta, META_ENTRIES)?, meta_get(&meta, META_BYTES)?);
            if (mn, mb) != (n, bytes) {
                problems.push(format!(
                    "totals say {mn} entries of {mb} bytes; there are {n} of {bytes}"
                ));
            }
            Ok(problems)
        })
    }

    /// Marks the store failed as an I/O error would, for tests of recovery.
    #[cfg(test)]
    pub(crate) fn fail_for_test(&self) {
        self.db.fail_for_test();
    }
}

#[cfg(test)]
mod tests;
