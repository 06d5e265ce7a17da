//! The cap on message bytes buffered across all connections (`max_buffered_bytes`).
//!
//! Each connection buffers the message it is receiving, up to `max_message_size`,
//! so without a shared cap the worst case is connections × `max_message_size`. Every
//! connection draws from one [`Budget`] as header and body bytes arrive, through a
//! [`Reservation`] that returns what it holds when it is dropped: when the message
//! is scanned (the reservation travels with the session's `ScanJob` to the scan thread),
//! aborted, refused, or its connection goes away. Nothing has to remember to give
//! bytes back, so nothing can leak them.
//!
//! The budget is an atomic counter rather than a tokio semaphore of bytes. A
//! connection never waits for room: a message that does not fit is answered
//! `451 4.3.2` at once (the MTA keeps it and retries), so the semaphore's queue of
//! waiters would go unused; the per-connection state machine stays free of tokio
//! (it is tested and fuzzed without a runtime); the limit changes on reload with a
//! store instead of adding or forgetting permits; and a reservation grows chunk by
//! chunk with one compare-and-swap instead of acquiring and merging permits
//! (which tokio counts in `u32`).
//!
//! What is counted is the message as rebuilt for scanning (`Name: value` lines,
//! the blank line, the body): the bytes that grow with the mail, and the room a
//! connection reads a packet of more than 64 KiB into (`connection::LARGE_PACKET`)
//! while it arrives. Not counted: a connection's read buffer for smaller packets,
//! the spare capacity a connection keeps between messages (at most 64 KiB in all:
//! `connection::IDLE_READ_CAPACITY` and `session::IDLE_MESSAGE_CAPACITY`), and the
//! scan's own working memory.

use super::protocol::Response;
use chaff::Reply;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The reply to a message that would go over the buffer budget
/// (`max_buffered_bytes`): a 4xx, so the MTA keeps the message and tries again.
pub const BUSY_REPLY: &str = "451 4.3.2 chaff: too much mail in flight, try again later";

/// [`BUSY_REPLY`] as a milter response (REPLYCODE).
pub fn busy_response() -> Response {
    busy_reply().map_or(Response::Tempfail, |r| Response::reply_code(&r))
}

/// [`BUSY_REPLY`], checked (it is a valid reply; a test makes sure).
pub fn busy_reply() -> Option<Reply> {
    Reply::parse(BUSY_REPLY).ok()
}

/// Bytes that may be buffered at once, shared by every connection.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        })
    }

    /// A budget that never runs out (a session on its own: tests, tools).
    pub fn unlimited() -> Arc<Budget> {
        Budget::new(usize::MAX)
    }

    /// Changes the limit (on reload). Reservations already held stay; while the
    /// total is over a lowered limit, nothing more is granted.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Relaxed);
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    /// Bytes held now, by all reservations.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// An empty reservation against this budget.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Some(Arc::clone(self)),
            held: 0,
        }
    }

    /// Takes `n` bytes if they fit under the limit.
    fn take(&self, n: usize) -> bool {
        let limit = self.limit();
        // Relaxed is enough: the counter guards no other memory, and updates of one
        // atomic are seen by every thread in a single order.
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }
}

/// Bytes one message holds from a [`Budget`]; they go back when it is dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<Budget>>,
    held: usize,
}

impl Reservation {
    /// A reservation against no budget: it holds nothing and cannot grow.
    pub fn none() -> Reservation {
        Reservation::default()
    }

    /// Draws `n` more bytes. False, with nothing drawn, when they do not fit (or
    /// there is no budget).
    #[must_use]
    pub fn grow(&mut self, n: usize) -> bool {
        match &self.budget {
            Some(b) if b.take(n) => {
                self.held += n;
                true
            }
            _ => false,
        }
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Returns everything held to the budget now.
    pub fn release(&mut self) {
        if let Some(b) = &self.budget
            && self.held > 0
        {
            b.give_back(self.held);
        }
        self.held = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// Two reservations are equal when they hold the same number of bytes (so a
/// session's `ScanJob` compares by its message).
impl PartialEq for Reservation {
    fn eq(&self, other: &Self) -> bool {
        self.held == other.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_returns_its_bytes_when_dropped() {
        let b = Budget::new(100);
        let mut r = b.reservation();
        assert!(r.grow(60));
        assert!(r.grow(30));
        assert_eq!((r.held(), b.used()), (90, 90));
        // Over the limit: refused, nothing drawn.
        let mut other = b.reservation();
        assert!(!other.grow(11));
        assert!(other.grow(10));
        assert_eq!(b.used(), 100);
        drop(r);
        assert_eq!(b.used(), 10);
        // A reservation moved elsewhere (a scan job on another thread) still
        // returns its bytes when it goes.
        std::thread::spawn(move || drop(other)).join().unwrap();
        assert_eq!(b.used(), 0);
        let mut again = b.reservation();
        assert!(again.grow(100));
        again.release();
        assert_eq!((again.held(), b.used()), (0, 0));
    }

    #[test]
    fn many_threads_never_take_more_than_the_limit() {
        let b = Budget::new(1000);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut r = b.reservation();
                    for _ in 0..10_000 {
                        let _ = r.grow(7);
                        assert!(b.used() <= 1000);
                        if r.held() > 300 {
                            r.release();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_lowered_limit_applies_to_new_draws() {
        let b = Budget::new(100);
        let mut r = b.reservation();
        assert!(r.grow(80));
        b.set_limit(50);
        assert!(!r.grow(1));
        drop(r);
        assert!(b.reservation().grow(50));
        assert!(!Reservation::none().grow(1));
        assert!(Budget::unlimited().reservation().grow(usize::MAX / 2));
    }
}
