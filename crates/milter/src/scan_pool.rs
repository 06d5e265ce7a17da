//! The scan threads: messages too large to scan on a network thread, and outbound
//! mail (the lock store may write to disk), are scanned here, so a large message
//! never stalls the network threads or other connections.

use std::sync::Arc;

/// A scan handed to the pool.
type Job = Box<dyn FnOnce() + Send>;

/// The scan threads: a plain queue that idle threads sleep on. (rayon's pool spins
/// while it looks for work, which on a small machine takes CPU from the network
/// thread and the MTA.)
pub(crate) struct ScanPool {
    queue: std::sync::mpsc::Sender<Job>,
}

impl ScanPool {
    /// Starts `threads` scan threads.
    pub(crate) fn new(threads: usize) -> std::io::Result<ScanPool> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("chaff-scan-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job; a poisoned
                        // lock (a panic while holding it) still hands out jobs.
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the service is gone
                        }
                    }
                })?;
        }
        Ok(ScanPool { queue: tx })
    }

    /// Queues `job` for the next idle scan thread.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        // Only fails when every scan thread is gone; the caller then times out
        // into the fallback answer.
        let _ = self.queue.send(Box::new(job));
    }
}
