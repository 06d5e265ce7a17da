//! The state store's file: its tables, how it is opened (redb in multi-writer mode,
//! so the service and the `chaff quarantine` and `chaff senders` commands share it
//! without a control socket), and how it recovers.
//!
//! Every commit is durable: redb writes copy-on-write pages and fsyncs before a
//! commit returns, and a file left by a crash opens at its last commit (redb
//! repairs it at open). Multi-writer mode does not allow redb's non-durable
//! commits (another process could not see them), so history and counts, which do
//! not need to be durable, are made cheap by batching instead.
//!
//! A failed write (a full disk) leaves a redb handle refusing everything until it
//! is reopened, so, as the lock store does (`accounts`), a failure closes the
//! handle and the first use after a backoff (100 ms doubling to 30 s) reopens it,
//! one thread at a time; meanwhile every operation fails at once with
//! [`StoreError::Unavailable`] (the milter then answers TEMPFAIL for mail it would
//! keep). A file deleted or replaced under the service (device and inode differ,
//! checked at most once a second) is reopened at its path.

use redb::{
    Builder, ConcurrencyMode, Database, ReadTransaction, ReadableDatabase, TableDefinition,
    WriteTransaction,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};
use tracing::{error, warn};

/// Entry summaries: id → JSON [`super::Summary`].
pub(super) const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("q_entries");
/// Entry details: id → JSON [`super::Detail`].
pub(super) const DETAILS: TableDefinition<u64, &[u8]> = TableDefinition::new("q_details");
/// Messages: id → zstd bytes.
pub(super) const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("q_messages");
/// Index: (lowercased sender address or `@domain`, id).
pub(super) const BY_SENDER: TableDefinition<(&str, u64), ()> = TableDefinition::new("q_by_sender");
/// Index: (lowercased recipient address or `@domain`, id).
pub(super) const BY_RCPT: TableDefinition<(&str, u64), ()> = TableDefinition::new("q_by_rcpt");
/// Index: (score in an order-keeping encoding, id).
pub(super) const BY_SCORE: TableDefinition<(u64, u64), ()> = TableDefinition::new("q_by_score");
/// Counters: name → value (see the `META_*` names).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Scan history: key (time-ordered) → JSON [`super::ScanRecord`].
pub(super) const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
/// Counts per hour: hour since the epoch → JSON map of action → count.
pub(super) const HOURLY: TableDefinition<u64, &[u8]> = TableDefinition::new("hourly");
/// Admin sender entries: (`allow` or `block`, entry) → JSON [`super::SenderEntry`].
pub(super) const SENDERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("senders");
/// Admin actions: key (time-ordered) → JSON [`super::AdminAction`].
pub(super) const ACTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("actions");
/// Stored policies: scope (`domain:…`, `recipient:…`, `account:…`) → JSON rule.
pub(super) const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");

/// Stored bytes of kept messages.
pub(super) const META_BYTES: &str = "q_bytes";
/// Entries kept.
pub(super) const META_ENTRIES: &str = "q_entries";
/// Scans in the history.
pub(super) const META_HISTORY: &str = "history_rows";
/// Rows in the admin action log.
pub(super) const META_ACTIONS: &str = "action_rows";
/// Bumped by every change of the admin sender lists.
pub(super) const META_SENDERS_REV: &str = "senders_rev";
/// The stored policies' revision (bumped by every edit).
pub(super) const META_POLICY_REV: &str = "policy_rev";

// The reopen backoff and the file-identity check follow the lock store's
// rules, with its constants and its `identity`.
use crate::accounts::identity;
pub(super) use crate::accounts::{IDENTITY_CHECK_INTERVAL, MAX_REOPEN_BACKOFF, MIN_REOPEN_BACKOFF};

/// The state store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("state store {path}: {source}")]
    Db {
        /// The store file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::Error>,
    },
    /// The store failed earlier and is waiting to be reopened.
    #[error("state store {path} is unusable (failed earlier; reopening in {retry_in:?})")]
    Unavailable {
        /// The store file.
        path: PathBuf,
        /// When the next attempt is due.
        retry_in: Duration,
    },
    /// There is no store at the path (a reading command does not create one).
    #[error("no state store at {path}")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The directory for the store could not be made.
    #[error("state store {path}: cannot create its directory: {source}")]
    Dir {
        /// The store file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A row could not be read back or written.
    #[error("state store {path}: {what}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// True for the errors that make a redb handle unusable until it is reopened.
fn is_io(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens (creating) the file and makes every table exist, so readers never meet
/// a missing one.
fn open_db(path: &Path) -> Result<Database, redb::Error> {
    let db = Builder::new()
        .set_concurrency_mode(ConcurrencyMode::MultiWriter)
        .create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(ENTRIES)?;
    txn.open_table(DETAILS)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(BY_SENDER)?;
    txn.open_table(BY_RCPT)?;
    txn.open_table(BY_SCORE)?;
    txn.open_table(META)?;
    txn.open_table(HISTORY)?;
    txn.open_table(HOURLY)?;
    txn.open_table(SENDERS)?;
    txn.open_table(ACTIONS)?;
    txn.open_table(POLICIES)?;
    txn.commit()?;
    Ok(db)
}

struct Health {
    db: Option<Arc<Database>>,
    failed_at: Option<Instant>,
    recovered_at: Option<Instant>,
    next_attempt: Instant,
    backoff: Duration,
    identity: Option<(u64, u64)>,
    identity_checked: Instant,
}

/// How the store's file is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DbStats {
    /// True while the file is usable.
    pub healthy: bool,
    /// I/O failures since it was opened (failed operations and reopen attempts).
    pub errors: u64,
    /// Successful reopens after a failure or a replaced file.
    pub reopens: u64,
}

/// The open store file with its recovery.
pub(super) struct Db {
    path: PathBuf,
    health: Mutex<Health>,
    reopening: Mutex<()>,
    healthy: AtomicBool,
    errors: AtomicU64,
    reopens: AtomicU64,
}

impl Db {
    /// Opens the file at `path`, creating it and its directory if needed.
    pub(super) fn open(path: &Path) -> Result<Db, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let db = open_db(path).map_err(|e| StoreError::Db {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Ok(Db {
            path: path.to_path_buf(),
            health: Mutex::new(Health {
                db: Some(Arc::new(db)),
                failed_at: None,
                recovered_at: None,
                next_attempt: Instant::now(),
                backoff: MIN_REOPEN_BACKOFF,
                identity: identity(path),
                identity_checked: Instant::now(),
            }),
            reopening: Mutex::new(()),
            healthy: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn stats(&self) -> DbStats {
        DbStats {
            healthy: self.healthy.load(Relaxed),
            errors: self.errors.load(Relaxed),
            reopens: self.reopens.load(Relaxed),
        }
    }

    pub(super) fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    pub(super) fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// The open database: checked against the path at most once a second, and
    /// reopened after a failure once the backoff has passed.
    fn database(&self) -> Result<Arc<Database>, StoreError> {
        {
            let mut h = guard(&self.health);
            if let Some(db) = h.db.clone() {
                if h.identity_checked.elapsed() < IDENTITY_CHECK_INTERVAL {
                    return Ok(db);
                }
                h.identity_checked = Instant::now();
                let was = h.identity;
                drop(h);
                let now = identity(&self.path);
                if now.is_some() && now == was {
                    return Ok(db);
                }
                warn!(
                    path = %self.path.display(),
                    was = ?was,
                    now = ?now,
                    "state store file changed under the service (deleted or replaced): \
                     reopening it at its path"
                );
                self.close(None);
                guard(&self.health).next_attempt = Instant::now();
            }
        }
        self.reopen();
        let h = guard(&self.health);
        match &h.db {
            Some(db) => Ok(Arc::clone(db)),
            None => Err(StoreError::Unavailable {
                path: self.path.clone(),
                retry_in: h.next_attempt.saturating_duration_since(Instant::now()),
            }),
        }
    }

    /// Closes the handle after a failure (`e`), or to reopen a replaced file.
    fn close(&self, e: Option<&redb::Error>) {
        let mut h = guard(&self.health);
        if h.db.take().is_none() {
            return;
        }
        self.healthy.store(false, Relaxed);
        if let Some(e) = e {
            h.failed_at.get_or_insert_with(Instant::now);
            let flapping = h
                .recovered_at
                .is_some_and(|t| t.elapsed() < MAX_REOPEN_BACKOFF);
            h.backoff = if flapping {
                (h.backoff * 2).min(MAX_REOPEN_BACKOFF)
            } else {
                MIN_REOPEN_BACKOFF
            };
            h.next_attempt = Instant::now() + h.backoff;
            error!(
                path = %self.path.display(),
                error = %e,
                "state store failed; mail to keep is deferred (TEMPFAIL) until it is reopened"
            );
        }
    }

    /// One attempt to reopen, by one thread at a time.
    fn reopen(&self) {
        let _one = match self.reopening.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        {
            let h = guard(&self.health);
            if h.db.is_some() || Instant::now() < h.next_attempt {
                return;
            }
        }
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        match open_db(&self.path) {
            Ok(db) => {
                let mut h = guard(&self.health);
                h.db = Some(Arc::new(db));
                h.identity = identity(&self.path);
                h.identity_checked = Instant::now();
                h.recovered_at = Some(Instant::now());
                let down = h
                    .failed_at
                    .take()
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                self.healthy.store(true, Relaxed);
                self.reopens.fetch_add(1, Relaxed);
                warn!(
                    path = %self.path.display(),
                    down_secs = format!("{down:.1}"),
                    "state store reopened"
                );
            }
            Err(e) => {
                self.errors.fetch_add(1, Relaxed);
                let mut h = guard(&self.health);
                h.failed_at.get_or_insert_with(Instant::now);
                h.backoff = (h.backoff * 2).min(MAX_REOPEN_BACKOFF);
                h.next_attempt = Instant::now() + h.backoff;
                warn!(
                    path = %self.path.display(),
                    error = %e,
                    retry_in_ms = h.backoff.as_millis() as u64,
                    "state store still unusable"
                );
            }
        }
    }

    /// Whether the file can be used now (reopening it when a reopen is due).
    pub(super) fn usable(&self) -> Result<(), StoreError> {
        self.database().map(|_| ())
    }

    /// Tries to reopen a failed store now, whatever the backoff; true when usable.
    pub(super) fn try_recover(&self) -> bool {
        if self.healthy.load(Relaxed) {
            return true;
        }
        guard(&self.health).next_attempt = Instant::now();
        self.database().is_ok()
    }

    /// Runs a failed operation's error past the health check.
    fn failed(&self, e: redb::Error) -> StoreError {
        if is_io(&e) {
            self.errors.fetch_add(1, Relaxed);
            self.close(Some(&e));
        }
        self.err(e)
    }

    /// Runs `f` in a read transaction.
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let db = self.database()?;
        let run = || -> Result<T, redb::Error> { f(&db.begin_read()?) };
        run().map_err(|e| self.failed(e))
    }

    /// Runs `f` in a write transaction and commits it (durably) unless `f`
    /// returns `Ok(Err(_))`, which aborts it: a refused state change writes
    /// nothing.
    pub(super) fn write<T, E>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<Result<T, E>, redb::Error>,
    ) -> Result<Result<T, E>, StoreError> {
        let db = self.database()?;
        let run = || -> Result<Result<T, E>, redb::Error> {
            let txn = db.begin_write()?;
            match f(&txn)? {
                Ok(v) => {
                    txn.commit()?;
                    Ok(Ok(v))
                }
                Err(e) => {
                    txn.abort()?;
                    Ok(Err(e))
                }
            }
        };
        run().map_err(|e| self.failed(e))
    }

    /// Marks the store failed as an I/O error would, for tests of recovery.
    #[cfg(test)]
    pub(super) fn fail_for_test(&self) {
        let _ = self.failed(redb::Error::PreviousIo);
    }
}

/// Reads a counter.
pub(super) fn meta_get(
    t: &impl redb::ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<u64, redb::Error> {
    Ok(t.get(name)?.map_or(0, |v| v.value()))
}

/// Adds `delta` (which may be negative) to a counter, never below 0.
pub(super) fn meta_add(
    t: &mut redb::Table<&'static str, u64>,
    name: &str,
    delta: i64,
) -> Result<u64, redb::Error> {
    let now = meta_get(t, name)?;
    let next = now.saturating_add_signed(delta);
    t.insert(name, next)?;
    Ok(next)
}
