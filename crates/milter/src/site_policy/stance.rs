//! What one recipient's policy (or the sending account's) says about a message,
//! and how several become the message's one verdict: the **strictest** of them.
//!
//! A message has one verdict, but its recipients may fall under different
//! policies. [`Stance::merge`] combines two stances into one no weaker than
//! either:
//!
//! - thresholds: the lowest quarantine threshold and, separately, the lowest
//!   reject threshold (a message one recipient would hold is held for all);
//! - block lists: blocked when any recipient's policy blocks the sender (the
//!   entry named is the smallest one, so the result does not depend on order);
//! - allow lists: allowed only when every recipient's policy allows the sender
//!   (an allow entry of one domain never lets mail through to another);
//! - block beats allow: a blocked message is refused even where it is allowed.
//!
//! The merge is commutative, associative and idempotent (a semilattice), so the
//! order of the recipients never changes the verdict; the tests check it with
//! proptest.

use chaff::AllowProof;
use std::collections::BTreeSet;

/// One policy's view of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Stance {
    /// Quarantine at or above this score.
    pub quarantine: f64,
    /// Reject at or above this score.
    pub reject: f64,
    /// The block entry that refuses the message (`scope: entry`).
    pub blocked: Option<String>,
    /// The allow entry that delivers it, and its proof.
    pub allowed: Option<(String, AllowProof)>,
    /// The stored policies that had a say (`domain:x.test`, …), for explanations.
    pub scopes: BTreeSet<String>,
}

fn proof_key(a: &(String, AllowProof)) -> (&str, &'static str) {
    (a.0.as_str(), a.1.as_str())
}

impl Stance {
    /// The strictest of `self` and `other` (see the module's note).
    pub fn merge(mut self, other: &Stance) -> Stance {
        self.quarantine = self.quarantine.min(other.quarantine);
        self.reject = self.reject.min(other.reject);
        self.blocked = match (self.blocked.take(), &other.blocked) {
            (Some(a), Some(b)) => Some(if *b < a { b.clone() } else { a }),
            (a, b) => a.or_else(|| b.clone()),
        };
        self.allowed = match (self.allowed.take(), &other.allowed) {
            (Some(a), Some(b)) => Some(if proof_key(b) < proof_key(&a) {
                b.clone()
            } else {
                a
            }),
            _ => None,
        };
        self.scopes.extend(other.scopes.iter().cloned());
        self
    }

    /// True when `self` is at least as strict as `other`: thresholds no higher,
    /// blocked if `other` is, allowed only if `other` is.
    pub fn at_least_as_strict_as(&self, other: &Stance) -> bool {
        self.quarantine <= other.quarantine
            && self.reject <= other.reject
            && (other.blocked.is_none() || self.blocked.is_some())
            && (self.allowed.is_none() || other.allowed.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stance() -> impl Strategy<Value = Stance> {
        let proof = prop_oneof![
            Just(AllowProof::Network),
            Just(AllowProof::Dkim),
            Just(AllowProof::Unverified),
        ];
        (
            -20.0f64..50.0,
            -20.0f64..50.0,
            proptest::option::of("[a-c]{1,2}"),
            proptest::option::of(("[a-c]{1,2}", proof)),
            proptest::collection::btree_set("[a-d]", 0..3),
        )
            .prop_map(|(quarantine, reject, blocked, allowed, scopes)| Stance {
                quarantine,
                reject,
                blocked,
                allowed,
                scopes,
            })
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in stance(), b in stance()) {
            prop_assert_eq!(a.clone().merge(&b), b.merge(&a));
        }

        #[test]
        fn merge_is_associative(a in stance(), b in stance(), c in stance()) {
            prop_assert_eq!(
                a.clone().merge(&b).merge(&c),
                a.merge(&b.merge(&c))
            );
        }

        #[test]
        fn merge_is_idempotent(a in stance()) {
            prop_assert_eq!(a.clone().merge(&a), a);
        }

        #[test]
        fn merge_is_never_weaker_than_an_input(a in stance(), b in stance()) {
            let m = a.clone().merge(&b);
            prop_assert!(m.at_least_as_strict_as(&a));
            prop_assert!(m.at_least_as_strict_as(&b));
        }
    }

    #[test]
    fn block_of_one_recipient_beats_allow_of_all() {
        let base = Stance {
            quarantine: 6.0,
            reject: 12.0,
            blocked: None,
            allowed: Some(("boss@x.test".into(), AllowProof::Network)),
            scopes: BTreeSet::new(),
        };
        let blocking = Stance {
            blocked: Some("domain:b.test: x.test".into()),
            ..base.clone()
        };
        let m = base.clone().merge(&blocking);
        assert!(m.blocked.is_some());
        // Allowed by both: stays allowed (the caller refuses it as blocked).
        assert!(m.allowed.is_some());
        let unallowed = Stance {
            allowed: None,
            quarantine: 3.0,
            ..base.clone()
        };
        let m = base.merge(&unallowed);
        assert_eq!(m.allowed, None);
        assert_eq!(m.quarantine, 3.0);
    }
}
