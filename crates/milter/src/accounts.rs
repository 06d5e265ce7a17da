//! Locked accounts: a site's own users who send spam are stopped until an admin
//! says otherwise.
//!
//! An authenticated account whose mail is rejected `lock_after` times within
//! `window_secs` is locked; every further message from it gets the reject reply until
//! `chaff accounts unlock USER`. The record says when and why (the count, the window,
//! the last message's queue id, score and hits).
//!
//! The store is a redb file opened in multi-writer mode, so the running service and
//! the `chaff accounts` command share it without a control socket: an unlock
//! committed by the command is seen by the service's next read. redb commits are
//! durable (fsync'd, copy-on-write), so locks survive restarts and crashes.

use redb::{
    Builder, ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::config::AccountsConfig;

/// Locked accounts: user → JSON [`LockRecord`].
const LOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("locks");
/// Recent rejects: user → little-endian `u64` UNIX times, oldest first.
const REJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("rejects");

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

/// The shared lock store.
pub struct AccountStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for AccountStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountStore")
            .field("path", &self.path)
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

fn decode_times(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

fn encode_times(t: &[u64]) -> Vec<u8> {
    t.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl AccountStore {
    /// Opens the store at `path`, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> Result<AccountStore, StoreError> {
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
        let db = Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(|e| err(e.into()))?;
        let store = AccountStore {
            db,
            path: path.to_path_buf(),
        };
        // Make both tables exist so readers never meet a missing table.
        store.write(|txn| {
            txn.open_table(LOCKS)?;
            txn.open_table(REJECTS)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let out = f(&txn).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn parse_record(&self, user: &str, bytes: &[u8]) -> Result<LockRecord, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            user: user.to_string(),
            message: e.to_string(),
        })
    }

    /// The lock on `user`, if there is one.
    pub fn lock_of(&self, user: &str) -> Result<Option<LockRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(LOCKS).map_err(|e| self.err(e))?;
        let got = table.get(user).map_err(|e| self.err(e))?;
        match got {
            Some(v) => Ok(Some(self.parse_record(user, v.value())?)),
            None => Ok(None),
        }
    }

    /// Counts a rejected message from `user` at time `now`; locks the account when
    /// the count within the window reaches `cfg.lock_after`. Returns the new lock,
    /// if this message caused one.
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
        let mut parse_error = None;
        let locked = self.write(|txn| {
            let mut locks = txn.open_table(LOCKS)?;
            if locks.get(user)?.is_some() {
                return Ok(None);
            }
            let mut rejects = txn.open_table(REJECTS)?;
            let mut times = rejects
                .get(user)?
                .map(|v| decode_times(v.value()))
                .unwrap_or_default();
            let since = now.saturating_sub(cfg.window_secs);
            times.retain(|&t| t > since);
            times.push(now);
            // Only the last `lock_after` times can matter.
            let keep = cfg.lock_after as usize;
            if times.len() > keep {
                times.drain(..times.len() - keep);
            }
            if times.len() >= keep {
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
                let rec = LockRecord {
                    locked_at: now,
                    reason,
                    rejects: times.len() as u32,
                    window_secs: cfg.window_secs,
                    last_queue_id: evidence.queue_id.clone(),
                    last_score: Some(evidence.score),
                };
                match serde_json::to_vec(&rec) {
                    Ok(json) => {
                        locks.insert(user, json.as_slice())?;
                        rejects.remove(user)?;
                        Ok(Some(rec))
                    }
                    Err(e) => {
                        parse_error = Some(e.to_string());
                        Ok(None)
                    }
                }
            } else {
                rejects.insert(user, encode_times(&times).as_slice())?;
                Ok(None)
            }
        })?;
        if let Some(message) = parse_error {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                user: user.to_string(),
                message,
            });
        }
        Ok(locked)
    }

    /// Locks `user` by hand with a reason (does nothing if already locked).
    pub fn lock(&self, user: &str, now: u64, reason: &str) -> Result<bool, StoreError> {
        let rec = LockRecord {
            locked_at: now,
            reason: reason.to_string(),
            rejects: 0,
            window_secs: 0,
            last_queue_id: None,
            last_score: None,
        };
        let json = serde_json::to_vec(&rec).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            user: user.to_string(),
            message: e.to_string(),
        })?;
        self.write(|txn| {
            let mut locks = txn.open_table(LOCKS)?;
            if locks.get(user)?.is_some() {
                return Ok(false);
            }
            locks.insert(user, json.as_slice())?;
            Ok(true)
        })
    }

    /// Unlocks `user` and forgets its recent rejects. Returns false if it was not locked.
    pub fn unlock(&self, user: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut locks = txn.open_table(LOCKS)?;
            let was = locks.remove(user)?.is_some();
            let mut rejects = txn.open_table(REJECTS)?;
            rejects.remove(user)?;
            Ok(was)
        })
    }

    /// Every locked account, by name.
    pub fn list(&self) -> Result<Vec<(String, LockRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(LOCKS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let user = k.value().to_string();
            let rec = self.parse_record(&user, v.value())?;
            out.push((user, rec));
        }
        Ok(out)
    }

    /// Accounts with rejects inside `window_secs` before `now` that are not locked,
    /// with their count.
    pub fn recent_rejects(
        &self,
        now: u64,
        window_secs: u64,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(REJECTS).map_err(|e| self.err(e))?;
        let since = now.saturating_sub(window_secs);
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let n = decode_times(v.value())
                .into_iter()
                .filter(|&t| t > since)
                .count();
            if n > 0 {
                out.push((k.value().to_string(), n as u32));
            }
        }
        Ok(out)
    }

    /// How many accounts are locked.
    pub fn locked_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(LOCKS).map_err(|e| self.err(e))?;
        table.len().map_err(|e| self.err(e))
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
        }
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
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
