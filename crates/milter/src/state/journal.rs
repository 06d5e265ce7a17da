//! The journal of lock changes made while Redis was away (`[state] backend` is a
//! Redis URL): each lock and unlock is written here, in a redb file beside the
//! account store, durably, before it is acknowledged; the service writes them
//! back when Redis returns, oldest first, each applied only when it is later than
//! the last change Redis holds for the account (the later change wins), and
//! removes them once written. The file is opened in multi-writer mode, so `chaff
//! accounts lock|unlock` run while Redis is away journal here too.

use crate::accounts::LockRecord;
use redb::{
    Builder, ConcurrencyMode, Database, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Sequence number → JSON [`Change`].
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");

/// Most changes kept; past it the oldest are dropped (logged by the caller).
pub const MAX_CHANGES: usize = 100_000;

/// One lock change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The account (normalised).
    pub user: String,
    /// When, in milliseconds since the UNIX epoch.
    pub at_ms: u64,
    /// The lock made, or `None` for an unlock.
    pub lock: Option<LockRecord>,
}

/// The journal file.
pub struct Journal {
    path: PathBuf,
    db: Database,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

/// The journal could not be used.
#[derive(Debug, thiserror::Error)]
#[error("state journal {path}: {message}")]
pub struct JournalError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

impl Journal {
    /// The journal's file for an account store at `accounts_db`: beside it, with
    /// `.journal.redb` in place of its extension.
    pub fn path_for(accounts_db: &Path) -> PathBuf {
        accounts_db.with_extension("journal.redb")
    }

    /// Opens (creating) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |e: String| JournalError {
            path: path.to_path_buf(),
            message: e,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let db = Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(|e| err(e.to_string()))?;
        let txn = db.begin_write().map_err(|e| err(e.to_string()))?;
        txn.open_table(CHANGES).map_err(|e| err(e.to_string()))?;
        txn.commit().map_err(|e| err(e.to_string()))?;
        Ok(Journal {
            path: path.to_path_buf(),
            db,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> JournalError {
        JournalError {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Writes a change, durably. Returns how many oldest changes were dropped to
    /// stay within [`MAX_CHANGES`].
    pub fn push(&self, change: &Change) -> Result<usize, JournalError> {
        let bytes = serde_json::to_vec(change).map_err(|e| self.err(e))?;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let mut dropped = 0;
        {
            let mut t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
            let next = t
                .last()
                .map_err(|e| self.err(e))?
                .map_or(0, |(k, _)| k.value() + 1);
            t.insert(next, bytes.as_slice()).map_err(|e| self.err(e))?;
            while t.len().map_err(|e| self.err(e))? as usize > MAX_CHANGES {
                t.pop_first().map_err(|e| self.err(e))?;
                dropped += 1;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(dropped)
    }

    /// Every change with its sequence number, oldest first (unreadable records
    /// are skipped: they would never apply).
    pub fn changes(&self) -> Result<Vec<(u64, Change)>, JournalError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if let Ok(c) = serde_json::from_slice(v.value()) {
                out.push((k.value(), c));
            }
        }
        Ok(out)
    }

    /// How many changes wait.
    pub fn len(&self) -> Result<u64, JournalError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
        t.len().map_err(|e| self.err(e))
    }

    /// True when no change waits.
    pub fn is_empty(&self) -> Result<bool, JournalError> {
        Ok(self.len()? == 0)
    }

    /// Removes written changes.
    pub fn remove(&self, seqs: &[u64]) -> Result<(), JournalError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
            for s in seqs {
                t.remove(*s).map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_reopening_in_order_and_are_removed_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = Journal::path_for(&dir.path().join("accounts.redb"));
        assert!(path.ends_with("accounts.journal.redb"));
        let c = |u: &str, at| Change {
            user: u.into(),
            at_ms: at,
            lock: None,
        };
        {
            let j = Journal::open(&path).unwrap();
            assert!(j.is_empty().unwrap());
            j.push(&c("a", 5)).unwrap();
            j.push(&c("b", 3)).unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let all = j.changes().unwrap();
        assert_eq!(
            all.iter().map(|(_, c)| c.user.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        j.remove(&[all[0].0]).unwrap();
        assert_eq!(j.len().unwrap(), 1);
        j.push(&c("d", 9)).unwrap();
        assert_eq!(j.changes().unwrap().last().unwrap().1.user, "d");
    }
}
