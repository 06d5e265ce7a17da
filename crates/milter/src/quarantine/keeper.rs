//! The service's writer: one thread that owns the service's writes to the state
//! store.
//!
//! **Kept messages, group commit to the keep log.** A message to keep must be
//! durable before the MTA is answered (a crash must never lose a message the MTA
//! was told to discard or hold). The network threads hand their entries to the
//! log writer thread (`chaff-keep`, [`Keeper::keep`], compressed already) and
//! wait; it appends every entry that arrived while the previous sync ran to the
//! keep log ([`super::keep_log`]), syncs it once (`fdatasync`) and wakes each
//! waiter with its id. The store's thread (`chaff-state`) then moves the logged
//! entries into the store's file in one transaction every [`MOVE_INTERVAL`] (or
//! sooner when [`MOVE_BATCH`] wait, or on [`Keeper::flush`]), off the answer
//! path: a redb commit costs several times a log sync in CPU (see `keep_log`).
//! When the keep log cannot be taken (another service holds it), entries are
//! committed to the store's file directly, one transaction per group, as the
//! log writer would sync them.
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
//! **Failure.** While the store's file is failed, kept messages are refused
//! (the MTA gets 4xx), as are new ones while more than [`MAX_UNMOVED_BYTES`] of
//! logged messages wait to be moved; what is logged stays in the log and is
//! moved once the file works again (or by whoever opens the store next).
//!
//! **Retention** runs here too, every [`RETENTION_INTERVAL`] and right after a
//! commit that takes the kept bytes over `max_bytes`, after the waiters are woken.

use super::entry::NewEntry;
use super::history::{HourCounts, ScanRecord};
use super::id::EntryId;
use super::keep_log::{self, LogFile, ROTATE_BYTES};
use super::{StateStore, StoreError, now_ms, salt};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
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
/// history write it is part of). Only without a keep log.
const PIGGYBACK_MAX: usize = 256;
/// The store's thread.
const STATE_THREAD: &str = "chaff-state";
/// The log writer's thread.
const LOG_THREAD: &str = "chaff-keep";
/// Longest a logged message waits to be moved into the store's file.
pub const MOVE_INTERVAL: Duration = Duration::from_millis(20);
// Why 20 ms: a move is one redb commit, 0.4–0.7 ms of CPU plus 35–42 µs per
// message (`cargo bench -p chaff-milter --bench state_write`); at most 50 a
// second stays near 3 % of a core for the fixed part, and a process that has
// the store open finds an entry within about that long. `cargo bench --bench
// milter_load` with the store on tmpfs: the keeper's CPU 15.8 -> 8.9 µs a
// message, the wait to keep one p50 2.5-3.7 -> 0.74-0.94 ms.
/// Logged messages that are moved at once, whatever the interval.
pub const MOVE_BATCH: usize = 512;
/// Most bytes of logged messages waiting to be moved (held in memory too);
/// beyond it, messages to keep are refused (4xx) until the store catches up.
pub const MAX_UNMOVED_BYTES: u64 = 64 << 20;

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

/// An entry in the keep log, to be moved into the store.
struct Logged {
    id: EntryId,
    entry: NewEntry,
    /// Its place in the order of logging (1, 2, ...).
    seq: u64,
}

#[derive(Default)]
struct Queue {
    puts: Vec<(NewEntry, Waiter)>,
    logged: Vec<Logged>,
    /// The log writer runs (the store's thread finishes after it).
    log_running: bool,
    /// A move finished: the log writer empties the files it covered.
    moved: bool,
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
    /// Wakes the store's thread.
    wake: Condvar,
    /// Wakes the log writer.
    log_wake: Condvar,
    /// Kept messages go through the keep log.
    logging: bool,
    /// The highest `seq` moved into the store.
    moved_seq: AtomicU64,
    /// Bytes of logged messages not yet moved.
    unmoved_bytes: AtomicU64,
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
    log_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("store", &self.store)
            .finish()
    }
}

impl Keeper {
    /// Starts the writer threads for `store`: the log writer when the keep log
    /// beside it can be taken, and the store's thread.
    pub fn start(store: Arc<StateStore>, limits: KeeperLimits) -> std::io::Result<Keeper> {
        let logs = take_logs(&store);
        let mut queue = Queue::default();
        let mut log_state = None;
        if let Some((logs, held)) = logs {
            // What the logs still hold (the store could not take it at open) is
            // moved first.
            let mut last_seq = [0u64; 2];
            let mut seq = 0;
            for (i, records) in held.into_iter().enumerate() {
                for (id, entry) in records {
                    seq += 1;
                    last_seq[i] = seq;
                    queue.logged.push(Logged { id, entry, seq });
                }
            }
            queue.log_running = true;
            log_state = Some(LogWriter {
                logs,
                active: 0,
                last_seq,
                seq,
                last_id: 0,
            });
        }
        let unmoved: u64 = queue
            .logged
            .iter()
            .map(|l| l.entry.compressed.len() as u64)
            .sum();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            wake: Condvar::new(),
            log_wake: Condvar::new(),
            logging: log_state.is_some(),
            moved_seq: AtomicU64::new(0),
            unmoved_bytes: AtomicU64::new(unmoved),
            limits: Mutex::new(limits),
            counters: Counters::default(),
        });
        if shared.logging {
            // Readers of this store in this process (the admin API) find what was
            // answered as kept: they wait for the move when one is pending. Not on
            // the keeper's own threads, which the move needs.
            let weak = Arc::downgrade(&shared);
            store.on_settle(Box::new(move || {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let own = std::thread::current()
                    .name()
                    .is_some_and(|n| n == STATE_THREAD || n == LOG_THREAD);
                if !own && shared.unmoved_bytes.load(Relaxed) > 0 {
                    let _ = flush(&shared);
                }
            }));
        }
        let thread = {
            let (store, shared) = (Arc::clone(&store), Arc::clone(&shared));
            std::thread::Builder::new()
                .name(STATE_THREAD.into())
                .spawn(move || run(&store, &shared))?
        };
        let log_thread = match log_state {
            Some(mut w) => {
                let (store, inner) = (Arc::clone(&store), Arc::clone(&shared));
                let spawned = std::thread::Builder::new()
                    .name(LOG_THREAD.into())
                    .spawn(move || w.run(&store, &inner));
                match spawned {
                    Ok(t) => Some(t),
                    Err(e) => {
                        {
                            let mut q = lock(&shared.queue);
                            q.log_running = false;
                            q.stop = true;
                        }
                        shared.wake.notify_one();
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        Ok(Keeper {
            store,
            shared,
            thread: Mutex::new(Some(thread)),
            log_thread: Mutex::new(log_thread),
        })
    }

    fn wake_writer(&self) {
        if self.shared.logging {
            self.shared.log_wake.notify_one();
        } else {
            self.shared.wake.notify_one();
        }
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
        self.wake_writer();
        async move { rx.await.unwrap_or(Err(KeepError::Stopped)) }
    }

    /// Keeps `entry` and waits for it on this thread, and for it to be in the
    /// store's file, readable by [`StateStore::get`] (tools, tests; the service
    /// awaits [`Keeper::keep`], which answers once it is durable).
    pub fn keep_blocking(&self, entry: NewEntry) -> Result<EntryId, KeepError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = lock(&self.shared.queue);
            if q.stop {
                return Err(KeepError::Stopped);
            }
            q.puts.push((entry, tx));
        }
        self.wake_writer();
        let id = rx.blocking_recv().unwrap_or(Err(KeepError::Stopped))?;
        if self.shared.logging {
            // Kept (durable in the log) whatever this says; a failure to move it
            // now leaves it for the next move.
            let _ = self.flush();
        }
        Ok(id)
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

    /// Writes the history and counts held now, moves the logged messages into
    /// the store, and waits for it.
    pub fn flush(&self) -> Result<(), KeepError> {
        flush(&self.shared)
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
        self.shared.log_wake.notify_one();
        self.shared.wake.notify_one();
        if let Some(t) = lock(&self.log_thread).take() {
            let _ = t.join();
        }
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

/// Asks the store's thread to write what it holds and waits for it.
fn flush(shared: &Shared) -> Result<(), KeepError> {
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let mut q = lock(&shared.queue);
        if q.stop {
            return Err(KeepError::Stopped);
        }
        q.flushes.push(tx);
    }
    shared.wake.notify_one();
    rx.recv()
        .map_err(|_| KeepError::Stopped)?
        .map_err(KeepError::Store)
}

/// What one turn of the writer takes from the queue.
struct Turn {
    puts: Vec<(NewEntry, Waiter)>,
    logged: Vec<Logged>,
    history: Vec<ScanRecord>,
    counts: BTreeMap<u64, BTreeMap<String, u64>>,
    flushes: Vec<std::sync::mpsc::Sender<Result<(), String>>>,
    write_history: bool,
    retention: bool,
    stop: bool,
}

/// Waits for work and takes it.
fn next_turn(
    shared: &Shared,
    next_history: Instant,
    next_retention: Instant,
    next_move: Instant,
    holding: bool,
) -> Turn {
    let mut q = lock(&shared.queue);
    loop {
        let now = Instant::now();
        let history_due = (!q.history.is_empty() || !q.counts.is_empty()) && now >= next_history;
        // The store's thread stops once the log writer has.
        let stop = q.stop && !q.log_running;
        let history_now = history_due || !q.flushes.is_empty() || stop;
        let retention = q.retention_now || now >= next_retention;
        let unmoved = !q.logged.is_empty() || holding;
        let move_now = unmoved
            && (now >= next_move || q.logged.len() >= MOVE_BATCH || !q.flushes.is_empty() || stop);
        let direct_puts = !shared.logging && !q.puts.is_empty();
        if direct_puts || move_now || history_now || retention || stop {
            q.retention_now = false;
            let piggyback = direct_puts && q.history.len() <= PIGGYBACK_MAX;
            let write_history = history_now || piggyback || move_now;
            return Turn {
                puts: if shared.logging {
                    Vec::new()
                } else {
                    std::mem::take(&mut q.puts)
                },
                logged: if move_now {
                    std::mem::take(&mut q.logged)
                } else {
                    Vec::new()
                },
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
                stop,
            };
        }
        let mut until = next_retention;
        if !q.history.is_empty() || !q.counts.is_empty() {
            until = until.min(next_history);
        }
        if unmoved {
            until = until.min(next_move);
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
    let mut next_move = Instant::now();
    let mut logged_failure = None::<Instant>;
    let mut move_failure = None::<Instant>;
    // Logged entries a failed move left, retried at the next.
    let mut holding: Vec<Logged> = Vec::new();
    loop {
        let turn = next_turn(
            shared,
            next_history,
            next_retention,
            next_move,
            !holding.is_empty(),
        );
        let limits = *lock(&shared.limits);
        let now = now_ms() / 1000;
        let mut over_bytes = false;
        let (mut history, mut counts) = (turn.history, turn.counts);
        holding.extend(turn.logged);
        if !holding.is_empty() && (Instant::now() >= next_move || turn.stop || turn.write_history) {
            next_move = Instant::now() + MOVE_INTERVAL;
            match store.commit_logged(&holding, &history, &counts, limits.history, now) {
                Ok(()) => {
                    history.clear();
                    counts.clear();
                    let last = holding.last().map_or(0, |l| l.seq);
                    let bytes: u64 = holding
                        .iter()
                        .map(|l| l.entry.compressed.len() as u64)
                        .sum();
                    holding.clear();
                    shared.moved_seq.fetch_max(last, Release);
                    shared.unmoved_bytes.fetch_sub(bytes, Relaxed);
                    // Emptied promptly, so that the log does not hold moved
                    // entries that retention may drop from the store later.
                    lock(&shared.queue).moved = true;
                    shared.log_wake.notify_one();
                    over_bytes = store.totals().is_ok_and(|t| t.bytes > limits.max_bytes);
                }
                Err(e) => {
                    if move_failure.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        move_failure = Some(Instant::now());
                        error!(
                            error = %e,
                            entries = holding.len(),
                            "kept messages not yet moved from the keep log into the store; \
                             they stay in the log and are retried"
                        );
                    }
                }
            }
        }
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
        let mut flush_result = if holding.is_empty() {
            Ok(())
        } else {
            Err("kept messages are not yet in the store (see the log)".to_string())
        };
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
    /// Moves logged entries into the store and writes `records` and `counts`, in
    /// one durable transaction.
    fn commit_logged(
        &self,
        logged: &[Logged],
        records: &[ScanRecord],
        counts: &BTreeMap<u64, BTreeMap<String, u64>>,
        history_bound: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        self.db
            .write(|txn| {
                for l in logged {
                    super::insert_logged(txn, &l.entry, l.id)?;
                }
                super::history::append(txn, records, history_bound)?;
                super::history::add_counts(txn, counts, now)?;
                Ok(Ok::<_, ()>(()))
            })?
            .map_err(|()| self.db.corrupt("unreachable"))
    }

    /// Keeps `entries` and writes `records` and `counts` in one durable
    /// transaction (the keeper's group commit without a keep log).
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

/// What a log file held when it was taken.
type LogRecords = Vec<(EntryId, NewEntry)>;

/// Takes both files of the keep log beside `store`, with what they hold; `None`
/// (entries are then committed to the store's file directly) when another
/// process holds them or they cannot be used.
fn take_logs(store: &StateStore) -> Option<([LogFile; 2], [LogRecords; 2])> {
    let [a, b] = keep_log::log_paths(store.path());
    let take = |p: &std::path::Path| match LogFile::take(p) {
        Ok(l) => Some(l),
        Err(keep_log::TakeError::Held) => {
            warn!(
                log = %p.display(),
                "the keep log is held by another process (another service on this store?): \
                 kept messages are committed to the store directly, which costs more per message"
            );
            None
        }
        Err(keep_log::TakeError::Io(e)) => {
            warn!(
                log = %p.display(),
                error = %e,
                "cannot use the keep log: kept messages are committed to the store directly, \
                 which costs more per message"
            );
            None
        }
    };
    let (la, ra) = take(&a)?;
    let (lb, rb) = take(&b)?;
    Some(([la, lb], [ra, rb]))
}

/// The log writer's state (the `chaff-keep` thread).
struct LogWriter {
    logs: [LogFile; 2],
    /// The file appended to.
    active: usize,
    /// The highest `seq` written to each file.
    last_seq: [u64; 2],
    /// The last `seq` given.
    seq: u64,
    /// The last id given (ids stay unique within this process).
    last_id: u64,
}

impl LogWriter {
    fn run(&mut self, store: &StateStore, shared: &Shared) {
        let mut buf = Vec::new();
        let mut logged_failure = None::<Instant>;
        loop {
            let (puts, stop) = {
                let mut q = lock(&shared.queue);
                while q.puts.is_empty() && !q.stop && !q.moved {
                    q = shared
                        .log_wake
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                q.moved = false;
                (std::mem::take(&mut q.puts), q.stop)
            };
            self.empty_moved_files(shared);
            let puts: Vec<(NewEntry, Waiter)> =
                puts.into_iter().filter(|(_, w)| !w.is_closed()).collect();
            if !puts.is_empty()
                && let Err(e) = self.write(store, shared, puts, &mut buf)
                && logged_failure.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                logged_failure = Some(Instant::now());
                error!(error = %e, "messages to keep refused (the MTA is told to try again later)");
            }
            if stop {
                let mut q = lock(&shared.queue);
                q.log_running = false;
                drop(q);
                shared.wake.notify_one();
                return;
            }
        }
    }

    /// Empties the files whose records are all in the store, and changes files
    /// when the one appended to has grown and the other is empty.
    fn empty_moved_files(&mut self, shared: &Shared) {
        let moved = shared.moved_seq.load(Acquire);
        for i in 0..2 {
            if self.logs[i].records_len() > 0
                && moved >= self.last_seq[i]
                && let Err(e) = self.logs[i].clear()
            {
                warn!(log = %self.logs[i].path().display(), error = %e, "cannot empty the keep log");
            }
        }
        let other = 1 - self.active;
        if self.logs[self.active].records_len() >= ROTATE_BYTES
            && self.logs[other].records_len() == 0
        {
            self.active = other;
        }
    }

    /// Logs and syncs one group, then answers its waiters; an error (already
    /// given to the waiters) is returned for the service's log.
    fn write(
        &mut self,
        store: &StateStore,
        shared: &Shared,
        puts: Vec<(NewEntry, Waiter)>,
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        let fail = |puts: Vec<(NewEntry, Waiter)>, msg: String| {
            shared.counters.failed.fetch_add(puts.len() as u64, Relaxed);
            for (_, w) in puts {
                let _ = w.send(Err(KeepError::Store(msg.clone())));
            }
            Err(msg)
        };
        // A failed store refuses mail to keep, as without the log.
        if let Err(e) = store.check_usable() {
            return fail(puts, e.to_string());
        }
        let unmoved = shared.unmoved_bytes.load(Relaxed);
        if unmoved > MAX_UNMOVED_BYTES {
            return fail(
                puts,
                format!(
                    "state store {}: {} MB of kept messages wait to be moved into it",
                    store.path().display(),
                    unmoved >> 20
                ),
            );
        }
        buf.clear();
        let mut ok = Vec::with_capacity(puts.len());
        let mut refused = Vec::new();
        for (entry, w) in puts {
            let mut id = EntryId::new(entry.time_ms, salt());
            if id.as_u64() <= self.last_id
                && id.time_ms() <= EntryId::from_u64(self.last_id).time_ms()
            {
                id = EntryId::from_u64(self.last_id.wrapping_add(1));
            }
            let at = buf.len();
            match keep_log::encode(id, &entry, buf) {
                Ok(()) => {
                    self.last_id = id.as_u64();
                    ok.push((id, entry, w));
                }
                Err(e) => {
                    buf.truncate(at);
                    refused.push((entry, w, e));
                }
            }
        }
        for (_, w, e) in refused {
            shared.counters.failed.fetch_add(1, Relaxed);
            let _ = w.send(Err(KeepError::Store(e)));
        }
        if ok.is_empty() {
            return Ok(());
        }
        let log = &mut self.logs[self.active];
        if let Err(e) = log.append(buf) {
            let msg = format!("keep log {}: {e}", log.path().display());
            return fail(ok.into_iter().map(|(_, e, w)| (e, w)).collect(), msg);
        }
        shared.counters.commits.fetch_add(1, Relaxed);
        shared.counters.kept.fetch_add(ok.len() as u64, Relaxed);
        let mut answers = Vec::with_capacity(ok.len());
        {
            // Handed to the store's thread before the waiters hear: a flush
            // asked after an answer moves the entry.
            let mut q = lock(&shared.queue);
            for (id, entry, w) in ok {
                self.seq += 1;
                shared
                    .unmoved_bytes
                    .fetch_add(entry.compressed.len() as u64, Relaxed);
                q.logged.push(Logged {
                    id,
                    entry,
                    seq: self.seq,
                });
                answers.push((id, w));
            }
            self.last_seq[self.active] = self.seq;
        }
        shared.wake.notify_one();
        for (id, w) in answers {
            let _ = w.send(Ok(id));
        }
        Ok(())
    }
}
