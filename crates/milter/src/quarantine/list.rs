//! The list: entries matching a filter, newest first, a page at a time.
//!
//! The walk is chosen by the filter: by the recipient index when a recipient is
//! asked for, else by the sender index, else by the primary key (time order);
//! with only a score floor it first tries the score index, which answers at once
//! when few entries score that high. Every other condition is checked on the
//! summary. The `since`/`until` times bound every walk, since ids begin with the
//! time. A page ends after `limit` matches; its `next` cursor (the last id
//! returned) continues below it.

use super::db::{BY_RCPT, BY_SCORE, BY_SENDER, ENTRIES};
use super::entry::{EntryState, Summary};
use super::id::EntryId;
use super::index::{filter_key, score_key};
use super::{StateStore, StoreError, parse, summary_in};
use redb::{ReadTransaction, ReadableTable};

/// Entries on a page when no limit is given.
pub const DEFAULT_PAGE: usize = 50;
/// Most entries on one page.
pub const MAX_PAGE: usize = 1000;
/// With only a score floor, at most this many score-index rows are read before
/// the walk falls back to time order (many entries score that high, so the
/// newest ones are found soon anyway).
const SCORE_CANDIDATES: usize = 5000;

/// Which state the listed entries are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Held, waiting for an admin.
    Held,
    /// Being released now.
    Releasing,
    /// A release that never finished ([`super::RELEASE_IN_DOUBT_AFTER`]).
    InDoubt,
    /// Released.
    Released,
    /// Deleted.
    Deleted,
}

impl StateFilter {
    /// Reads `held`, `releasing`, `in_doubt` (or `in-doubt`), `released`, `deleted`.
    pub fn parse(s: &str) -> Option<StateFilter> {
        Some(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "held" => StateFilter::Held,
                "releasing" => StateFilter::Releasing,
                "in_doubt" => StateFilter::InDoubt,
                "released" => StateFilter::Released,
                "deleted" => StateFilter::Deleted,
                _ => return None,
            },
        )
    }

    fn matches(self, s: &EntryState, now: u64) -> bool {
        match self {
            StateFilter::Held => matches!(s, EntryState::Held),
            StateFilter::Releasing => matches!(s, EntryState::Releasing { .. }) && !s.in_doubt(now),
            StateFilter::InDoubt => s.in_doubt(now),
            StateFilter::Released => matches!(s, EntryState::Released { .. }),
            StateFilter::Deleted => matches!(s, EntryState::Deleted { .. }),
        }
    }
}

/// What to list. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Kept at or after this time (seconds since the epoch).
    pub since: Option<u64>,
    /// Kept before this time.
    pub until: Option<u64>,
    /// The sender: an address, `@domain` or a bare domain, or `<>`.
    pub sender: Option<String>,
    /// A recipient: an address, `@domain` or a bare domain.
    pub rcpt: Option<String>,
    /// The verdict's action (`quarantine`, `reject`).
    pub action: Option<String>,
    /// Score at least this.
    pub min_score: Option<f64>,
    /// The subject contains this, without regard to case.
    pub subject: Option<String>,
    /// The entry's state.
    pub state: Option<StateFilter>,
}

/// One page of the list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page {
    /// The entries, newest first.
    pub entries: Vec<Summary>,
    /// The cursor for the next page (pass it as `before`), when there may be one.
    pub next: Option<EntryId>,
    /// Summaries read to fill the page (how much the filter cost).
    pub examined: u64,
    /// The walk stopped at its bound of summaries read before the page was
    /// full ([`StateStore::list_bounded`]): `next` continues it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut_short: bool,
}

/// The filter prepared for matching.
struct Matcher {
    sender: Option<String>,
    rcpt: Option<String>,
    action: Option<String>,
    min_score: Option<f64>,
    subject: Option<String>,
    state: Option<StateFilter>,
    now: u64,
}

impl Matcher {
    fn new(f: &Filter, now: u64) -> Matcher {
        Matcher {
            sender: f.sender.as_deref().map(filter_key),
            rcpt: f.rcpt.as_deref().map(filter_key),
            action: f.action.as_ref().map(|a| a.trim().to_ascii_lowercase()),
            min_score: f.min_score,
            subject: f.subject.as_ref().map(|s| s.to_lowercase()),
            state: f.state,
            now,
        }
    }

    fn matches(&self, s: &Summary) -> bool {
        let has = |addr: &str, key: &str| super::index::address_keys(addr).iter().any(|k| k == key);
        self.sender.as_ref().is_none_or(|k| has(&s.sender, k))
            && self
                .rcpt
                .as_ref()
                .is_none_or(|k| s.recipients.iter().any(|r| has(r, k)))
            && self.action.as_ref().is_none_or(|a| *a == s.action)
            && self.min_score.is_none_or(|m| s.score >= m)
            && self
                .subject
                .as_ref()
                .is_none_or(|sub| s.subject.to_lowercase().contains(sub.as_str()))
            && self.state.is_none_or(|st| st.matches(&s.state, self.now))
    }
}

/// Collects matches from ids produced newest first.
struct Collector<'a> {
    txn: &'a ReadTransaction,
    matcher: Matcher,
    limit: usize,
    /// Most summaries read.
    max_examined: u64,
    page: Page,
}

impl Collector<'_> {
    /// Looks at one candidate id; false once the page is full.
    fn offer(
        &mut self,
        entries: &impl ReadableTable<u64, &'static [u8]>,
        id: u64,
    ) -> Result<bool, redb::Error> {
        if self.bounded(id) {
            return Ok(false);
        }
        let Some(s) = summary_in(entries, EntryId::from_u64(id))? else {
            return Ok(true);
        };
        self.page.examined += 1;
        if self.matcher.matches(&s) {
            if self.page.entries.len() == self.limit {
                // One more match exists: the page has a next one.
                self.page.next = self.page.entries.last().map(|e| e.id);
                return Ok(false);
            }
            self.page.entries.push(s);
        }
        Ok(true)
    }

    /// True (and the page cut short, to continue at `id`) once the bound of
    /// summaries read is reached.
    fn bounded(&mut self, id: u64) -> bool {
        if self.page.examined < self.max_examined {
            return false;
        }
        self.page.cut_short = true;
        // `before` is exclusive: the next page starts with `id`.
        self.page.next = Some(EntryId::from_u64(id.saturating_add(1)));
        true
    }

    /// Walks an address index under `key` for ids in `lo..hi`, newest first.
    fn walk_address(
        &mut self,
        table: redb::TableDefinition<(&'static str, u64), ()>,
        key: &str,
        lo: u64,
        hi: u64,
    ) -> Result<(), redb::Error> {
        let entries = self.txn.open_table(ENTRIES)?;
        let index = self.txn.open_table(table)?;
        for row in index.range((key, lo)..(key, hi))?.rev() {
            let (k, _) = row?;
            if !self.offer(&entries, k.value().1)? {
                break;
            }
        }
        Ok(())
    }

    fn walk_time(&mut self, lo: u64, hi: u64) -> Result<(), redb::Error> {
        let entries = self.txn.open_table(ENTRIES)?;
        for row in entries.range(lo..hi)?.rev() {
            let (k, v) = row?;
            if self.bounded(k.value()) {
                break;
            }
            let s: Summary = parse(v.value(), "entry")?;
            self.page.examined += 1;
            if self.matcher.matches(&s) {
                if self.page.entries.len() == self.limit {
                    self.page.next = self.page.entries.last().map(|e| e.id);
                    break;
                }
                self.page.entries.push(s);
            }
        }
        Ok(())
    }

    /// With a score floor only: the ids scoring at least `min`, newest first,
    /// when there are at most [`SCORE_CANDIDATES`] of them in `lo..hi`.
    fn score_candidates(
        &self,
        min: f64,
        lo: u64,
        hi: u64,
    ) -> Result<Option<Vec<u64>>, redb::Error> {
        let index = self.txn.open_table(BY_SCORE)?;
        let mut ids = Vec::new();
        for row in index.range((score_key(min), 0)..)? {
            let (k, _) = row?;
            let id = k.value().1;
            if (lo..hi).contains(&id) {
                if ids.len() == SCORE_CANDIDATES {
                    return Ok(None);
                }
                ids.push(id);
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(Some(ids))
    }
}

impl StateStore {
    /// One page of the entries matching `filter`, newest first: at most `limit`
    /// (1 to [`MAX_PAGE`]) entries older than `before` (a cursor from the previous
    /// page's [`Page::next`]). `now` decides which releases are in doubt.
    pub fn list(
        &self,
        filter: &Filter,
        limit: usize,
        before: Option<EntryId>,
        now: u64,
    ) -> Result<Page, StoreError> {
        self.list_bounded(filter, limit, before, now, u64::MAX)
    }

    /// [`StateStore::list`] reading at most `max_examined` summaries: when the
    /// bound stops the walk before the page is full, the page says so
    /// ([`Page::cut_short`]) and its `next` continues the search. A filter that
    /// no index serves (a subject search) reads every summary in its time range,
    /// 3.4 µs each: the console bounds its pages' time so.
    pub fn list_bounded(
        &self,
        filter: &Filter,
        limit: usize,
        before: Option<EntryId>,
        now: u64,
        max_examined: u64,
    ) -> Result<Page, StoreError> {
        self.await_kept();
        let limit = limit.clamp(1, MAX_PAGE);
        let lo = filter
            .since
            .map_or(0, |t| EntryId::first_at(t.saturating_mul(1000)).as_u64());
        let mut hi = filter.until.map_or(u64::MAX, |t| {
            EntryId::first_at(t.saturating_mul(1000)).as_u64()
        });
        if let Some(b) = before {
            hi = hi.min(b.as_u64());
        }
        self.db.read(|txn| {
            let mut c = Collector {
                txn,
                matcher: Matcher::new(filter, now),
                limit,
                max_examined,
                page: Page {
                    entries: Vec::new(),
                    next: None,
                    examined: 0,
                    cut_short: false,
                },
            };
            if lo >= hi {
                return Ok(c.page);
            }
            if let Some(key) = c.matcher.rcpt.clone() {
                c.walk_address(BY_RCPT, &key, lo, hi)?;
            } else if let Some(key) = c.matcher.sender.clone() {
                c.walk_address(BY_SENDER, &key, lo, hi)?;
            } else if let Some(ids) = match filter.min_score {
                Some(min) => c.score_candidates(min, lo, hi)?,
                None => None,
            } {
                let entries = txn.open_table(ENTRIES)?;
                for id in ids {
                    if !c.offer(&entries, id)? {
                        break;
                    }
                }
            } else {
                c.walk_time(lo, hi)?;
            }
            Ok(c.page)
        })
    }
}
