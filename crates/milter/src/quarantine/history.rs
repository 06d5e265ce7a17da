//! The scan history (every scanned message, not only kept ones: "recent
//! verdicts") and the counts per action per hour.
//!
//! Both are written by the service's keeper in batches, off the answer path,
//! and are not durable per message: a crash loses what was not yet written (at
//! most [`super::HISTORY_FLUSH_INTERVAL`] of scans). The history keeps the
//! newest `[state] history` records; the counts keep [`COUNT_HOURS`] hours.

use super::db::{HISTORY, HOURLY, META, META_HISTORY, meta_add};
use super::id::EntryId;
use super::{StateStore, StoreError, json, parse};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Recipients recorded per scan (the count records how many there were).
pub const MAX_HISTORY_RCPTS: usize = 10;
/// Hits recorded per scan, strongest first.
pub const MAX_HISTORY_HITS: usize = 5;
/// Hours of counts kept: the last 7 days.
pub const COUNT_HOURS: u64 = 7 * 24;

/// One scanned message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// When it was decided (seconds since the epoch).
    pub time: u64,
    /// The MTA's queue id.
    pub queue_id: Option<String>,
    /// `MAIL FROM` (empty: the null sender).
    pub sender: String,
    /// The first [`MAX_HISTORY_RCPTS`] recipients.
    pub recipients: Vec<String>,
    /// How many recipients there were.
    pub recipient_count: usize,
    /// The client's address.
    pub client_addr: Option<String>,
    /// The HELO name.
    pub helo: Option<String>,
    /// The SMTP AUTH login.
    pub auth_user: Option<String>,
    /// What happened (the milter's outcome: `deliver`, `quarantine`, `reject`,
    /// `locked`, `oversize`, `fallback`, `busy`, `store_tempfail`,
    /// `quarantine_tempfail`).
    pub action: String,
    /// The score, when the message was scanned.
    pub score: Option<f64>,
    /// The strongest hits: keyword and count.
    pub hits: Vec<(String, u32)>,
    /// The message's size.
    pub size: u64,
    /// The quarantine entry, when it was kept.
    pub entry: Option<EntryId>,
}

impl ScanRecord {
    /// Cuts the lists to their bounds.
    pub fn bounded(mut self) -> ScanRecord {
        self.recipient_count = self.recipient_count.max(self.recipients.len());
        self.recipients.truncate(MAX_HISTORY_RCPTS);
        self.hits.truncate(MAX_HISTORY_HITS);
        self
    }
}

/// A page of the history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPage {
    /// The records.
    pub records: Vec<ScanRecord>,
    /// The cursor for the next (older) page, when there is one: pass it as
    /// `before` to [`StateStore::history_page`]. Opaque; unique per record, so a
    /// page boundary within one second loses nothing.
    pub next: Option<u64>,
}

/// Counts of one hour.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HourCounts {
    /// The hour's start (seconds since the epoch, a multiple of 3600).
    pub hour: u64,
    /// Messages per action.
    pub counts: BTreeMap<String, u64>,
}

/// Appends `records` in `txn` and drops the oldest beyond `bound`.
pub(super) fn append(
    txn: &WriteTransaction,
    records: &[ScanRecord],
    bound: u64,
) -> Result<(), redb::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(HISTORY)?;
    let mut key = table.last()?.map_or(0, |(k, _)| k.value());
    for r in records {
        key = key.saturating_add(1).max(r.time.saturating_mul(1_000_000));
        table.insert(key, json(r)?.as_slice())?;
    }
    let mut meta = txn.open_table(META)?;
    let mut rows = meta_add(&mut meta, META_HISTORY, records.len() as i64)?;
    while rows > bound {
        if table.pop_first()?.is_none() {
            break;
        }
        rows = meta_add(&mut meta, META_HISTORY, -1)?;
    }
    Ok(())
}

/// Adds `counts` (hour → action → n) in `txn` and drops hours older than
/// [`COUNT_HOURS`] before `now`.
pub(super) fn add_counts(
    txn: &WriteTransaction,
    counts: &BTreeMap<u64, BTreeMap<String, u64>>,
    now: u64,
) -> Result<(), redb::Error> {
    let mut table = txn.open_table(HOURLY)?;
    for (&hour, add) in counts {
        let mut have: BTreeMap<String, u64> = match table.get(hour)? {
            Some(v) => parse(v.value(), "hourly count")?,
            None => BTreeMap::new(),
        };
        for (action, n) in add {
            *have.entry(action.clone()).or_insert(0) += n;
        }
        table.insert(hour, json(&have)?.as_slice())?;
    }
    let oldest = (now / 3600).saturating_sub(COUNT_HOURS - 1);
    loop {
        let first = table.first()?.map(|(k, _)| k.value());
        match first {
            Some(k) if k < oldest => {
                table.remove(k)?;
            }
            _ => break,
        }
    }
    Ok(())
}

impl StateStore {
    /// Writes scan records and counts at once (the keeper batches them; tests and
    /// tools may call it directly), keeping the newest `bound` records.
    pub fn record_scans(
        &self,
        records: &[ScanRecord],
        counts: &BTreeMap<u64, BTreeMap<String, u64>>,
        bound: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        self.db
            .write(|txn| {
                append(txn, records, bound)?;
                add_counts(txn, counts, now)?;
                Ok(Ok::<_, ()>(()))
            })?
            .map_err(|()| self.db.corrupt("unreachable"))
    }

    /// The newest `limit` scan records older than `before` (a time in seconds),
    /// newest first.
    pub fn history(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Vec<ScanRecord>, StoreError> {
        let hi = before.map_or(u64::MAX, |t| t.saturating_mul(1_000_000));
        self.db.read(|txn| {
            let mut out = Vec::new();
            for row in txn.open_table(HISTORY)?.range(..hi)?.rev().take(limit) {
                let (_, v) = row?;
                out.push(parse(v.value(), "history")?);
            }
            Ok(out)
        })
    }

    /// The newest `limit` scan records before the cursor `before` (from an
    /// earlier page's [`HistoryPage::next`]), newest first.
    pub fn history_page(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<HistoryPage, StoreError> {
        self.db.read(|txn| {
            let table = txn.open_table(HISTORY)?;
            let mut records = Vec::new();
            let mut next = None;
            let mut last_key = None;
            for row in table.range(..before.unwrap_or(u64::MAX))?.rev() {
                let (k, v) = row?;
                if records.len() == limit {
                    next = last_key;
                    break;
                }
                records.push(parse(v.value(), "history")?);
                last_key = Some(k.value());
            }
            Ok(HistoryPage { records, next })
        })
    }

    /// The counts per action of each hour of the last [`COUNT_HOURS`] hours up to
    /// `now`, oldest first, hours without mail included (as written: the keeper
    /// adds what it holds in memory, [`super::Keeper::hourly_counts`]).
    pub fn hourly_counts(&self, now: u64) -> Result<Vec<HourCounts>, StoreError> {
        let last = now / 3600;
        let first = last.saturating_sub(COUNT_HOURS - 1);
        let stored: BTreeMap<u64, BTreeMap<String, u64>> = self.db.read(|txn| {
            let mut m = BTreeMap::new();
            for row in txn.open_table(HOURLY)?.range(first..=last)? {
                let (k, v) = row?;
                m.insert(k.value(), parse(v.value(), "hourly count")?);
            }
            Ok(m)
        })?;
        Ok((first..=last)
            .map(|h| HourCounts {
                hour: h * 3600,
                counts: stored.get(&h).cloned().unwrap_or_default(),
            })
            .collect())
    }
}
