//! The service's writer: one thread that owns the service's writes to the state
//! store.
//!
//! **Kept messages, group commit.** A message to keep must be in the file,
//! durably, before the MTA is answered (a crash must never lose a message the
//! MTA was told to discard or hold). One fsync'd commit per message would put
//! the disk's sync time on every answer and serialise them; instead the network
//! threads hand their entries to this thread ([`Keeper::keep`], compressed
//! already) and wait; the thread writes every entry that arrived while the
//! previous commit ran in one transaction, commits it (one fsync) and wakes each
//! waiter with its id. Under load the wait is at most about two commits; alone,
//! one.
//!
//! **History and counts, batched.** Every scan's record ([`Keeper::record`]) is
//! held in memory and written every [`HISTORY_FLUSH_INTERVAL`], riding along in
//! a kept message's transaction when few are waiting. Not durable per message:
//! a crash loses at most that much. No more than `[state] history` records wait
//! (at most [`MAX_PENDING_HISTORY`]): an older one could only be written to be
//! deleted by the same write, since the history keeps the newest
//! `[state] history` scans. Records beyond [`MAX_PENDING_HISTORY`] (a larger
//! history bound, or a store that cannot be written) are dropped and counted.
//!
//! **Retention** runs here too, every [`RETENTION_INTERVAL`] and right after a
//! commit that takes the kept bytes over `max_bytes`, after the waiters are woken.

use super::entry::NewEntry;
use super::history::{HourCounts, ScanRecord};
use super::id::EntryId;
use super::{StateStore, StoreError, now_ms};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// Longest a scan record waits in memory before it is written.
pub const HISTORY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
// Why once a second, no batch trigger, and only what can stay: the history
// keeps the newest `[state] history` scans, so at 30,000 scans a second a
// write every 1,024 records wrote three rows for each one kept, the next
// writes deleting them again. `cargo bench --bench http_load` (2026-11-30,
// quiet machine): with that, /checkv2 at 73-76 % of `chaff score --jobs 2` and
// 50-51 us of service CPU a message; with no history at all, 86 % and 45 us.
/// Most records held while they cannot be written; older ones are dropped.
pub const MAX_PENDING_HISTORY: usize = 50_000;
/// How often retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(600);
/// History records written in a kept message's own transaction at most (more
/// go in a transaction of their own, so a message never waits for a large
/// history write it is part of).
const PIGGYBACK_MAX: usize = 256;

/// A message could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeepError {
    /// The store refused or failed the write.
    #[error("{0}")]
    Store(String),
    /// The writer has stopped (the service is stopping).
    #[error("the state store's writer has stopped")]
    Stopped,
}

/// The retention and history bounds in force (changed on reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeeperLimits {
    /// Scan records kept (`[state] history`).
    pub history: u64,
    /// Entries older than this are dropped (`[quarantine] max_age`).
    pub max_age: Duration,
    /// Most bytes of kept messages (`[quarantine] max_bytes`).
    pub max_bytes: u64,
}

type Waiter = oneshot::Sender<Result<EntryId, KeepError>>;

#[derive(Default)]
struct Queue {
    puts: Vec<(NewEntry, Waiter)>,
    history: VecDeque<ScanRecord>,
    counts: BTreeMap<u64, BTreeMap<String, u64>>,
    flushes: Vec<std::sync::mpsc::Sender<Result<(), String>>>,
    retention_now: bool,
    stop: bool,
}

/// What the keeper did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeeperStats {
    /// Messages kept.
    pub kept: u64,
    /// Messages that could not be kept.
    pub failed: u64,
    /// Commits of kept messages.
    pub commits: u64,
    /// Scan records dropped (the store was unusable too long, or failed).
    pub history_dropped: u64,
    /// Entries dropped by retention.
    pub retained_out: u64,
}

#[derive(Default)]
struct Counters {
    kept: AtomicU64,
    failed: AtomicU64,
    commits: AtomicU64,
    history_dropped: AtomicU64,
    retained_out: AtomicU64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    limits: Mutex<KeeperLimits>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The service's writer to the state store (see the module documentation).
pub struct Keeper {
    store: Arc<StateStore>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("store", &self.store)
            .finish()
    }
}

impl Keeper {
    /// Starts the writer thread for `store`.
    pub fn start(store: Arc<StateStore>, limits: KeeperLimits) -> std::io::Result<Keeper> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            limits: Mutex::new(limits),
            counters: Counters::default(),
        });
        let thread = {
            let (store, shared) = (Arc::clone(&store), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("chaff-state".into())
                .spawn(move || run(&store, &shared))?
        };
        Ok(Keeper {
            store,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The store written to.
    pub fn store(&self) -> &Arc<StateStore> {
        &self.store
    }

    /// Hands `entry` to the writer; the future resolves once it is committed
    /// durably (its id) or failed. Dropping the future before the writer takes
    /// the entry withdraws it.
    pub fn keep(
        &self,
        entry: NewEntry,
    ) -> impl std::future::Future<Output = Result<EntryId, KeepError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = lock(&self.shared.queue);
            if q.stop {
                let _ = tx.send(Err(KeepError::Stopped));
            } else {
                q.puts.push((entry, tx));
            }
        }
        self.shared.wake.notify_one();
        async move { rx.await.unwrap_or(Err(KeepError::Stopped)) }
    }

    /// Keeps `entry` and waits for it on this thread (tools, tests; the service
    /// awaits [`Keeper::keep`]).
    pub fn keep_blocking(&self, entry: NewEntry) -> Result<EntryId, KeepError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = lock(&self.shared.queue);
            if q.stop {
                return Err(KeepError::Stopped);
            }
            q.puts.push((entry, tx));
        }
        self.shared.wake.notify_one();
        rx.blocking_recv().unwrap_or(Err(KeepError::Stopped))
    }

    /// Records a scan, to be written with the next batch. Never blocks on the
    /// store.
    pub fn record(&self, rec: ScanRecord) {
        let rec = rec.bounded();
        let cap = usize::try_from(lock(&self.shared.limits).history)
            .unwrap_or(usize::MAX)
            .min(MAX_PENDING_HISTORY);
        let first = {
            let mut q = lock(&self.shared.queue);
            *q.counts
                .entry(rec.time / 3600)
                .or_default()
                .entry(rec.action.clone())
                .or_insert(0) += 1;
            if q.history.len() >= cap.max(1) {
                q.history.pop_front();
                if cap == MAX_PENDING_HISTORY {
                    // Not merely superseded by newer scans: lost.
                    self.shared.counters.history_dropped.fetch_add(1, Relaxed);
                }
            }
            q.history.push_back(rec);
            // The first record held wakes the writer to set its flush timer.
            q.history.len() == 1
        };
        if first {
            self.shared.wake.notify_one();
        }
    }

    /// The counts per hour of the last 7 days, with those not yet written.
    pub fn hourly_counts(&self, now: u64) -> Result<Vec<HourCounts>, StoreError> {
        let mut hours = self.store.hourly_counts(now)?;
        let q = lock(&self.shared.queue);
        for h in &mut hours {
            if let Some(add) = q.counts.get(&(h.hour / 3600)) {
                for (action, n) in add {
                    *h.counts.entry(action.clone()).or_insert(0) += n;
                }
            }
        }
        Ok(hours)
    }

    /// Changes the bounds (reload); retention runs at once with the new ones.
    pub fn set_limits(&self, limits: KeeperLimits) {
        let changed = {
            let mut l = lock(&self.shared.limits);
            let changed = *l != limits;
            *l = limits;
            changed
        };
        if changed {
            lock(&self.shared.queue).retention_now = true;
            self.shared.wake.notify_one();
        }
    }

    /// Writes the history and counts held now, and waits for it.
    pub fn flush(&self) -> Result<(), KeepError> {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut q = lock(&self.shared.queue);
            if q.stop {
                return Err(KeepError::Stopped);
            }
            q.flushes.push(tx);
        }
        self.shared.wake.notify_one();
        rx.recv()
            .map_err(|_| KeepError::Stopped)?
            .map_err(KeepError::Store)
    }

    /// Runs retention now and waits for it (a test's or tool's hook; the thread
    /// does it on its own every [`RETENTION_INTERVAL`]).
    pub fn retain_now(&self) -> Result<(), KeepError> {
        lock(&self.shared.queue).retention_now = true;
        self.flush()
    }

    /// What the keeper did.
    pub fn stats(&self) -> KeeperStats {
        let c = &self.shared.counters;
        KeeperStats {
            kept: c.kept.load(Relaxed),
            failed: c.failed.load(Relaxed),
            commits: c.commits.load(Relaxed),
            history_dropped: c.history_dropped.load(Relaxed),
            retained_out: c.retained_out.load(Relaxed),
        }
    }

    /// Writes what is held and stops the thread (the service's shutdown). Later
    /// calls to [`Keeper::keep`] fail with [`KeepError::Stopped`].
    pub fn shutdown(&self) {
        lock(&self.shared.queue).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What one turn of the writer takes from the queue.
struct Turn {
    puts: Vec<(NewEntry, Waiter)>,
    history: Vec<ScanRecord>,
    counts: BTreeMap<u64, BTreeMap<String, u64>>,
    flushes: Vec<std::sync::mpsc::Sender<Result<(), String>>>,
    write_history: bool,
    retention: bool,
    stop: bool,
}

/// Waits for work and takes it.
fn next_turn(shared: &Shared, next_history: Instant, next_retention: Instant) -> Turn {
    let mut q = lock(&shared.queue);
    loop {
        let now = Instant::now();
        let history_due = (!q.history.is_empty() || !q.counts.is_empty()) && now >= next_history;
        let history_now = history_due || !q.flushes.is_empty() || q.stop;
        let retention = q.retention_now || now >= next_retention;
        if !q.puts.is_empty() || history_now || retention || q.stop {
            q.retention_now = false;
            let piggyback = !q.puts.is_empty() && q.history.len() <= PIGGYBACK_MAX;
            let write_history = history_now || piggyback;
            return Turn {
                puts: std::mem::take(&mut q.puts),
                history: if write_history {
                    q.history.drain(..).collect()
                } else {
                    Vec::new()
                },
                counts: if write_history {
                    std::mem::take(&mut q.counts)
                } else {
                    BTreeMap::new()
                },
                flushes: std::mem::take(&mut q.flushes),
                write_history,
                retention,
                stop: q.stop,
            };
        }
        let mut until = next_retention;
        if !q.history.is_empty() || !q.counts.is_empty() {
            until = until.min(next_history);
        }
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        q = shared
            .wake
            .wait_timeout(q, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// The writer thread.
fn run(store: &StateStore, shared: &Shared) {
    let mut next_history = Instant::now() + HISTORY_FLUSH_INTERVAL;
    // Retention also runs once at start.
    let mut next_retention = Instant::now();
    let mut logged_failure = None::<Instant>;
    loop {
        let turn = next_turn(shared, next_history, next_retention);
        let limits = *lock(&shared.limits);
        let now = now_ms() / 1000;
        let mut over_bytes = false;
        let (mut history, mut counts) = (turn.history, turn.counts);
        // Waiters that gave up (timed out) withdraw their entry.
        let puts: Vec<(NewEntry, Waiter)> = turn
            .puts
            .into_iter()
            .filter(|(_, w)| !w.is_closed())
            .collect();
        if !puts.is_empty() {
            let piggyback = history.len() <= PIGGYBACK_MAX;
            let (entries, waiters): (Vec<NewEntry>, Vec<Waiter>) = puts.into_iter().unzip();
            let (records, add): (&[ScanRecord], BTreeMap<u64, BTreeMap<String, u64>>) = if piggyback
            {
                (&history, std::mem::take(&mut counts))
            } else {
                (&[], BTreeMap::new())
            };
            let result = store.commit(&entries, records, &add, limits.history, now);
            if piggyback && result.is_ok() {
                history.clear();
            } else if piggyback {
                // Not written with the entries: give the counts back to the
                // separate history write below.
                counts = add;
            }
            shared.counters.commits.fetch_add(1, Relaxed);
            match result {
                Ok(ids) => {
                    shared.counters.kept.fetch_add(ids.len() as u64, Relaxed);
                    for (w, id) in waiters.into_iter().zip(ids) {
                        let _ = w.send(Ok(id));
                    }
                    over_bytes = store.totals().is_ok_and(|t| t.bytes > limits.max_bytes);
                }
                Err(e) => {
                    shared
                        .counters
                        .failed
                        .fetch_add(waiters.len() as u64, Relaxed);
                    let msg = e.to_string();
                    for w in waiters {
                        let _ = w.send(Err(KeepError::Store(msg.clone())));
                    }
                }
            }
        }
        let mut flush_result = Ok(());
        if turn.write_history && (!history.is_empty() || !counts.is_empty()) {
            next_history = Instant::now() + HISTORY_FLUSH_INTERVAL;
            if let Err(e) = store.record_scans(&history, &counts, limits.history, now) {
                shared
                    .counters
                    .history_dropped
                    .fetch_add(history.len() as u64, Relaxed);
                if logged_failure.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    logged_failure = Some(Instant::now());
                    warn!(error = %e, records = history.len(), "scan history not written");
                }
                flush_result = Err(e.to_string());
            }
        } else if turn.write_history {
            next_history = Instant::now() + HISTORY_FLUSH_INTERVAL;
        }
        if turn.retention || over_bytes {
            next_retention = Instant::now() + RETENTION_INTERVAL;
            match store.apply_retention(now, limits.max_age, limits.max_bytes) {
                Ok(r) if r.entries > 0 => {
                    shared.counters.retained_out.fetch_add(r.entries, Relaxed);
                    info!(
                        entries = r.entries,
                        bytes = r.bytes,
                        "quarantine retention dropped the oldest entries"
                    );
                }
                Ok(_) => {}
                Err(e) => error!(error = %e, "quarantine retention failed"),
            }
        }
        for f in turn.flushes {
            let _ = f.send(flush_result.clone());
        }
        if turn.stop {
            // Anything that came in meanwhile is refused, not lost silently.
            let mut q = lock(&shared.queue);
            for (_, w) in q.puts.drain(..) {
                let _ = w.send(Err(KeepError::Stopped));
            }
            for f in q.flushes.drain(..) {
                let _ = f.send(Err(KeepError::Stopped.to_string()));
            }
            return;
        }
    }
}

impl StateStore {
    /// Keeps `entries` and writes `records` and `counts` in one durable
    /// transaction (the keeper's group commit).
    pub fn commit(
        &self,
        entries: &[NewEntry],
        records: &[ScanRecord],
        counts: &BTreeMap<u64, BTreeMap<String, u64>>,
        history_bound: u64,
        now: u64,
    ) -> Result<Vec<EntryId>, StoreError> {
        self.db
            .write(|txn| {
                let ids = entries
                    .iter()
                    .map(|e| super::insert_entry(txn, e))
                    .collect::<Result<Vec<_>, _>>()?;
                super::history::append(txn, records, history_bound)?;
                super::history::add_counts(txn, counts, now)?;
                Ok(Ok::<_, ()>(ids))
            })?
            .map_err(|()| self.db.corrupt("unreachable"))
    }
}
