//! The figures the console's dashboard shows.
//!
//! | route | role | answer |
//! |---|---|---|
//! | `GET /api/stats/hourly` | `read` | `{"hours": [{"hour", "hour_utc", "counts": {action: n}}…], "days": [{"day", "day_utc", "counts"}…]}`: the last 168 hours, oldest first, hours without mail included, and the same summed per UTC day |
//! | `GET /api/stats` | `read` | the summary below |
//!
//! The summary: `counts` per action `today` (since 00:00 UTC), `last_24h` and
//! `last_7d`; `top_hits` (keywords by the number of scanned messages they hit)
//! and `top_senders` (senders of kept mail by entries), both over the last 7
//! days; `model` (its file, features version, the chaff version that made it,
//! when it was trained and last changed — the last learn —, what it was
//! trained and has learned on, a reload error); `store` (path, file size,
//! entries, bytes of kept messages, health, the writer's counters); `milter`
//! (connections open now, messages per outcome since start); `scan_latency`
//! since start (count, mean, quantiles read off the histogram).
//!
//! Counts per action come from the hourly counts, with what the service holds
//! in memory and has not written yet (`Keeper::hourly_counts`). The top lists
//! read the scan history and the quarantine's summaries (at most
//! [`MAX_EXAMINED`] of each): 181 ms of one blocking thread with 100,000
//! entries and 10,000 scan records (`benches/quarantine.rs`). So they are
//! computed at most once every [`TOP_TTL`] and shared, in the background while
//! the previous ones are answered (`computed_at` says when): a dashboard
//! polling every second costs the service one walk a minute, and only the
//! first request after start waits for it.

use super::store::blocking;
use crate::accounts::format_time;
use crate::http::auth::Reader;
use crate::http::error::{ApiError, Json};
use crate::http::state::HttpState;
use crate::metrics::LatencySummary;
use crate::policy::Outcome;
use crate::quarantine::{COUNT_HOURS, Filter, HourCounts, MAX_PAGE, StateStore, now_ms};
use axum::extract::State;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::warn;

/// How long the top lists are reused.
pub const TOP_TTL: Duration = Duration::from_secs(60);
/// Most history records, and most quarantine entries, read for the top lists.
pub const MAX_EXAMINED: usize = 100_000;
/// Entries in each top list.
pub const TOP_N: usize = 10;
/// The window of the top lists and the weekly counts.
const WEEK: u64 = 7 * 86_400;

/// The top lists, computed now and then and shared (see the module).
#[derive(Debug, Default)]
pub struct StatsCache {
    top: Mutex<Option<(Instant, Arc<Tops>)>>,
    /// Held while the top lists are computed, so that one computation runs at
    /// a time.
    computing: Arc<tokio::sync::Mutex<()>>,
}

/// A name and how many times it was counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    /// The keyword or sender (`<>` for the null sender).
    pub name: String,
    /// Messages (keywords) or entries (senders).
    pub count: u64,
}

/// The top lists.
#[derive(Debug, Clone, Serialize)]
pub struct Tops {
    /// When they were computed.
    pub computed_at: u64,
    /// The start of their window.
    pub since: u64,
    /// Keywords by the number of scanned messages they hit.
    pub top_hits: Vec<Counted>,
    /// Senders of kept mail, by entries.
    pub top_senders: Vec<Counted>,
    /// Scan records read.
    pub history_examined: u64,
    /// Quarantine entries read.
    pub entries_examined: u64,
    /// False when [`MAX_EXAMINED`] cut a walk short (older mail not counted).
    pub complete: bool,
}

/// The `n` largest counts, ties by name.
fn top(counts: HashMap<String, u64>, n: usize) -> Vec<Counted> {
    let mut v: Vec<Counted> = counts
        .into_iter()
        .map(|(name, count)| Counted { name, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

/// Computes the top lists over `since..`, reading at most `max` records of each.
pub fn compute_tops(
    store: &StateStore,
    now: u64,
    since: u64,
    max: usize,
) -> Result<Tops, crate::quarantine::StoreError> {
    let mut complete = true;
    let mut hits: HashMap<String, u64> = HashMap::new();
    let mut history_examined = 0u64;
    let mut before = None;
    'history: loop {
        let page = store.history_page(1000, before)?;
        for r in &page.records {
            if r.time < since {
                break 'history;
            }
            if history_examined as usize >= max {
                complete = false;
                break 'history;
            }
            history_examined += 1;
            for (k, _) in &r.hits {
                *hits.entry(k.clone()).or_insert(0) += 1;
            }
        }
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let mut senders: HashMap<String, u64> = HashMap::new();
    let mut entries_examined = 0u64;
    let filter = Filter {
        since: Some(since),
        ..Filter::default()
    };
    let mut before = None;
    loop {
        let page = store.list(&filter, MAX_PAGE, before, now)?;
        for s in &page.entries {
            if entries_examined as usize >= max {
                complete = false;
                break;
            }
            entries_examined += 1;
            let name = if s.sender.is_empty() {
                "<>".to_string()
            } else {
                s.sender.to_ascii_lowercase()
            };
            *senders.entry(name).or_insert(0) += 1;
        }
        match page.next {
            Some(n) if (entries_examined as usize) < max => before = Some(n),
            Some(_) => {
                complete = false;
                break;
            }
            None => break,
        }
    }
    Ok(Tops {
        computed_at: now,
        since,
        top_hits: top(hits, TOP_N),
        top_senders: top(senders, TOP_N),
        history_examined,
        entries_examined,
        complete,
    })
}

impl StatsCache {
    /// The top lists and when they were computed, if they were.
    fn cached(&self) -> Option<(Instant, Arc<Tops>)> {
        self.top
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Computes the top lists on a blocking thread and keeps them.
    async fn compute(&self, store: &Arc<StateStore>) -> Result<Arc<Tops>, ApiError> {
        let store = Arc::clone(store);
        let tops = blocking(move || {
            let now = now_ms() / 1000;
            Ok(compute_tops(
                &store,
                now,
                now.saturating_sub(WEEK),
                MAX_EXAMINED,
            )?)
        })
        .await?;
        let tops = Arc::new(tops);
        *self.top.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::clone(&tops)));
        Ok(tops)
    }

    /// The top lists: the shared ones if younger than [`TOP_TTL`]; older ones
    /// too, while one task computes them again in the background (so no
    /// request waits for the walk but the first); none yet, computed now (once:
    /// whoever asks meanwhile waits for it).
    async fn tops(self: &Arc<Self>, store: &Arc<StateStore>) -> Result<Arc<Tops>, ApiError> {
        match self.cached() {
            Some((at, t)) if at.elapsed() < TOP_TTL => Ok(t),
            Some((_, t)) => {
                if let Ok(turn) = Arc::clone(&self.computing).try_lock_owned() {
                    let (me, store) = (Arc::clone(self), Arc::clone(store));
                    tokio::spawn(async move {
                        let _turn = turn;
                        if let Err(e) = me.compute(&store).await {
                            warn!(error = %e, "the dashboard's top lists were not computed");
                        }
                    });
                }
                Ok(t)
            }
            None => {
                let _turn = self.computing.lock().await;
                match self.cached() {
                    Some((_, t)) => Ok(t),
                    None => self.compute(store).await,
                }
            }
        }
    }
}

/// Counts of one hour, as answered.
#[derive(Debug, Serialize)]
pub struct HourView {
    /// The hour's start (seconds since the epoch).
    pub hour: u64,
    /// The same in UTC.
    pub hour_utc: String,
    /// Messages per action.
    pub counts: BTreeMap<String, u64>,
}

/// Counts of one UTC day.
#[derive(Debug, Serialize)]
pub struct DayView {
    /// The day's start, 00:00 UTC (seconds since the epoch).
    pub day: u64,
    /// The date.
    pub day_utc: String,
    /// Messages per action.
    pub counts: BTreeMap<String, u64>,
}

/// `GET /api/stats/hourly`.
#[derive(Debug, Serialize)]
pub struct HourlyAnswer {
    /// The last [`COUNT_HOURS`] hours, oldest first.
    pub hours: Vec<HourView>,
    /// The same per UTC day (the first and the last only partly covered).
    pub days: Vec<DayView>,
}

fn add(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, n) in from {
        *into.entry(k.clone()).or_insert(0) += n;
    }
}

async fn hourly_counts(state: &Arc<HttpState>, now: u64) -> Result<Vec<HourCounts>, ApiError> {
    let svc = Arc::clone(&state.service);
    blocking(move || Ok(svc.keeper().hourly_counts(now)?)).await
}

/// `GET /api/stats/hourly`.
pub(crate) async fn hourly(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
) -> Result<Json<HourlyAnswer>, ApiError> {
    let now = now_ms() / 1000;
    let hours = hourly_counts(&state, now).await?;
    let mut days: Vec<DayView> = Vec::new();
    for h in &hours {
        let day = h.hour - h.hour % 86_400;
        match days.last_mut() {
            Some(d) if d.day == day => add(&mut d.counts, &h.counts),
            _ => days.push(DayView {
                day,
                day_utc: format_time(day)[..10].to_string(),
                counts: h.counts.clone(),
            }),
        }
    }
    debug_assert_eq!(hours.len() as u64, COUNT_HOURS);
    Ok(Json(HourlyAnswer {
        hours: hours
            .into_iter()
            .map(|h| HourView {
                hour_utc: format_time(h.hour),
                hour: h.hour,
                counts: h.counts,
            })
            .collect(),
        days,
    }))
}

/// Counts per action over three windows.
#[derive(Debug, Serialize)]
pub struct Windows {
    /// Since 00:00 UTC.
    pub today: BTreeMap<String, u64>,
    /// The last 24 hours (this hour and the 23 before).
    pub last_24h: BTreeMap<String, u64>,
    /// The last 7 days.
    pub last_7d: BTreeMap<String, u64>,
}

/// The model in force.
#[derive(Debug, Serialize)]
pub struct ModelView {
    /// Its file.
    pub path: Option<String>,
    /// The tokeniser version its weights were trained with.
    pub features_version: u32,
    /// The chaff version that made it.
    pub chaff_version: String,
    /// When `chaff train` made it.
    pub created: u64,
    /// When it last changed (the last learn, or the training).
    pub updated: u64,
    /// The same in UTC.
    pub updated_utc: String,
    /// Spam and ham it was trained on.
    pub trained_spam: u64,
    /// Ham it was trained on.
    pub trained_ham: u64,
    /// Spam learned since.
    pub learned_spam: u64,
    /// Ham learned since.
    pub learned_ham: u64,
    /// Why the last replacement of the file was refused, if it was (the model
    /// above keeps serving).
    pub reload_error: Option<String>,
}

/// The state store.
#[derive(Debug, Serialize)]
pub struct StoreView {
    /// Its file.
    pub path: String,
    /// The file's size in bytes.
    pub file_bytes: Option<u64>,
    /// Quarantine entries (deleted ones too, until retention).
    pub entries: u64,
    /// Bytes of kept (compressed) messages.
    pub bytes: u64,
    /// The file is usable.
    pub healthy: bool,
    /// Its I/O failures since start.
    pub errors: u64,
    /// Messages kept since start.
    pub kept: u64,
    /// Messages that could not be kept since start (answered 451).
    pub keep_failed: u64,
    /// Scan records not written since start.
    pub history_dropped: u64,
}

/// The milter's figures since start.
#[derive(Debug, Serialize)]
pub struct MilterView {
    /// Milter connections open now.
    pub connections: i64,
    /// Messages per outcome since start.
    pub messages: BTreeMap<&'static str, u64>,
}

/// `GET /api/stats`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Now (seconds since the epoch).
    pub now: u64,
    /// Messages per action.
    pub counts: Windows,
    /// The top lists (computed at most every [`TOP_TTL`]).
    #[serde(flatten)]
    pub tops: Tops,
    /// The model, without one null.
    pub model: Option<ModelView>,
    /// The state store.
    pub store: StoreView,
    /// The milter.
    pub milter: MilterView,
    /// Scan times since start.
    pub scan_latency: LatencySummary,
}

/// `GET /api/stats`.
pub(crate) async fn summary(
    Reader(_): Reader,
    State(state): State<Arc<HttpState>>,
) -> Result<Json<Summary>, ApiError> {
    let now = now_ms() / 1000;
    let hours = hourly_counts(&state, now).await?;
    let today_start = now - now % 86_400;
    let mut counts = Windows {
        today: BTreeMap::new(),
        last_24h: BTreeMap::new(),
        last_7d: BTreeMap::new(),
    };
    let n = hours.len();
    for (i, h) in hours.iter().enumerate() {
        add(&mut counts.last_7d, &h.counts);
        if i + 24 >= n {
            add(&mut counts.last_24h, &h.counts);
        }
        if h.hour >= today_start {
            add(&mut counts.today, &h.counts);
        }
    }
    let tops = state.stats.tops(state.store()).await?;
    let svc = Arc::clone(&state.service);
    let store = blocking(move || {
        let s = svc.state();
        let totals = s.totals()?;
        let db = s.db_stats();
        let k = svc.keeper().stats();
        Ok(StoreView {
            path: s.path().display().to_string(),
            file_bytes: std::fs::metadata(s.path()).ok().map(|m| m.len()),
            entries: totals.entries,
            bytes: totals.bytes,
            healthy: db.healthy,
            errors: db.errors,
            kept: k.kept,
            keep_failed: k.failed,
            history_dropped: k.history_dropped,
        })
    })
    .await?;
    let g = state.service.current();
    let model = g.engine.model().map(|m| {
        let meta = &m.model.meta;
        ModelView {
            path: g
                .engine
                .config()
                .model
                .as_ref()
                .map(|p| p.display().to_string()),
            features_version: meta.features_version,
            chaff_version: meta.stats.chaff_version.clone(),
            created: meta.stats.created,
            updated: meta.stats.updated,
            updated_utc: format_time(meta.stats.updated),
            trained_spam: meta.stats.trained_spam,
            trained_ham: meta.stats.trained_ham,
            learned_spam: meta.stats.learned_spam,
            learned_ham: meta.stats.learned_ham,
            reload_error: g.engine.model_reload_error(),
        }
    });
    let metrics = state.service.metrics();
    Ok(Json(Summary {
        now,
        counts,
        tops: (*tops).clone(),
        model,
        store,
        milter: MilterView {
            connections: metrics.connections_active(),
            messages: Outcome::ALL
                .iter()
                .map(|o| (o.as_str(), metrics.messages(*o)))
                .collect(),
        },
        scan_latency: metrics.scan_latency_summary(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::ScanRecord;

    #[test]
    fn top_lists_count_within_the_window_and_say_when_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.redb")).unwrap();
        let now = 1_700_000_000;
        let rec = |time: u64, hits: &[&str]| ScanRecord {
            time,
            queue_id: None,
            sender: "a@x.test".into(),
            recipients: vec![],
            recipient_count: 0,
            client_addr: None,
            helo: None,
            auth_user: None,
            action: "reject".into(),
            score: Some(9.0),
            hits: hits.iter().map(|h| ((*h).to_string(), 2)).collect(),
            size: 10,
            entry: None,
        };
        let records = vec![
            rec(now - 10 * 86_400, &["old", "old2"]),
            rec(now - 100, &["代开", "free"]),
            rec(now - 50, &["代开"]),
            rec(now - 10, &["代开", "sex"]),
        ];
        store
            .record_scans(&records, &BTreeMap::new(), 100, now)
            .unwrap();
        let t = compute_tops(&store, now, now - WEEK, 1000).unwrap();
        assert_eq!(t.history_examined, 3);
        assert!(t.complete);
        assert_eq!(
            t.top_hits[0],
            Counted {
                name: "代开".into(),
                count: 3
            }
        );
        assert_eq!(t.top_hits.len(), 3);
        assert!(t.top_hits.iter().all(|c| !c.name.starts_with("old")));
        let t = compute_tops(&store, now, now - WEEK, 2).unwrap();
        assert_eq!(t.history_examined, 2);
        assert!(!t.complete);
    }

    #[tokio::test]
    async fn old_top_lists_are_answered_while_new_ones_are_computed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("s.redb")).unwrap());
        let cache = Arc::new(StatsCache::default());
        // None yet: computed and waited for.
        let first = cache.tops(&store).await.unwrap();
        assert_eq!(first.history_examined, 0);
        // Fresh: the same ones.
        assert!(Arc::ptr_eq(&first, &cache.tops(&store).await.unwrap()));
        // Old: answered at once, replaced in the background.
        let old = Instant::now()
            .checked_sub(TOP_TTL * 2)
            .expect("a monotonic clock past two minutes");
        *cache.top.lock().unwrap() = Some((old, Arc::clone(&first)));
        let answered = cache.tops(&store).await.unwrap();
        assert!(Arc::ptr_eq(&first, &answered));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let (at, t) = cache.cached().unwrap();
            if at > old && !Arc::ptr_eq(&t, &first) {
                break;
            }
            assert!(Instant::now() < deadline, "not recomputed");
        }
    }
}
