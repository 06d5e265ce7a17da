//! Run a function over a stream of items on every core, keeping input order.
//!
//! Items are taken in chunks; each chunk is mapped in parallel on a rayon pool and
//! its results handed on in input order before the next chunk is taken. Memory is
//! bounded by one chunk, whatever the input's size, and output order is the input
//! order for any number of jobs. With one job everything runs on the calling
//! thread, so `--jobs 1` really measures one core.

use rayon::prelude::*;

/// Items per chunk: large enough that the tail of a chunk (cores idling while the
/// last items finish) costs little, small enough to bound memory.
pub const CHUNK: usize = 1024;

/// An ordered parallel map.
pub struct Ordered {
    pool: Option<rayon::ThreadPool>,
}

impl Ordered {
    /// A map over `jobs` threads (0 means one per core).
    pub fn new(jobs: usize) -> Result<Ordered, rayon::ThreadPoolBuildError> {
        let jobs = if jobs == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            jobs
        };
        let pool = if jobs > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(jobs)
                    .thread_name(|i| format!("chaff-worker-{i}"))
                    .build()?,
            )
        } else {
            None
        };
        Ok(Ordered { pool })
    }

    /// Maps every item with `f` and passes the results to `sink` in input order.
    pub fn run<T, R, I, F, S>(&self, items: I, f: F, mut sink: S)
    where
        I: IntoIterator<Item = T>,
        T: Send,
        R: Send,
        F: Fn(T) -> R + Sync,
        S: FnMut(R),
    {
        let mut items = items.into_iter();
        match &self.pool {
            None => items.for_each(|item| sink(f(item))),
            Some(pool) => loop {
                let chunk: Vec<T> = items.by_ref().take(CHUNK).collect();
                if chunk.is_empty() {
                    break;
                }
                let results: Vec<R> = pool.install(|| chunk.into_par_iter().map(&f).collect());
                results.into_iter().for_each(&mut sink);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_for_any_number_of_jobs() {
        for jobs in [1, 2, 3, 8] {
            let ordered = Ordered::new(jobs).unwrap();
            let mut out = Vec::new();
            ordered.run(0..5000u64, |x| x * x, |r| out.push(r));
            assert_eq!(out, (0..5000u64).map(|x| x * x).collect::<Vec<_>>());
        }
    }
}
