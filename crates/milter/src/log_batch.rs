//! Log lines from the network threads, written in batches.
//!
//! Under load, each message's log line was a `write` system call of its own on the
//! network thread that served the message, 3–4 % of the service's CPU in the load
//! benchmark. A network thread instead collects its lines and writes them together
//! when it runs out of work at hand (just before its runtime waits for the
//! network again), or once [`FLUSH_AT`] bytes have gathered. A line reaches the log
//! at most one busy spell late, as with nginx's `access_log … buffer=`; lines from
//! one thread keep their order, and every line keeps the time it was made. Threads
//! that did not ask for batching (start-up, signals, reloads, scan threads) write
//! straight through.

use std::cell::RefCell;
use std::io::{self, Write};

/// A thread writes its collected lines once they reach this many bytes, even if
/// it is still busy.
pub const FLUSH_AT: usize = 32 * 1024;

thread_local! {
    /// The calling thread's collected lines, if it batches.
    static BATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Makes the calling thread collect its log lines until [`flush`] (or until
/// [`FLUSH_AT`] bytes have gathered).
pub fn start_batching() {
    BATCH.with(|b| *b.borrow_mut() = Some(Vec::with_capacity(FLUSH_AT)));
}

/// Writes the calling thread's collected lines, if any.
pub fn flush() {
    BATCH.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut()
            && let Some(batch) = b.as_mut()
        {
            // Nowhere to report a failure to write the log.
            let _ = write_out(batch);
        }
    });
}

/// Writes `batch` to standard error and empties it, written or not, so that
/// memory stays bounded.
fn write_out(batch: &mut Vec<u8>) -> io::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let written = io::stderr().write_all(batch);
    batch.clear();
    written
}

/// Standard error, batched on threads that called [`start_batching`]: a
/// `MakeWriter` for `tracing-subscriber`, which hands each formatted line to one
/// `write_all`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchedStderr;

/// The writer [`BatchedStderr`] makes for one log line.
#[derive(Debug)]
pub struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let batched = BATCH.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return Ok(false);
            };
            let Some(batch) = b.as_mut() else {
                return Ok(false);
            };
            batch.extend_from_slice(data);
            if batch.len() >= FLUSH_AT {
                write_out(batch)?;
            }
            Ok::<_, io::Error>(true)
        })?;
        if !batched {
            io::stderr().write_all(data)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected() -> usize {
        BATCH.with(|b| b.borrow().as_ref().map_or(0, Vec::len))
    }

    #[test]
    fn lines_gather_until_flushed_or_full() {
        // Each test runs on its own thread, so the thread-local batch is this
        // test's alone.
        std::thread::spawn(|| {
            let mut w = LineWriter;
            w.write_all(b"not batched\n").unwrap();
            assert_eq!(collected(), 0);
            start_batching();
            w.write_all(b"line one\n").unwrap();
            w.write_all(b"line two\n").unwrap();
            assert_eq!(collected(), 18);
            flush();
            assert_eq!(collected(), 0);
            let line = vec![b'x'; 1000];
            for _ in 0..FLUSH_AT / 1000 {
                w.write_all(&line).unwrap();
            }
            assert!(collected() >= FLUSH_AT - 1000 && collected() < FLUSH_AT);
            w.write_all(&line).unwrap();
            assert_eq!(collected(), 0, "written once full");
        })
        .join()
        .unwrap();
    }
}
