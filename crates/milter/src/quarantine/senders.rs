//! The allow and block entries an admin added (through the API or `chaff
//! senders`), kept in the state store and layered over `[senders]` of
//! `chaff.toml`, which the service never rewrites.
//!
//! An entry is checked by the rules the configuration's entries are checked by
//! (`chaff::config::AllowEntry::parse`, `SenderPattern::parse`) and stored in
//! their canonical form, so an allow entry needs the same proof as one in the
//! file (a network after `from`, or a trusted `Authentication-Results` pass,
//! unless `allow_unverified`). Each change bumps a revision the service watches:
//! it then rebuilds its engine as a SIGHUP reload does.

use super::audit::{self, AdminAction};
use super::db::{META, META_SENDERS_REV, SENDERS, meta_add, meta_get};
use super::{StateStore, StoreError, json, parse};
use chaff::config::{AllowEntry, SenderPattern};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// Most entries each stored list may hold.
pub const MAX_SENDER_ENTRIES: usize = 10_000;
/// Longest comment kept, in characters.
const MAX_COMMENT_CHARS: usize = 500;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderList {
    /// `[senders] allow`: never refused (with proof).
    Allow,
    /// `[senders] block`: always refused.
    Block,
}

impl SenderList {
    /// `allow` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            SenderList::Allow => "allow",
            SenderList::Block => "block",
        }
    }
}

/// An entry an admin added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderEntry {
    /// Its list.
    pub list: SenderList,
    /// The entry, canonical (`ceo@example.com from 203.0.113.0/24`).
    pub entry: String,
    /// Who added it.
    pub by: String,
    /// When (seconds since the epoch).
    pub at: u64,
    /// Why.
    pub comment: String,
}

/// An entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum SendersError {
    /// It is not in a form the configuration accepts.
    #[error("{list} entry refused: {message}")]
    Invalid {
        /// The list.
        list: &'static str,
        /// Why, as the configuration's check says.
        message: String,
    },
    /// The list is full.
    #[error("the stored {0} list already has {MAX_SENDER_ENTRIES} entries")]
    Full(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The canonical form of `text` in `list`, checked as the configuration checks
/// its entries.
pub fn canonical_entry(list: SenderList, text: &str) -> Result<String, SendersError> {
    let invalid = |message| SendersError::Invalid {
        list: list.as_str(),
        message,
    };
    match list {
        SenderList::Allow => {
            let e = AllowEntry::parse(text).map_err(invalid)?;
            let mut s = e.pattern.as_str().to_string();
            if !e.networks.is_empty() {
                s.push_str(" from ");
                s.push_str(
                    &e.networks
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
            Ok(s)
        }
        SenderList::Block => Ok(SenderPattern::parse(text)
            .map_err(invalid)?
            .as_str()
            .to_string()),
    }
}

/// Adds the stored entries to `config`'s lists (after the file's own). An entry
/// that no longer parses (written by another version) is left out and named in
/// the returned warnings.
pub fn apply_senders(config: &mut chaff::Config, entries: &[SenderEntry]) -> Vec<String> {
    let mut warnings = Vec::new();
    for e in entries {
        let applied = match e.list {
            SenderList::Allow => AllowEntry::parse(&e.entry).map(|a| config.allow.push(a)),
            SenderList::Block => SenderPattern::parse(&e.entry).map(|p| config.block.push(p)),
        };
        if let Err(m) = applied {
            warnings.push(format!(
                "stored {} entry `{}` skipped: {m}",
                e.list.as_str(),
                e.entry
            ));
        }
    }
    warnings
}

impl StateStore {
    /// Adds `text` to the stored `list` for `by` at `now`; false when it was
    /// there already (its record is kept).
    pub fn add_sender(
        &self,
        list: SenderList,
        text: &str,
        by: &str,
        comment: &str,
        now: u64,
    ) -> Result<bool, SendersError> {
        let entry = canonical_entry(list, text)?;
        let comment: String = comment.chars().take(MAX_COMMENT_CHARS).collect();
        let rec = SenderEntry {
            list,
            entry: entry.clone(),
            by: by.to_string(),
            at: now,
            comment,
        };
        self.db.write(|txn| {
            let mut t = txn.open_table(SENDERS)?;
            if t.get((list.as_str(), entry.as_str()))?.is_some() {
                return Ok(Ok(false));
            }
            let n = t
                .range((list.as_str(), "")..)?
                .take_while(|r| r.as_ref().is_ok_and(|(k, _)| k.value().0 == list.as_str()))
                .count();
            if n >= MAX_SENDER_ENTRIES {
                return Ok(Err(SendersError::Full(list.as_str())));
            }
            t.insert((list.as_str(), entry.as_str()), json(&rec)?.as_slice())?;
            meta_add(&mut txn.open_table(META)?, META_SENDERS_REV, 1)?;
            audit::append(
                txn,
                &AdminAction {
                    at: now,
                    by: by.to_string(),
                    what: format!("{}-add", list.as_str()),
                    id: None,
                    detail: format!(
                        "{entry}{}",
                        if rec.comment.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", rec.comment)
                        }
                    ),
                },
            )?;
            Ok(Ok(true))
        })?
    }

    /// Removes `text` from the stored `list`; false when it was not there (an
    /// entry of `chaff.toml` cannot be removed here: edit the file).
    pub fn remove_sender(
        &self,
        list: SenderList,
        text: &str,
        by: &str,
        now: u64,
    ) -> Result<bool, SendersError> {
        let entry = canonical_entry(list, text)?;
        self.db.write(|txn| {
            let mut t = txn.open_table(SENDERS)?;
            if t.remove((list.as_str(), entry.as_str()))?.is_none() {
                return Ok(Ok(false));
            }
            meta_add(&mut txn.open_table(META)?, META_SENDERS_REV, 1)?;
            audit::append(
                txn,
                &AdminAction {
                    at: now,
                    by: by.to_string(),
                    what: format!("{}-remove", list.as_str()),
                    id: None,
                    detail: entry.clone(),
                },
            )?;
            Ok(Ok(true))
        })?
    }

    /// Every stored entry: allow entries, then block entries, each in order.
    pub fn senders(&self) -> Result<Vec<SenderEntry>, StoreError> {
        self.db.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(SENDERS)?.iter()? {
                let (_, v) = row?;
                out.push(parse(v.value(), "sender entry")?);
            }
            Ok(out)
        })
    }

    /// The sender lists' revision: changes with every edit.
    pub fn senders_revision(&self) -> Result<u64, StoreError> {
        self.db
            .read(|txn| meta_get(&txn.open_table(META)?, META_SENDERS_REV))
    }
}
