//! Run a function over a stream of items on every core, keeping input order.
//!
//! The calling thread and `jobs - 1` workers take items one at a time from the
//! shared input and map them; results wait in a reorder window until every
//! earlier one is in, and the calling thread hands them to the sink in input
//! order. There is no barrier between batches: a large message holds up only its
//! own slot, and the other threads keep working up to [`WINDOW`] items ahead of
//! the oldest unfinished one. So memory is bounded by the window (twice over,
//! counting a batch being handed to the sink) whatever the input's size, output order is the input order for any number of jobs, and
//! exactly `jobs` threads are busy (the sink runs on the calling thread, between
//! items it maps itself, so it needs no `Send`). With one job everything runs on
//! the calling thread, so `--jobs 1` really measures one core.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Items in flight (taken but not yet handed to the sink), at most: large enough
/// that a slow item does not idle the other threads, small enough to bound memory.
pub const WINDOW: usize = 1024;

/// An ordered parallel map.
#[derive(Debug, Clone, Copy)]
pub struct Ordered {
    jobs: usize,
}

/// What the threads share.
struct State<It, R> {
    items: It,
    /// The input has run out.
    exhausted: bool,
    /// A thread panicked: everyone stops.
    aborted: bool,
    /// Sequence number of the next item taken.
    next_seq: usize,
    /// Sequence number of the next result the sink gets; `ready[k]` is the result
    /// of item `next_emit + k`, `None` while it is being mapped.
    next_emit: usize,
    ready: VecDeque<Option<R>>,
}

impl<It: Iterator, R> State<It, R> {
    /// Takes the next item if the window allows; marks the input exhausted at its end.
    fn take(&mut self) -> Option<(usize, It::Item)> {
        if self.exhausted || self.aborted || self.next_seq >= self.next_emit + WINDOW {
            return None;
        }
        match self.items.next() {
            Some(item) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                Some((seq, item))
            }
            None => {
                self.exhausted = true;
                None
            }
        }
    }

    /// Files the result of item `seq`.
    fn put(&mut self, seq: usize, result: R) {
        let k = seq - self.next_emit;
        if self.ready.len() <= k {
            self.ready.resize_with(k + 1, || None);
        }
        self.ready[k] = Some(result);
    }

    /// Moves the results that are next in order into `batch`.
    fn drain_into(&mut self, batch: &mut Vec<R>) {
        while let Some(Some(_)) = self.ready.front() {
            if let Some(Some(r)) = self.ready.pop_front() {
                batch.push(r);
                self.next_emit += 1;
            }
        }
    }

    /// Nothing left to take and nothing left to emit.
    fn finished(&self) -> bool {
        self.exhausted && self.next_emit == self.next_seq
    }
}

/// The shared state and the condition every waiting thread waits on (the window
/// opened, a result came in, the input ran out, a thread panicked).
struct Shared<It, R> {
    state: Mutex<State<It, R>>,
    changed: Condvar,
}

impl<It, R> Shared<It, R> {
    fn lock(&self) -> MutexGuard<'_, State<It, R>> {
        // A panic while holding the lock leaves the state consistent (every
        // update is a single step), and `aborted` stops the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State<It, R>>) -> MutexGuard<'a, State<It, R>> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

/// Sets `aborted` if its thread unwinds, so that no other thread waits forever
/// for a result that will never come.
struct AbortOnPanic<'a, It, R>(&'a Shared<It, R>);

impl<It, R> Drop for AbortOnPanic<'_, It, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().aborted = true;
            self.0.changed.notify_all();
        }
    }
}

impl Ordered {
    /// A map over `jobs` threads (0 means one per core).
    pub fn new(jobs: usize) -> Ordered {
        let jobs = if jobs == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            jobs
        };
        Ordered { jobs }
    }

    /// Maps every item with `f` and passes the results to `sink` in input order,
    /// on the calling thread. A panic in `f` stops the run and is re-raised here.
    pub fn run<T, R, I, F, S>(&self, items: I, f: F, mut sink: S)
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send,
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync,
        S: FnMut(R),
    {
        if self.jobs <= 1 {
            items.into_iter().for_each(|item| sink(f(item)));
            return;
        }
        let shared = Shared {
            state: Mutex::new(State {
                items: items.into_iter(),
                exhausted: false,
                aborted: false,
                next_seq: 0,
                next_emit: 0,
                ready: VecDeque::with_capacity(WINDOW),
            }),
            changed: Condvar::new(),
        };
        let (shared, f) = (&shared, &f);
        std::thread::scope(|scope| {
            for i in 1..self.jobs {
                // A worker that cannot be spawned is simply missing: the calling
                // thread maps items too, so the run still completes.
                let _ = std::thread::Builder::new()
                    .name(format!("chaff-worker-{i}"))
                    .spawn_scoped(scope, move || work(shared, f));
            }
            let _guard = AbortOnPanic(shared);
            let mut batch = Vec::new();
            let mut st = shared.lock();
            loop {
                st.drain_into(&mut batch);
                if !batch.is_empty() {
                    // The window moved on: waiting workers may take more.
                    shared.changed.notify_all();
                    drop(st);
                    batch.drain(..).for_each(&mut sink);
                    st = shared.lock();
                    continue;
                }
                if st.finished() || st.aborted {
                    break;
                }
                if let Some((seq, item)) = st.take() {
                    drop(st);
                    let r = f(item);
                    st = shared.lock();
                    st.put(seq, r);
                    continue;
                }
                st = shared.wait(st);
            }
            // Wake workers waiting on the window so they see the end.
            st.exhausted = true;
            drop(st);
            shared.changed.notify_all();
        });
    }
}

/// A worker: maps items until the input runs out, waiting while the window is full.
fn work<It, T, R, F>(shared: &Shared<It, R>, f: &F)
where
    It: Iterator<Item = T>,
    F: Fn(T) -> R,
{
    let _guard = AbortOnPanic(shared);
    let mut st = shared.lock();
    loop {
        if let Some((seq, item)) = st.take() {
            drop(st);
            let r = f(item);
            st = shared.lock();
            let next = seq == st.next_emit;
            st.put(seq, r);
            if next {
                // The calling thread may be waiting for exactly this result.
                shared.changed.notify_all();
            }
            continue;
        }
        if st.exhausted || st.aborted {
            // The calling thread may be waiting for the end of the input.
            shared.changed.notify_all();
            return;
        }
        st = shared.wait(st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn order_is_kept_for_any_number_of_jobs() {
        for jobs in [1, 2, 3, 8] {
            let mut out = Vec::new();
            Ordered::new(jobs).run(0..5000u64, |x| x * x, |r| out.push(r));
            assert_eq!(out, (0..5000u64).map(|x| x * x).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_slow_item_keeps_its_place_and_does_not_stall_the_rest() {
        let mut out = Vec::new();
        Ordered::new(3).run(
            0..3000u32,
            |x| {
                if x % 700 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                x
            },
            |r| out.push(r),
        );
        assert_eq!(out, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn items_in_flight_stay_within_the_window() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let taken = AtomicUsize::new(0);
        let mut emitted = 0usize;
        let mut worst = 0usize;
        Ordered::new(4).run(
            (0..20_000u32).inspect(|_| {
                taken.fetch_add(1, Ordering::SeqCst);
            }),
            |x| x,
            |_| {
                emitted += 1;
                worst = worst.max(taken.load(Ordering::SeqCst) - emitted);
            },
        );
        assert_eq!(emitted, 20_000);
        // Taken but not yet sunk: the window plus one batch being handed over.
        assert!(worst <= 2 * WINDOW, "{worst} items in flight");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn any_input_comes_out_whole_and_in_order(
            items in proptest::collection::vec(0u32..1000, 0..3000),
            jobs in 1usize..6,
        ) {
            let mut out = Vec::with_capacity(items.len());
            Ordered::new(jobs).run(
                items.clone(),
                |x| {
                    // Uneven work, so that threads overtake one another.
                    if x % 97 == 0 {
                        std::thread::yield_now();
                    }
                    u64::from(x) * 3
                },
                |r| out.push(r),
            );
            let want: Vec<u64> = items.iter().map(|&x| u64::from(x) * 3).collect();
            proptest::prop_assert_eq!(out, want);
        }
    }

    #[test]
    fn empty_input() {
        let mut n = 0;
        Ordered::new(2).run(std::iter::empty::<u8>(), |x| x, |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn a_panic_in_a_worker_is_raised_not_hung() {
        let result = std::panic::catch_unwind(|| {
            Ordered::new(2).run(
                0..10_000u32,
                |x| {
                    assert!(x != 4321, "boom");
                    x
                },
                |_| {},
            );
        });
        assert!(result.is_err());
    }
}
