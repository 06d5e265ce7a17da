//! The service's copy of the stored policies: read from the store when its
//! revision changed, looked at no more often than `[policy] refresh_ms`, so a
//! message costs one clock read and one atomic load (measured in the README:
//! `cargo bench --bench milter_load`). An edit through the admin API
//! [invalidates](PolicyCache::invalidate) it at once; an edit by `chaff policy`
//! (another process) is seen within `refresh_ms`. When the store cannot be
//! read, the copy in force keeps serving and the error is logged (once per
//! refresh interval at most).

use super::{PolicySet, PolicyStore};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The service's copy of the stored policies.
pub struct PolicyCache {
    store: Arc<dyn PolicyStore>,
    current: ArcSwap<PolicySet>,
    /// When the store was last looked at, in ms since `epoch` (`u64::MAX`: never).
    checked_ms: AtomicU64,
    epoch: Instant,
    /// Held by the one thread refreshing.
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for PolicyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCache")
            .field("revision", &self.current.load().revision())
            .finish_non_exhaustive()
    }
}

impl PolicyCache {
    /// A cache over `store`, read now (an unreadable store starts empty and is
    /// read again at the first message).
    pub fn new(store: Arc<dyn PolicyStore>) -> PolicyCache {
        let cache = PolicyCache {
            store,
            current: ArcSwap::from_pointee(PolicySet::default()),
            checked_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            refreshing: Mutex::new(()),
        };
        cache.refresh(true);
        cache
    }

    /// The policies in force, refreshed first if they were last looked at
    /// `refresh` or more ago (by this thread, unless another is at it).
    pub fn get(&self, refresh: Duration) -> Arc<PolicySet> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let checked = self.checked_ms.load(Relaxed);
        if checked == u64::MAX || now.saturating_sub(checked) >= refresh.as_millis() as u64 {
            self.refresh(false);
        }
        self.current.load_full()
    }

    /// Reads the store now (after an edit through this process).
    pub fn invalidate(&self) {
        self.refresh(true);
    }

    /// Reads the revision, and the policies if it changed. `wait`: take the
    /// refresh lock even if another thread holds it.
    fn refresh(&self, wait: bool) {
        let _guard = if wait {
            self.refreshing.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            match self.refreshing.try_lock() {
                Ok(g) => g,
                Err(_) => return,
            }
        };
        self.checked_ms
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
        let have = self.current.load().revision();
        let fresh = self.store.policy_revision().and_then(|rev| {
            if rev == have {
                return Ok(None);
            }
            Ok(Some(PolicySet::new(rev, &self.store.policies()?)))
        });
        match fresh {
            Ok(Some(set)) => {
                if set.revision() != have {
                    info!(
                        revision = set.revision(),
                        rules = set.len(),
                        "stored policies loaded"
                    );
                }
                self.current.store(Arc::new(set));
            }
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "stored policies unreadable: the copy in force keeps serving")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::StateStore;
    use crate::site_policy::{Change, Key, edit};

    #[test]
    fn an_edit_is_seen_after_the_refresh_interval_or_at_once_when_invalidated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("state.redb")).unwrap());
        let cache = PolicyCache::new(Arc::clone(&store) as Arc<dyn PolicyStore>);
        let long = Duration::from_secs(3600);
        assert!(cache.get(long).is_empty());
        let set = |v: &str| {
            edit(
                &*store,
                "domain:x.test",
                &Change::Set(Key::Reject, v.into()),
                None,
                "t",
                1,
            )
            .unwrap()
        };
        set("9");
        // Within the interval the copy in force serves.
        assert!(cache.get(long).is_empty());
        // With a zero interval the next message reads the store.
        assert_eq!(cache.get(Duration::ZERO).len(), 1);
        assert_eq!(cache.get(long).revision(), 1);
        set("8");
        cache.invalidate();
        assert_eq!(cache.get(long).revision(), 2);
    }
}
