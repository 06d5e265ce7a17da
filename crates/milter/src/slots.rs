//! Connection slots: at most `max_connections` MTA connections are served at once,
//! and a new connection is never left waiting in the listen backlog.
//!
//! Each served connection holds a `Slot` in the `Slots` table, where its driver
//! (module `connection`) records what it is doing with two relaxed atomic stores
//! per read: not negotiated yet, in the middle of a packet since when, quiet
//! between messages since when, or busy (in a message or answering). The accepting
//! thread looks at the table only when every slot is taken and a new connection
//! arrives; it then frees one slot by closing, in this order:
//!
//! 1. a connection that has not negotiated yet, the oldest first;
//! 2. a connection trickling a packet, one whose packet started more than
//!    [`TRICKLE_AFTER`] ago, the oldest packet first;
//! 3. a negotiated connection quiet between messages for longer than
//!    `evict_idle_after_secs`, the longest quiet first.
//!
//! A connection in a message is never closed this way (its own deadlines bound it).
//! When no connection qualifies, the new one is closed at once: the MTA applies its
//! default action (Postfix: `milter_default_action`) to that session's mail.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a packet must have been arriving before its connection counts as
/// trickling and may lose its slot to a new connection. An MTA on a working network
/// sends a packet (at most 256 KiB) in far less; `packet_timeout_secs` closes the
/// connection anyway later.
pub const TRICKLE_AFTER: Duration = Duration::from_secs(1);

/// What a connection is doing, as the slot rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Accepted, option negotiation not finished.
    Unnegotiated = 0,
    /// Negotiated, part of a packet received.
    MidPacket = 1,
    /// Negotiated, between messages, nothing pending.
    Idle = 2,
    /// In a message, reading, scanning or answering.
    Busy = 3,
    /// Its slot was given to a new connection: it must close.
    Evicted = 4,
}

/// Why a connection lost its slot (the `reason` label of
/// `chaff_milter_connections_evicted_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictReason {
    /// It had not negotiated.
    Unnegotiated,
    /// It was trickling a packet.
    Trickle,
    /// It was negotiated and quiet beyond `evict_idle_after_secs`.
    Idle,
}

impl EvictReason {
    /// Every reason, in metrics order.
    pub const ALL: [EvictReason; 3] = [
        EvictReason::Unnegotiated,
        EvictReason::Trickle,
        EvictReason::Idle,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::Unnegotiated => "unnegotiated",
            EvictReason::Trickle => "trickle",
            EvictReason::Idle => "idle",
        }
    }
}

/// One connection's entry in the table.
#[derive(Debug)]
pub(crate) struct Slot {
    state: AtomicU8,
    /// Milliseconds from the table's epoch: accepted (`Unnegotiated`), packet
    /// started (`MidPacket`), last packet (`Idle`).
    since_ms: AtomicU64,
    epoch: Instant,
    evicted: Notify,
}

impl Slot {
    /// Records what the connection does from `since`; false when its slot was
    /// taken away (it must close).
    pub(crate) fn set(&self, state: State, since: Instant) -> bool {
        self.since_ms
            .store(ms(since, self.epoch), Ordering::Relaxed);
        self.state.swap(state as u8, Ordering::AcqRel) != State::Evicted as u8
    }

    /// Marks the connection busy; false when its slot was taken away.
    pub(crate) fn busy(&self) -> bool {
        self.state.swap(State::Busy as u8, Ordering::AcqRel) != State::Evicted as u8
    }

    /// Resolves once the slot is taken away.
    pub(crate) async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

fn ms(t: Instant, epoch: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// The table of served connections.
#[derive(Debug)]
pub(crate) struct Slots {
    max: usize,
    epoch: Instant,
    table: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
}

/// A connection's hold on its slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    slot: Arc<Slot>,
}

impl SlotGuard {
    /// The connection's entry.
    pub(crate) fn slot(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// The outcome of [`Slots::admit`].
#[derive(Debug)]
pub(crate) enum Admission {
    /// The connection has a slot; another lost its slot for it, if named.
    Admitted(SlotGuard, Option<EvictReason>),
    /// Every slot is taken and none may be freed: close the new connection.
    Full,
}

impl Slots {
    /// A table of `max` slots.
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            epoch: Instant::now(),
            table: Mutex::new(HashMap::with_capacity(max.min(4096))),
            next_id: AtomicU64::new(0),
        })
    }

    /// Finds a slot for a connection accepted at `now`, freeing one by the slot
    /// rule if every slot is taken.
    pub(crate) fn admit(self: &Arc<Self>, now: Instant, evict_idle_after: Duration) -> Admission {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reason = None;
        if table.len() >= self.max {
            match self.evict(&mut table, now, evict_idle_after) {
                Some(r) => reason = Some(r),
                None => return Admission::Full,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            state: AtomicU8::new(State::Unnegotiated as u8),
            since_ms: AtomicU64::new(ms(now, self.epoch)),
            epoch: self.epoch,
            evicted: Notify::new(),
        });
        table.insert(id, Arc::clone(&slot));
        Admission::Admitted(
            SlotGuard {
                slots: Arc::clone(self),
                id,
                slot,
            },
            reason,
        )
    }

    /// Closes the first connection by the slot rule, if any qualifies.
    fn evict(
        &self,
        table: &mut HashMap<u64, Arc<Slot>>,
        now: Instant,
        evict_idle_after: Duration,
    ) -> Option<EvictReason> {
        let now_ms = ms(now, self.epoch);
        let trickle_ms = TRICKLE_AFTER.as_millis() as u64;
        let idle_ms = u64::try_from(evict_idle_after.as_millis()).unwrap_or(u64::MAX);
        // A connection may change state while this looks; a few tries at most.
        for _ in 0..4 {
            let mut best: Option<(u8, u64, u64)> = None;
            for (&id, slot) in table.iter() {
                let state = slot.state.load(Ordering::Acquire);
                let since = slot.since_ms.load(Ordering::Relaxed);
                let age = now_ms.saturating_sub(since);
                let qualifies = match state {
                    s if s == State::Unnegotiated as u8 => true,
                    s if s == State::MidPacket as u8 => age >= trickle_ms,
                    s if s == State::Idle as u8 => age >= idle_ms,
                    _ => false,
                };
                if qualifies && best.is_none_or(|(bs, bsince, _)| (state, since) < (bs, bsince)) {
                    best = Some((state, since, id));
                }
            }
            let (state, _, id) = best?;
            let slot = table.get(&id)?;
            if slot
                .state
                .compare_exchange(
                    state,
                    State::Evicted as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                slot.evicted.notify_one();
                table.remove(&id);
                return Some(match state {
                    s if s == State::Unnegotiated as u8 => EvictReason::Unnegotiated,
                    s if s == State::MidPacket as u8 => EvictReason::Trickle,
                    _ => EvictReason::Idle,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: Admission) -> (SlotGuard, Option<EvictReason>) {
        match a {
            Admission::Admitted(g, r) => (g, r),
            Admission::Full => panic!("refused"),
        }
    }

    #[test]
    fn the_slot_rule_goes_unnegotiated_then_trickling_then_long_idle() {
        let slots = Slots::new(3);
        let t0 = Instant::now();
        let idle_after = Duration::from_secs(60);
        let (a, _) = admitted(slots.admit(t0, idle_after));
        let (b, _) = admitted(slots.admit(t0, idle_after));
        let (c, _) = admitted(slots.admit(t0, idle_after));
        // a idle for 100 s, b trickling for 2 s, c unnegotiated.
        assert!(a.slot().set(State::Idle, t0));
        assert!(b.slot().set(State::MidPacket, t0 + Duration::from_secs(98)));
        let now = t0 + Duration::from_secs(100);
        let (d, r) = admitted(slots.admit(now, idle_after));
        assert_eq!(r, Some(EvictReason::Unnegotiated));
        assert!(!c.slot().busy());
        assert!(d.slot().set(State::Busy, now));
        let (e, r) = admitted(slots.admit(now, idle_after));
        assert_eq!(r, Some(EvictReason::Trickle));
        assert!(!b.slot().set(State::Idle, now));
        assert!(e.slot().busy());
        let (f, r) = admitted(slots.admit(now, idle_after));
        assert_eq!(r, Some(EvictReason::Idle));
        assert!(!a.slot().busy());
        assert!(f.slot().busy());
        // Every slot busy: the next one is refused.
        assert!(matches!(slots.admit(now, idle_after), Admission::Full));
        // A packet just started, or a short quiet, does not qualify either.
        assert!(d.slot().set(State::MidPacket, now));
        assert!(e.slot().set(State::Idle, now));
        assert!(matches!(
            slots.admit(now + Duration::from_millis(500), idle_after),
            Admission::Full
        ));
        // A closed connection frees its slot.
        drop(d);
        let (_g, r) = admitted(slots.admit(now, idle_after));
        assert_eq!(r, None);
    }
}
