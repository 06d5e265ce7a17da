//! Log lines that come in storms (a reconnect storm, a run out of file descriptors)
//! written at most once every [`LOG_INTERVAL`] per kind, each saying how many
//! events it stands for (`since_last`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two lines of one kind.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A log line at most every [`LOG_INTERVAL`], saying how many events it stands for.
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    /// Counts an event; Some(events since the last line) when a line is due.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<u64> {
        self.count = self.count.saturating_add(1);
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// A [`Throttled`] shared by the connections of every network thread.
#[derive(Debug, Default)]
pub(crate) struct Shared(Mutex<Throttled>);

impl Shared {
    /// Counts an event now; Some(events since the last line) when a line is due.
    pub(crate) fn tick(&self) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tick(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count() {
        let mut t = Throttled::default();
        let t0 = Instant::now();
        assert_eq!(t.tick(t0), Some(1));
        for i in 1..100 {
            assert_eq!(t.tick(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.tick(t0 + LOG_INTERVAL), Some(100));
        let s = Shared::default();
        assert_eq!(s.tick(), Some(1));
        assert_eq!(s.tick(), None);
    }
}
