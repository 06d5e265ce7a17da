//! Locked accounts: a site's own users who send spam are stopped until an admin
//! says otherwise.
//!
//! An authenticated account whose mail is rejected `lock_after` times within
//! `window_secs` is locked; every further message from it gets the reject reply until
//! `chaff accounts unlock USER`. The record says when and why (the count, the window,
//! the last message's queue id, score and hits) and keeps the rejected messages
//! that caused it ([`LockRecord::messages`]: each one's time, queue id, score and,
//! when it was kept, its quarantine entry id), so an admin can open them however
//! long ago the lock was made.
//!
//! Stored formats: locks are JSON (a record written before `messages` existed
//! reads with none). Recent rejects live in the `rejects_v2` table as JSON lists
//! of [`LockEvidence`]; a store written before (table `rejects`, bare
//! little-endian `u64` times) is migrated once, in the write transaction that
//! opens it: its times become evidence without ids and the old table is deleted.
//!
//! The store is a redb file opened in multi-writer mode, so the running service and
//! the `chaff accounts` command share it without a control socket: an unlock
//! committed by the command is seen by the service's next read. redb commits are
//! durable (fsync'd, copy-on-write), so locks survive restarts and crashes.
//!
//! A failed write (a full disk) leaves a redb handle refusing everything until it
//! is reopened, so [`AccountStore`] also keeps the locks in memory, enforces them
//! from there while its file is unusable, reopens the file by itself with backoff
//! and then writes the locks and rejects it held.
//!
//! A file deleted or replaced under the service (its device and inode differ from
//! the open one's, checked at most once every [`IDENTITY_CHECK_INTERVAL`] on use) is
//! reopened at the path, created if needed, and given the locks held in memory.

use redb::{
    Builder, ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};
use tracing::{error, warn};

use super::config::AccountsConfig;
use super::quarantine::EntryId;

/// Locked accounts: user → JSON [`LockRecord`].
const LOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("locks");
/// Recent rejects as first stored: user → little-endian `u64` UNIX times,
/// oldest first. Read only to migrate it into [`REJECTS`], then deleted.
const REJECTS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("rejects");
/// Recent rejects: user → JSON list of [`LockEvidence`], oldest first (at most
/// `lock_after` of them).
const REJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("rejects_v2");
/// Most rejected messages a lock record keeps ([`LockRecord::messages`]): the
/// newest of the window, when `lock_after` is larger than this.
pub const MAX_LOCK_MESSAGES: usize = 100;

/// Why and when an account was locked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRecord {
    /// When, in seconds since the UNIX epoch.
    pub locked_at: u64,
    /// Why, in words.
    pub reason: String,
    /// Rejected messages counted in the window.
    pub rejects: u32,
    /// The window, in seconds.
    pub window_secs: u64,
    /// The queue id of the message that tipped it, when known.
    pub last_queue_id: Option<String>,
    /// That message's score.
    pub last_score: Option<f64>,
    /// The rejected messages of the window that caused the lock, oldest first (at
    /// most [`MAX_LOCK_MESSAGES`]); empty for a lock made by hand, by a rate
    /// limit, or stored before this field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<LockEvidence>,
}

/// One rejected message counted against an account: what identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockEvidence {
    /// When it was rejected, in seconds since the UNIX epoch.
    pub at: u64,
    /// The MTA's queue id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// Its score (None for a reject migrated from the old format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Its quarantine entry, when it was kept (`[quarantine] keep_rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<EntryId>,
}

impl LockEvidence {
    /// A reject known only by its time (the old stored format).
    pub fn at(at: u64) -> LockEvidence {
        LockEvidence {
            at,
            queue_id: None,
            score: None,
            entry: None,
        }
    }
}

/// What is known about the rejected message being recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// The MTA's queue id.
    pub queue_id: Option<String>,
    /// The message's score.
    pub score: f64,
    /// Its strongest hits, as text.
    pub hits: String,
    /// Its quarantine entry, when it was kept before being counted.
    pub entry: Option<EntryId>,
}

impl Evidence {
    /// What is stored of this message for a reject at `at`.
    pub fn stored(&self, at: u64) -> LockEvidence {
        LockEvidence {
            at,
            queue_id: self.queue_id.clone(),
            score: Some(self.score),
            entry: self.entry,
        }
    }
}

/// The lock store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("account store {path}: {source}")]
    Db {
        /// The store file.
        path: PathBuf,
        /// What redb said.
        source: Box<redb::Error>,
    },
    /// There is no store at the path (a reading command does not create one).
    #[error("no lock store at {path}")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The directory for the store could not be made.
    #[error("account store {path}: cannot create its directory: {source}")]
    Dir {
        /// The store file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record could not be read back.
    #[error("account store {path}: bad record for `{user}`: {message}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// The account.
        user: String,
        /// What is wrong.
        message: String,
    },
}

/// First wait before reopening a failed store; it doubles after every failed
/// attempt up to [`MAX_REOPEN_BACKOFF`].
pub const MIN_REOPEN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts to reopen a failed store.
pub const MAX_REOPEN_BACKOFF: Duration = Duration::from_secs(30);
/// Most operations held in memory while the store is unusable, to be written when
/// it recovers. Locks are always held (one per account); rejects beyond this are
/// still counted in memory but not written.
pub const MAX_PENDING: usize = 10_000;
/// How often, at most, the store compares the file it has open with the file at
/// its path (device and inode): a store deleted or replaced under the service is
/// noticed at the first use after this, and reopened at its path.
pub const IDENTITY_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What the store did while its file was unusable, written when it recovers.
#[derive(Debug, Clone)]
enum Pending {
    /// A lock made in memory.
    Lock { user: String, rec: LockRecord },
    /// A reject counted in memory, replayed through [`AccountStore::record_reject`].
    Reject {
        user: String,
        now: u64,
        cfg: AccountsConfig,
        evidence: Evidence,
    },
}

/// The store's health: the open database, or why it is closed and when to try
/// again.
struct Health {
    db: Option<Arc<Database>>,
    failed_at: Option<Instant>,
    /// When the store last recovered; a failure within [`MAX_REOPEN_BACKOFF`] of
    /// that continues the doubling, so a disk that is still full cannot make the
    /// store reopen and fail every 100 ms.
    recovered_at: Option<Instant>,
    next_attempt: Instant,
    backoff: Duration,
    /// The open file's device and inode, checked against the path's at most every
    /// [`IDENTITY_CHECK_INTERVAL`].
    identity: Option<(u64, u64)>,
    identity_checked: Instant,
}

/// What the store knows without its file: the locks and recent rejects as last
/// read or written, and what it did while the file was unusable.
#[derive(Default)]
struct Memory {
    locks: HashMap<String, LockRecord>,
    rejects: HashMap<String, Vec<LockEvidence>>,
    pending: Vec<Pending>,
    pending_full_logged: bool,
}

/// How the lock store is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// True while the file is usable.
    pub healthy: bool,
    /// I/O failures of the store since it was opened.
    pub errors: u64,
    /// Successful reopens after a failure.
    pub reopens: u64,
}

/// The shared lock store.
///
/// It keeps an in-memory copy of the locks and recent rejects (loaded at open,
/// updated by every successful read and write, and reloaded at every reopen). When
/// an operation fails with an I/O error (a full disk; redb then refuses every later
/// operation with "previous I/O error"), the store marks itself unhealthy, logs the
/// cause once at error level, and from then on answers from memory: every lock it
/// knows stays enforced and rejects are counted (and accounts locked) in memory.
/// Reopening is attempted lazily, by the first operation after the backoff has
/// elapsed (100 ms doubling to 30 s; a failure within 30 s of a recovery goes on
/// doubling), or at once by [`AccountStore::try_recover`]
/// (SIGHUP); opening a redb file is a bounded amount of I/O, and only one thread
/// tries at a time (the others answer from memory meanwhile). On success it logs
/// "lock store recovered after N s", writes the locks and rejects it held in memory,
/// and is healthy again.
pub struct AccountStore {
    path: PathBuf,
    /// Account names are normalised in this realm.
    realm: Option<String>,
    health: Mutex<Health>,
    /// Held by the one thread reopening the database.
    reopening: Mutex<()>,
    memory: Mutex<Memory>,
    healthy: AtomicBool,
    errors: AtomicU64,
    reopens: AtomicU64,
}

impl std::fmt::Debug for AccountStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountStore")
            .field("path", &self.path)
            .field("healthy", &self.is_healthy())
            .finish()
    }
}

/// Seconds since the UNIX epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads the old format of a reject list (bare little-endian `u64` times).
fn decode_times_v1(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// Reads a reject list; an unreadable one counts as empty (it only delays a
/// lock, and is rewritten at the account's next reject).
fn decode_rejects(b: &[u8]) -> Vec<LockEvidence> {
    serde_json::from_slice(b).unwrap_or_default()
}

fn encode_rejects(r: &[LockEvidence]) -> Vec<u8> {
    // Serialising plain data into memory cannot fail.
    serde_json::to_vec(r).unwrap_or_else(|_| b"[]".to_vec())
}

/// True for the errors that make a redb database unusable until it is reopened.
fn is_io(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

/// Adds a reject at `now` to `times` (an account's recent rejects, oldest first)
/// and returns the lock it causes, if any. The one rule, on disk and in memory.
pub(crate) fn count_reject(
    times: &mut Vec<LockEvidence>,
    now: u64,
    cfg: &AccountsConfig,
    evidence: &Evidence,
) -> Option<LockRecord> {
    let since = now.saturating_sub(cfg.window_secs);
    times.retain(|t| t.at > since);
    times.push(evidence.stored(now));
    // Only the last `lock_after` times can matter.
    let keep = cfg.lock_after as usize;
    if times.len() > keep {
        times.drain(..times.len() - keep);
    }
    if times.len() < keep {
        return None;
    }
    let mut reason = format!(
        "{} rejected messages within {} s",
        times.len(),
        cfg.window_secs
    );
    let mut last = Vec::new();
    if let Some(q) = &evidence.queue_id {
        last.push(format!("queue id {q}"));
    }
    last.push(format!("score {:.2}", evidence.score));
    if !evidence.hits.is_empty() {
        last.push(format!("hits {}", evidence.hits));
    }
    reason.push_str(&format!("; last: {}", last.join(", ")));
    Some(LockRecord {
        locked_at: now,
        reason,
        rejects: times.len() as u32,
        window_secs: cfg.window_secs,
        last_queue_id: evidence.queue_id.clone(),
        last_score: Some(evidence.score),
        messages: times[times.len().saturating_sub(MAX_LOCK_MESSAGES)..].to_vec(),
    })
}

/// Locks a mutex whatever a panicking holder left (the data stays consistent: every
/// critical section here is a few map operations).
fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The device and inode of the file at `path`, if there is one.
pub(crate) fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The key an account is stored under: the name trimmed and in lower case, and,
/// with a `realm`, `USER@REALM` as `USER` (so `Mallory`, `MALLORY` and, in realm
/// `example.com`, `mallory@Example.com` are one account).
pub fn normalise_user(user: &str, realm: Option<&str>) -> String {
    let user = user.trim().to_lowercase();
    if let Some(realm) = realm {
        let realm = realm.trim().to_lowercase();
        if let Some(local) = user.strip_suffix(realm.as_str())
            && let Some(local) = local.strip_suffix('@')
            && !local.is_empty()
        {
            return local.to_string();
        }
    }
    user
}

fn open_db(path: &Path, realm: Option<&str>) -> Result<Database, redb::Error> {
    let db = Builder::new()
        .set_concurrency_mode(ConcurrencyMode::MultiWriter)
        .create(path)?;
    // Make both tables exist so readers never meet a missing table, and store
    // every key normalised.
    let txn = db.begin_write()?;
    txn.open_table(LOCKS)?;
    txn.open_table(REJECTS)?;
    migrate_rejects_v1(&txn)?;
    migrate_keys(&txn, realm)?;
    txn.commit()?;
    Ok(db)
}

/// Moves the reject lists of the old format (table `rejects`, bare times) into
/// `rejects_v2` as evidence without ids, merged with any already there, and
/// deletes the old table: once, the first time a newer version opens the store.
fn migrate_rejects_v1(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let has_old = txn.list_tables()?.any(|t| t.name() == REJECTS_V1.name());
    if !has_old {
        return Ok(());
    }
    let old = txn.open_table(REJECTS_V1)?;
    let mut rows = Vec::new();
    for item in old.iter()? {
        let (k, v) = item?;
        rows.push((k.value().to_string(), decode_times_v1(v.value())));
    }
    drop(old);
    let mut rejects = txn.open_table(REJECTS)?;
    for (user, times) in rows {
        let mut list: Vec<LockEvidence> = times.into_iter().map(LockEvidence::at).collect();
        if let Some(v) = rejects.get(user.as_str())? {
            list.extend(decode_rejects(v.value()));
        }
        list.sort_by_key(|e| e.at);
        rejects.insert(user.as_str(), encode_rejects(&list).as_slice())?;
    }
    drop(rejects);
    txn.delete_table(REJECTS_V1)?;
    Ok(())
}

/// Rewrites keys written before names were normalised (or under another realm
/// setting), merging the records of one account: the earliest lock is kept, reject
/// times are merged, and a locked account keeps no rejects.
fn migrate_keys(txn: &redb::WriteTransaction, realm: Option<&str>) -> Result<(), redb::Error> {
    let mut locks = txn.open_table(LOCKS)?;
    let mut moved_locks = Vec::new();
    for item in locks.iter()? {
        let (k, v) = item?;
        let key = normalise_user(k.value(), realm);
        if key != k.value() {
            moved_locks.push((k.value().to_string(), key, v.value().to_vec()));
        }
    }
    let locked_at = |bytes: &[u8]| {
        serde_json::from_slice::<LockRecord>(bytes).map_or(u64::MAX, |r| r.locked_at)
    };
    for (old, key, bytes) in moved_locks {
        locks.remove(old.as_str())?;
        let keep = match locks.get(key.as_str())? {
            Some(v) => locked_at(&bytes) < locked_at(v.value()),
            None => true,
        };
        if keep {
            locks.insert(key.as_str(), bytes.as_slice())?;
        }
    }
    let mut rejects = txn.open_table(REJECTS)?;
    let mut moved = Vec::new();
    for item in rejects.iter()? {
        let (k, v) = item?;
        let key = normalise_user(k.value(), realm);
        if key != k.value() {
            moved.push((k.value().to_string(), key, decode_rejects(v.value())));
        }
    }
    for (old, key, mut times) in moved {
        rejects.remove(old.as_str())?;
        if locks.get(key.as_str())?.is_some() {
            continue;
        }
        if let Some(v) = rejects.get(key.as_str())? {
            times.extend(decode_rejects(v.value()));
        }
        times.sort_by_key(|e| e.at);
        rejects.insert(key.as_str(), encode_rejects(&times).as_slice())?;
    }
    Ok(())
}

type Snapshot = (
    HashMap<String, LockRecord>,
    HashMap<String, Vec<LockEvidence>>,
);

/// Reads every lock and recent-reject list. A lock that cannot be parsed is left
/// out of memory (its account is still refused by a read of the file).
fn read_all(db: &Database) -> Result<Snapshot, redb::Error> {
    let txn = db.begin_read()?;
    let mut locks = HashMap::new();
    for item in txn.open_table(LOCKS)?.iter()? {
        let (k, v) = item?;
        if let Ok(rec) = serde_json::from_slice(v.value()) {
            locks.insert(k.value().to_string(), rec);
        }
    }
    let mut rejects = HashMap::new();
    for item in txn.open_table(REJECTS)?.iter()? {
        let (k, v) = item?;
        rejects.insert(k.value().to_string(), decode_rejects(v.value()));
    }
    Ok((locks, rejects))
}

impl AccountStore {
    /// Opens the store at `path`, creating it (and its directory) if needed, and
    /// reads its locks into memory; account names are normalised without a realm
    /// (see [`AccountStore::open_in_realm`]).
    pub fn open(path: &Path) -> Result<AccountStore, StoreError> {
        AccountStore::open_in_realm(path, None)
    }

    /// Opens the store at `path` as [`AccountStore::open`] does, with account names
    /// normalised in `realm` ([`normalise_user`]): keys stored otherwise (by an
    /// older version, or under another realm) are rewritten, their records merged.
    pub fn open_in_realm(path: &Path, realm: Option<&str>) -> Result<AccountStore, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let err = |e: redb::Error| StoreError::Db {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        let db = open_db(path, realm).map_err(err)?;
        let (locks, rejects) = read_all(&db).map_err(err)?;
        Ok(AccountStore {
            path: path.to_path_buf(),
            realm: realm.map(|r| r.trim().to_lowercase()),
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
            memory: Mutex::new(Memory {
                locks,
                rejects,
                ..Memory::default()
            }),
            healthy: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while the file is usable.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    /// The health counters, for metrics.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            healthy: self.is_healthy(),
            errors: self.errors.load(Relaxed),
            reopens: self.reopens.load(Relaxed),
        }
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    /// The open database, or None while the store is unhealthy and not yet due
    /// for (or failing) a reopen.
    fn db(&self) -> Option<Arc<Database>> {
        {
            let mut h = guard(&self.health);
            if let Some(db) = h.db.clone() {
                if h.identity_checked.elapsed() < IDENTITY_CHECK_INTERVAL {
                    return Some(db);
                }
                h.identity_checked = Instant::now();
                let was = h.identity;
                drop(h);
                let now = identity(&self.path);
                if now.is_some() && now == was {
                    return Some(db);
                }
                self.file_changed(was, now);
                return guard(&self.health).db.clone();
            }
            if Instant::now() < h.next_attempt {
                return None;
            }
        }
        self.reopen();
        guard(&self.health).db.clone()
    }

    /// The file at the path is not the one open (deleted, or replaced): reopens
    /// the store there, creating it if needed, and writes the locks known in
    /// memory that the file lacks, so the service and `chaff accounts` share one
    /// file again and no lock is lost.
    fn file_changed(&self, was: Option<(u64, u64)>, now: Option<(u64, u64)>) {
        let _one = match self.reopening.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let held: Vec<(String, LockRecord)> = guard(&self.memory)
            .locks
            .iter()
            .map(|(u, r)| (u.clone(), r.clone()))
            .collect();
        warn!(
            path = %self.path.display(),
            was = ?was,
            now = ?now,
            locks = held.len(),
            "lock store file changed under the service (deleted or replaced): \
             reopening it at its path and writing the locks held in memory"
        );
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let opened = open_db(&self.path, self.realm.as_deref()).and_then(|db| {
            let snapshot = read_all(&db)?;
            Ok((db, snapshot))
        });
        let (db, (locks, rejects)) = match opened {
            Ok(x) => x,
            Err(e) => {
                // Handled as a failed file: enforced from memory, reopened with
                // backoff, and the locks held written when it recovers.
                {
                    let mut m = guard(&self.memory);
                    for (user, rec) in held {
                        m.pending.push(Pending::Lock { user, rec });
                    }
                }
                let _ = self.failed(redb::Error::Io(std::io::Error::other(e.to_string())));
                return;
            }
        };
        {
            let mut m = guard(&self.memory);
            m.rejects = rejects;
            for (user, rec) in locks {
                m.locks.insert(user, rec);
            }
        }
        {
            let mut h = guard(&self.health);
            h.db = Some(Arc::new(db));
            h.identity = identity(&self.path);
            h.identity_checked = Instant::now();
        }
        for (user, rec) in held {
            if let Err(e) = self.insert_lock(&user, &rec) {
                error!(error = %e, user = %user, "lock store: a lock held in memory could not be written");
            }
        }
    }

    /// Runs `e` past the health check: an I/O error marks the store unhealthy
    /// (logged once, with the cause) and closes the database until it is reopened.
    fn failed(&self, e: redb::Error) -> StoreError {
        if is_io(&e) {
            self.errors.fetch_add(1, Relaxed);
            let mut h = guard(&self.health);
            if h.db.take().is_some() {
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
                self.healthy.store(false, Relaxed);
                error!(
                    path = %self.path.display(),
                    error = %e,
                    "lock store failed; enforcing the locks it knows from memory and \
                     reopening it with backoff"
                );
            }
        }
        self.err(e)
    }

    /// Tries to reopen an unhealthy store now, whatever the backoff (SIGHUP does).
    /// Returns true when the store is healthy afterwards.
    pub fn try_recover(&self) -> bool {
        if self.is_healthy() {
            return true;
        }
        guard(&self.health).next_attempt = Instant::now();
        self.reopen();
        self.is_healthy()
    }

    /// One attempt to reopen the database and write what was held in memory; only
    /// one thread tries at a time, the others answer from memory meanwhile.
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
        let attempt = open_db(&self.path, self.realm.as_deref()).and_then(|db| {
            let snapshot = read_all(&db)?;
            Ok((db, snapshot))
        });
        let (db, (locks, rejects)) = match attempt {
            Ok(x) => x,
            Err(e) => {
                self.errors.fetch_add(1, Relaxed);
                let mut h = guard(&self.health);
                h.backoff = (h.backoff * 2).min(MAX_REOPEN_BACKOFF);
                h.next_attempt = Instant::now() + h.backoff;
                warn!(
                    path = %self.path.display(),
                    error = %e,
                    retry_in_ms = h.backoff.as_millis() as u64,
                    "lock store still unusable"
                );
                return;
            }
        };
        let pending = {
            let mut m = guard(&self.memory);
            // Locks made in memory stay known until they are written below.
            let held: Vec<(String, LockRecord)> = m
                .pending
                .iter()
                .filter_map(|p| match p {
                    Pending::Lock { user, rec } => Some((user.clone(), rec.clone())),
                    Pending::Reject { .. } => None,
                })
                .collect();
            m.locks = locks;
            m.rejects = rejects;
            for (user, rec) in held {
                m.locks.entry(user).or_insert(rec);
            }
            m.pending_full_logged = false;
            std::mem::take(&mut m.pending)
        };
        let down_for = {
            let mut h = guard(&self.health);
            h.db = Some(Arc::new(db));
            h.identity = identity(&self.path);
            h.identity_checked = Instant::now();
            h.recovered_at = Some(Instant::now());
            h.failed_at
                .take()
                .map_or(0.0, |t| t.elapsed().as_secs_f64())
        };
        self.healthy.store(true, Relaxed);
        self.reopens.fetch_add(1, Relaxed);
        warn!(
            path = %self.path.display(),
            down_secs = format!("{down_for:.1}"),
            pending = pending.len(),
            "lock store recovered after {down_for:.1} s; writing the locks and rejects held in memory"
        );
        let mut left = pending.into_iter();
        for p in left.by_ref() {
            let written = match &p {
                Pending::Lock { user, rec } => self.insert_lock(user, rec).map(|_| ()),
                Pending::Reject {
                    user,
                    now,
                    cfg,
                    evidence,
                } => self.record_reject(user, *now, cfg, evidence).map(|_| ()),
            };
            match written {
                Ok(()) => {}
                Err(e) if !self.is_healthy() => {
                    // Failed again: keep what is not written for the next recovery.
                    let mut m = guard(&self.memory);
                    let mut rest = vec![p];
                    rest.extend(left);
                    rest.append(&mut m.pending);
                    m.pending = rest;
                    warn!(error = %e, "lock store failed again while writing what it held");
                    return;
                }
                Err(e) => error!(error = %e, "lock store: a held operation could not be written"),
            }
        }
    }

    /// Holds `op` for the next recovery, within [`MAX_PENDING`].
    fn hold(&self, m: &mut Memory, op: Pending) {
        if matches!(op, Pending::Reject { .. }) && m.pending.len() >= MAX_PENDING {
            if !m.pending_full_logged {
                m.pending_full_logged = true;
                error!(
                    max = MAX_PENDING,
                    "lock store: too many rejects held in memory; further ones are \
                     counted in memory only"
                );
            }
            return;
        }
        m.pending.push(op);
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let Some(db) = self.db() else {
            return Err(self.err(redb::Error::PreviousIo));
        };
        let run = || -> Result<T, redb::Error> {
            let txn = db.begin_write()?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.failed(e))
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Option<Result<T, StoreError>> {
        let db = self.db()?;
        let run = || -> Result<T, redb::Error> { f(&db.begin_read()?) };
        match run() {
            Ok(x) => Some(Ok(x)),
            Err(e) if is_io(&e) => {
                let _ = self.failed(e);
                None
            }
            Err(e) => Some(Err(self.err(e))),
        }
    }

    fn parse_record(&self, user: &str, bytes: &[u8]) -> Result<LockRecord, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            user: user.to_string(),
            message: e.to_string(),
        })
    }

    /// The lock on `user`, if there is one: read from the file, or, while the store
    /// is unhealthy, from memory.
    pub fn lock_of(&self, user: &str) -> Result<Option<LockRecord>, StoreError> {
        let key = self.key(user);
        let user = key.as_str();
        let got = self.read(|txn| {
            let table = txn.open_table(LOCKS)?;
            Ok(table.get(user)?.map(|v| v.value().to_vec()))
        });
        match got {
            Some(Ok(bytes)) => {
                let rec = bytes.map(|b| self.parse_record(user, &b)).transpose()?;
                let mut m = guard(&self.memory);
                match &rec {
                    Some(r) => m.locks.insert(user.to_string(), r.clone()),
                    None => m.locks.remove(user),
                };
                Ok(rec)
            }
            Some(Err(e)) => Err(e),
            None => Ok(guard(&self.memory).locks.get(user).cloned()),
        }
    }

    /// Counts a rejected message from `user` at time `now`; locks the account when
    /// the count within the window reaches `cfg.lock_after`. Returns the new lock,
    /// if this message caused one. While the store is unhealthy the count and the
    /// lock are kept in memory and written when it recovers.
    pub fn record_reject(
        &self,
        user: &str,
        now: u64,
        cfg: &AccountsConfig,
        evidence: &Evidence,
    ) -> Result<Option<LockRecord>, StoreError> {
        if cfg.lock_after == 0 {
            return Ok(None);
        }
        let key = self.key(user);
        let user = key.as_str();
        let mut parse_error = None;
        let written = self.write(|txn| {
            let mut locks = txn.open_table(LOCKS)?;
            if locks.get(user)?.is_some() {
                return Ok((None, None));
            }
            let mut rejects = txn.open_table(REJECTS)?;
            let mut times = rejects
                .get(user)?
                .map(|v| decode_rejects(v.value()))
                .unwrap_or_default();
            match count_reject(&mut times, now, cfg, evidence) {
                Some(rec) => match serde_json::to_vec(&rec) {
                    Ok(json) => {
                        locks.insert(user, json.as_slice())?;
                        rejects.remove(user)?;
                        Ok((Some(rec), None))
                    }
                    Err(e) => {
                        parse_error = Some(e.to_string());
                        Ok((None, None))
                    }
                },
                None => {
                    rejects.insert(user, encode_rejects(&times).as_slice())?;
                    Ok((None, Some(times)))
                }
            }
        });
        let (locked, times) = match written {
            Ok(x) => x,
            Err(_) if !self.is_healthy() => {
                return Ok(self.reject_in_memory(user, now, cfg, evidence));
            }
            Err(e) => return Err(e),
        };
        if let Some(message) = parse_error {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                user: user.to_string(),
                message,
            });
        }
        let mut m = guard(&self.memory);
        if let Some(rec) = &locked {
            m.locks.insert(user.to_string(), rec.clone());
            m.rejects.remove(user);
        } else if let Some(times) = times {
            m.rejects.insert(user.to_string(), times);
        }
        Ok(locked)
    }

    /// [`record_reject`](Self::record_reject) while the file is unusable.
    fn reject_in_memory(
        &self,
        user: &str,
        now: u64,
        cfg: &AccountsConfig,
        evidence: &Evidence,
    ) -> Option<LockRecord> {
        let mut m = guard(&self.memory);
        if m.locks.contains_key(user) {
            return None;
        }
        let mut times = m.rejects.remove(user).unwrap_or_default();
        match count_reject(&mut times, now, cfg, evidence) {
            Some(rec) => {
                m.locks.insert(user.to_string(), rec.clone());
                // The lock replaces the rejects held for this account.
                m.pending
                    .retain(|p| !matches!(p, Pending::Reject { user: u, .. } if u == user));
                m.pending.push(Pending::Lock {
                    user: user.to_string(),
                    rec: rec.clone(),
                });
                Some(rec)
            }
            None => {
                m.rejects.insert(user.to_string(), times);
                let op = Pending::Reject {
                    user: user.to_string(),
                    now,
                    cfg: cfg.clone(),
                    evidence: evidence.clone(),
                };
                self.hold(&mut m, op);
                None
            }
        }
    }

    /// Writes a lock unless the account is locked already; true if written.
    fn insert_lock(&self, user: &str, rec: &LockRecord) -> Result<bool, StoreError> {
        let json = serde_json::to_vec(rec).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            user: user.to_string(),
            message: e.to_string(),
        })?;
        let made = self.write(|txn| {
            let mut locks = txn.open_table(LOCKS)?;
            if locks.get(user)?.is_some() {
                return Ok(false);
            }
            locks.insert(user, json.as_slice())?;
            txn.open_table(REJECTS)?.remove(user)?;
            Ok(true)
        })?;
        let mut m = guard(&self.memory);
        m.locks
            .entry(user.to_string())
            .or_insert_with(|| rec.clone());
        m.rejects.remove(user);
        Ok(made)
    }

    /// Locks `user` by hand with a reason (does nothing if already locked). Fails
    /// if the file cannot be written.
    pub fn lock(&self, user: &str, now: u64, reason: &str) -> Result<bool, StoreError> {
        let key = self.key(user);
        let user = key.as_str();
        let rec = LockRecord {
            locked_at: now,
            reason: reason.to_string(),
            rejects: 0,
            window_secs: 0,
            last_queue_id: None,
            last_score: None,
            messages: Vec::new(),
        };
        self.insert_lock(user, &rec)
    }

    /// Unlocks `user` and forgets its recent rejects. Returns false if it was not
    /// locked. Fails if the file cannot be written.
    pub fn unlock(&self, user: &str) -> Result<bool, StoreError> {
        let key = self.key(user);
        let user = key.as_str();
        let was = self.write(|txn| {
            let mut locks = txn.open_table(LOCKS)?;
            let was = locks.remove(user)?.is_some();
            let mut rejects = txn.open_table(REJECTS)?;
            rejects.remove(user)?;
            Ok(was)
        })?;
        let mut m = guard(&self.memory);
        m.locks.remove(user);
        m.rejects.remove(user);
        Ok(was)
    }

    fn unusable(&self) -> StoreError {
        self.err(redb::Error::PreviousIo)
    }

    /// Every locked account, by name, read from the file.
    pub fn list(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        let rows = self
            .read(list_rows)
            .unwrap_or_else(|| Err(self.unusable()))?;
        parse_rows(&self.path, rows)
    }

    /// Accounts with rejects inside `window_secs` before `now` that are not locked,
    /// with their count, read from the file.
    pub fn recent_rejects(
        &self,
        now: u64,
        window_secs: u64,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        self.read(|txn| recent_rows(txn, now, window_secs))
            .unwrap_or_else(|| Err(self.unusable()))
    }

    /// Opens the store at `path` only if it exists (for commands that change
    /// existing locks, such as `unlock`): a mistyped path is an error, not a new
    /// store.
    pub fn open_existing(path: &Path, realm: Option<&str>) -> Result<AccountStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        AccountStore::open_in_realm(path, realm)
    }

    /// The key `user` is stored under.
    fn key(&self, user: &str) -> String {
        normalise_user(user, self.realm.as_deref())
    }

    /// How many accounts are locked: read from the file, or, while the store is
    /// unhealthy, the locks known in memory.
    pub fn locked_count(&self) -> Result<u64, StoreError> {
        match self.read(|txn| Ok(txn.open_table(LOCKS)?.len()?)) {
            Some(r) => r,
            None => Ok(guard(&self.memory).locks.len() as u64),
        }
    }

    /// Marks the store failed as an I/O error would, for tests of the state machine
    /// (the real failure, a full disk, is tested on a tmpfs in
    /// `tests/milter_lock_store.rs`).
    #[cfg(test)]
    pub(crate) fn fail_for_test(&self) {
        let _ = self.failed(redb::Error::PreviousIo);
    }
}

fn list_rows(txn: &redb::ReadTransaction) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
    let table = txn.open_table(LOCKS)?;
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(out)
}

fn parse_rows(
    path: &Path,
    rows: Vec<(String, Vec<u8>)>,
) -> Result<Vec<(String, LockRecord)>, StoreError> {
    rows.into_iter()
        .map(|(user, bytes)| match serde_json::from_slice(&bytes) {
            Ok(rec) => Ok((user, rec)),
            Err(e) => Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                user,
                message: e.to_string(),
            }),
        })
        .collect()
}

fn recent_rows(
    txn: &redb::ReadTransaction,
    now: u64,
    window_secs: u64,
) -> Result<Vec<(String, u32)>, redb::Error> {
    let since = now.saturating_sub(window_secs);
    let mut out = Vec::new();
    // A store not yet migrated (read by `chaff accounts list`, which does not
    // write) has its rejects in the old table.
    let (table, v1) = match txn.open_table(REJECTS) {
        Ok(t) => (t, false),
        Err(redb::TableError::TableDoesNotExist(_)) => (txn.open_table(REJECTS_V1)?, true),
        Err(e) => return Err(e.into()),
    };
    for item in table.iter()? {
        let (k, v) = item?;
        let n = if v1 {
            decode_times_v1(v.value())
                .into_iter()
                .filter(|&t| t > since)
                .count()
        } else {
            decode_rejects(v.value())
                .into_iter()
                .filter(|t| t.at > since)
                .count()
        };
        if n > 0 {
            out.push((k.value().to_string(), n as u32));
        }
    }
    Ok(out)
}

/// The locks and recent rejects of an existing store, read without writing to it
/// or creating it (`chaff accounts list`): a missing file is
/// [`StoreError::Missing`], and a file the reader may not write can be read.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreView {
    /// Every locked account, by name.
    pub locks: Vec<(String, LockRecord)>,
    /// Accounts with rejects in the window asked for, with their count.
    pub recent: Vec<(String, u32)>,
}

impl StoreView {
    /// Reads the store at `path`; `recent` counts rejects within `window_secs`
    /// before `now`.
    pub fn read(path: &Path, now: u64, window_secs: u64) -> Result<StoreView, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let err = |e: redb::Error| StoreError::Db {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        let db = match Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .open_read_only(path)
        {
            Ok(db) => db,
            // A file left by a crash needs a repair, which only a writer makes.
            Err(redb::DatabaseError::RepairAborted) => {
                let store = AccountStore::open(path)?;
                return Ok(StoreView {
                    locks: store.list()?,
                    recent: store.recent_rejects(now, window_secs)?,
                });
            }
            Err(e) => return Err(err(e.into())),
        };
        let txn = db.begin_read().map_err(|e| err(e.into()))?;
        // A store made by an older version may lack a table: then it has no rows.
        let missing_table = |e: &redb::Error| matches!(e, redb::Error::TableDoesNotExist(_));
        let rows = match list_rows(&txn) {
            Ok(r) => r,
            Err(e) if missing_table(&e) => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        let recent = match recent_rows(&txn, now, window_secs) {
            Ok(r) => r,
            Err(e) if missing_table(&e) => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        Ok(StoreView {
            locks: parse_rows(path, rows)?,
            recent,
        })
    }
}

/// Formats UNIX seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: u32, w: u64) -> AccountsConfig {
        AccountsConfig {
            lock_after: n,
            window_secs: w,
            db: PathBuf::new(),
            on_store_error: crate::config::OnStoreError::EnforceKnown,
            realm: None,
        }
    }

    fn users(store: &AccountStore) -> Vec<String> {
        store.list().unwrap().into_iter().map(|(u, _)| u).collect()
    }

    #[test]
    fn an_unusable_store_enforces_known_locks_and_writes_new_ones_when_it_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let store = AccountStore::open(&path).unwrap();
        assert!(store.lock("alice", 5, "by hand").unwrap());
        let c = cfg(2, 100);
        let ev = Evidence::default();
        assert_eq!(store.record_reject("bob", 10, &c, &ev).unwrap(), None);
        store.fail_for_test();
        assert!(!store.is_healthy());
        let stats = store.stats();
        assert_eq!((stats.healthy, stats.errors, stats.reopens), (false, 1, 0));
        // From memory: alice stays locked, bob's earlier reject counts, and his
        // second locks him.
        assert_eq!(store.lock_of("alice").unwrap().unwrap().reason, "by hand");
        let lock = store
            .record_reject("bob", 11, &c, &ev)
            .unwrap()
            .expect("locked");
        assert_eq!(lock.rejects, 2);
        assert_eq!(store.lock_of("bob").unwrap(), Some(lock.clone()));
        assert_eq!(store.record_reject("carol", 12, &c, &ev).unwrap(), None);
        assert_eq!(store.locked_count().unwrap(), 2);
        // Writes by hand and the admin's reads fail rather than pretend.
        assert!(store.lock("dave", 13, "x").is_err());
        assert!(store.unlock("alice").is_err());
        assert!(store.list().is_err());
        // Not yet written: another handle does not see bob's lock.
        let admin = AccountStore::open(&path).unwrap();
        assert_eq!(users(&admin), ["alice"]);
        assert!(store.try_recover());
        assert_eq!(store.stats().reopens, 1);
        assert_eq!(users(&admin), ["alice", "bob"]);
        assert_eq!(admin.lock_of("bob").unwrap(), Some(lock));
        assert_eq!(
            admin.recent_rejects(12, 100).unwrap(),
            vec![("carol".into(), 1)]
        );
        // Recovered: an unlock by the admin is seen again.
        assert!(admin.unlock("bob").unwrap());
        assert_eq!(store.lock_of("bob").unwrap(), None);
    }

    #[test]
    fn reopening_waits_for_the_backoff_and_doubles_it_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let store = AccountStore::open(&path).unwrap();
        store.fail_for_test();
        // Within the first 100 ms nothing is tried.
        assert_eq!(store.lock_of("x").unwrap(), None);
        assert!(!store.is_healthy());
        // A path that cannot be opened (a directory in the file's place) fails the
        // attempt and doubles the wait.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        std::thread::sleep(MIN_REOPEN_BACKOFF + Duration::from_millis(20));
        assert_eq!(store.lock_of("x").unwrap(), None);
        assert!(!store.is_healthy());
        assert_eq!(store.stats().errors, 2);
        assert_eq!(guard(&store.health).backoff, MIN_REOPEN_BACKOFF * 2);
        assert_eq!(
            store
                .record_reject("y", 1, &cfg(1, 10), &Evidence::default())
                .unwrap()
                .map(|r| r.rejects),
            Some(1)
        );
        // Fixed: the next operation after the backoff reopens (a fresh file here)
        // and writes the lock held in memory.
        std::fs::remove_dir(&path).unwrap();
        std::thread::sleep(MIN_REOPEN_BACKOFF * 2 + Duration::from_millis(20));
        assert_eq!(store.lock_of("x").unwrap(), None);
        assert!(store.is_healthy());
        assert_eq!(store.stats().reopens, 1);
        assert_eq!(users(&AccountStore::open(&path).unwrap()), ["y"]);
        // Failing again soon after recovering goes on doubling the wait.
        store.fail_for_test();
        assert_eq!(guard(&store.health).backoff, MIN_REOPEN_BACKOFF * 4);
    }

    #[test]
    fn n_rejects_in_the_window_lock_and_unlock_clears() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::open(&dir.path().join("sub/a.redb")).unwrap();
        let c = cfg(3, 100);
        let ev = Evidence {
            queue_id: Some("Q1".into()),
            score: 20.0,
            hits: "代开*2".into(),
            entry: None,
        };
        assert_eq!(store.record_reject("alice", 1000, &c, &ev).unwrap(), None);
        assert_eq!(store.record_reject("alice", 1050, &c, &ev).unwrap(), None);
        // The first reject falls out of the window: still two.
        assert_eq!(store.record_reject("alice", 1101, &c, &ev).unwrap(), None);
        assert_eq!(
            store.recent_rejects(1101, 100).unwrap(),
            vec![("alice".into(), 2)]
        );
        let lock = store
            .record_reject("alice", 1102, &c, &ev)
            .unwrap()
            .expect("locked");
        assert_eq!(lock.rejects, 3);
        assert_eq!(
            lock.reason,
            "3 rejected messages within 100 s; last: queue id Q1, score 20.00, hits 代开*2"
        );
        assert_eq!(store.lock_of("alice").unwrap(), Some(lock.clone()));
        assert_eq!(store.lock_of("bob").unwrap(), None);
        assert_eq!(store.list().unwrap(), vec![("alice".into(), lock)]);
        assert_eq!(store.locked_count().unwrap(), 1);
        assert!(store.unlock("alice").unwrap());
        assert!(!store.unlock("alice").unwrap());
        assert_eq!(store.lock_of("alice").unwrap(), None);
        assert!(store.recent_rejects(1102, 100).unwrap().is_empty());
    }

    #[test]
    fn locks_survive_reopening_and_are_shared_between_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        {
            let store = AccountStore::open(&path).unwrap();
            assert!(store.lock("carol", 5, "by hand").unwrap());
        }
        let service = AccountStore::open(&path).unwrap();
        assert_eq!(service.lock_of("carol").unwrap().unwrap().reason, "by hand");
        // A second handle (as `chaff accounts unlock` would open) sees and changes it.
        let admin = AccountStore::open(&path).unwrap();
        assert!(admin.unlock("carol").unwrap());
        assert_eq!(service.lock_of("carol").unwrap(), None);
    }

    #[test]
    fn zero_disables_locking() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::open(&dir.path().join("a.redb")).unwrap();
        for t in 0..10 {
            assert_eq!(
                store
                    .record_reject("d", t, &cfg(0, 10), &Evidence::default())
                    .unwrap(),
                None
            );
        }
    }

    #[test]
    fn keys_are_normalised_and_old_keys_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        // A store written before keys were normalised.
        {
            let db = open_db(&path, None).unwrap();
            let rec = |t: u64| {
                serde_json::to_vec(&LockRecord {
                    locked_at: t,
                    reason: format!("at {t}"),
                    rejects: 0,
                    window_secs: 0,
                    last_queue_id: None,
                    last_score: None,
                    messages: Vec::new(),
                })
                .unwrap()
            };
            let txn = db.begin_write().unwrap();
            {
                let mut locks = txn.open_table(LOCKS).unwrap();
                locks.insert("MALLORY", rec(20).as_slice()).unwrap();
                locks
                    .insert("mallory@example.com", rec(10).as_slice())
                    .unwrap();
                locks.insert("Bob@Example.COM", rec(30).as_slice()).unwrap();
                // In the old reject format, too.
                let mut rejects = txn.open_table(REJECTS_V1).unwrap();
                rejects
                    .insert("Carol", encode_times_v1(&[5, 7]).as_slice())
                    .unwrap();
                rejects
                    .insert("carol@example.com", encode_times_v1(&[6]).as_slice())
                    .unwrap();
                rejects
                    .insert("MALLORY", encode_times_v1(&[1]).as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = AccountStore::open_in_realm(&path, Some("Example.com")).unwrap();
        // Merged: the earliest lock of an account is kept.
        let locks = store.list().unwrap();
        assert_eq!(
            locks
                .iter()
                .map(|(u, r)| (u.as_str(), r.locked_at))
                .collect::<Vec<_>>(),
            [("bob", 30), ("mallory", 10)]
        );
        assert_eq!(
            store.recent_rejects(7, 100).unwrap(),
            vec![("carol".into(), 3)]
        );
        for user in ["mallory", "MALLORY", "mallory@EXAMPLE.com", " Mallory "] {
            assert!(store.lock_of(user).unwrap().is_some(), "{user}");
        }
        assert!(store.lock_of("mallory@example.org").unwrap().is_none());
        assert!(store.unlock("BOB@example.com").unwrap());
        assert!(store.lock("Dave@Example.com", 1, "x").unwrap());
        assert_eq!(users(&store), ["dave", "mallory"]);
        // Without a realm, case still does not matter.
        assert_eq!(normalise_user("Eve@Example.com", None), "eve@example.com");
    }

    /// The old stored format of a reject list.
    fn encode_times_v1(t: &[u64]) -> Vec<u8> {
        t.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn ev(q: &str, score: f64, entry: Option<u64>) -> Evidence {
        Evidence {
            queue_id: Some(q.into()),
            score,
            hits: String::new(),
            entry: entry.map(EntryId::from_u64),
        }
    }

    #[test]
    fn a_lock_keeps_the_messages_that_caused_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let store = AccountStore::open(&path).unwrap();
        let c = cfg(3, 100);
        let id = EntryId::new(1_700_000_000_000, 7);
        // Fell out of the window: not evidence.
        store
            .record_reject("mallory", 900, &c, &ev("Q0", 9.0, None))
            .unwrap();
        store
            .record_reject("mallory", 1000, &c, &ev("Q1", 11.0, Some(id.as_u64())))
            .unwrap();
        store
            .record_reject("mallory", 1001, &c, &ev("Q2", 12.0, None))
            .unwrap();
        let lock = store
            .record_reject("mallory", 1002, &c, &ev("Q3", 13.5, Some(id.as_u64() + 1)))
            .unwrap()
            .expect("locked");
        let want = vec![
            LockEvidence {
                at: 1000,
                queue_id: Some("Q1".into()),
                score: Some(11.0),
                entry: Some(id),
            },
            LockEvidence {
                at: 1001,
                queue_id: Some("Q2".into()),
                score: Some(12.0),
                entry: None,
            },
            LockEvidence {
                at: 1002,
                queue_id: Some("Q3".into()),
                score: Some(13.5),
                entry: Some(id.next()),
            },
        ];
        assert_eq!(lock.messages, want);
        // Read back by another handle (the command's), from the file.
        drop(store);
        let admin = AccountStore::open(&path).unwrap();
        assert_eq!(admin.lock_of("mallory").unwrap().unwrap().messages, want);
        let view = StoreView::read(&path, 1002, 100).unwrap();
        assert_eq!(view.locks[0].1.messages, want);
        // The JSON names the entry as the console and `quarantine show` do.
        let json = serde_json::to_string(&lock).unwrap();
        assert!(json.contains(&format!("\"entry\":\"{id}\"")), "{json}");
        // A record stored before `messages` existed still reads, with none.
        let old = r#"{"locked_at":5,"reason":"r","rejects":3,"window_secs":60,"last_queue_id":"Q","last_score":9.5}"#;
        let rec: LockRecord = serde_json::from_str(old).unwrap();
        assert!(rec.messages.is_empty());
        assert_eq!(rec.last_queue_id.as_deref(), Some("Q"));
    }

    #[test]
    fn a_store_in_the_old_reject_format_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        // Written as the previous version did: the `rejects` table of bare
        // little-endian times, and a lock record without `messages`.
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut locks = txn.open_table(LOCKS).unwrap();
                let old = br#"{"locked_at":5,"reason":"old","rejects":2,"window_secs":60,"last_queue_id":null,"last_score":null}"#;
                locks.insert("eve", old.as_slice()).unwrap();
                let mut rejects = txn.open_table(REJECTS_V1).unwrap();
                rejects
                    .insert("bob", encode_times_v1(&[1000, 1010]).as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        // Read-only, not yet migrated: the old table is read.
        let view = StoreView::read(&path, 1010, 100).unwrap();
        assert_eq!(view.recent, vec![("bob".into(), 2)]);
        let store = AccountStore::open(&path).unwrap();
        assert_eq!(store.lock_of("eve").unwrap().unwrap().reason, "old");
        assert_eq!(
            store.recent_rejects(1010, 100).unwrap(),
            vec![("bob".into(), 2)]
        );
        // The old table is gone, the rejects are in the new one.
        {
            let db = guard(&store.health).db.clone().unwrap();
            let txn = db.begin_read().unwrap();
            assert!(txn.list_tables().unwrap().all(|t| t.name() != "rejects"));
            let v2 = txn.open_table(REJECTS).unwrap();
            assert_eq!(
                decode_rejects(v2.get("bob").unwrap().unwrap().value()),
                vec![LockEvidence::at(1000), LockEvidence::at(1010)]
            );
        }
        // The migrated rejects count, and go into the lock as what is known.
        let lock = store
            .record_reject("bob", 1020, &cfg(3, 100), &ev("Q9", 20.0, None))
            .unwrap()
            .expect("locked");
        assert_eq!(
            lock.messages,
            vec![
                LockEvidence::at(1000),
                LockEvidence::at(1010),
                ev("Q9", 20.0, None).stored(1020)
            ]
        );
        // Opening again finds nothing left to migrate.
        drop(store);
        let again = AccountStore::open(&path).unwrap();
        assert_eq!(again.lock_of("bob").unwrap().unwrap().messages.len(), 3);
    }

    #[test]
    fn a_lock_keeps_at_most_max_lock_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::open(&dir.path().join("a.redb")).unwrap();
        let n = MAX_LOCK_MESSAGES as u32 + 20;
        let c = cfg(n, 10_000);
        let mut lock = None;
        for t in 0..u64::from(n) {
            lock = store
                .record_reject("d", 1000 + t, &c, &ev(&format!("Q{t}"), 10.0, None))
                .unwrap();
        }
        let lock = lock.expect("locked");
        assert_eq!(lock.rejects, n);
        assert_eq!(lock.messages.len(), MAX_LOCK_MESSAGES);
        // The newest are kept.
        assert_eq!(
            lock.messages.last().unwrap().queue_id.as_deref(),
            Some(format!("Q{}", n - 1).as_str())
        );
        assert_eq!(lock.messages[0].at, 1000 + 20);
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
