//! Per-domain, per-recipient and per-account policy, layered over the
//! configuration's, kept in the state store and editable while the service runs
//! (`chaff policy`, `/api/policy`); and the check that an authenticated sender
//! sends as its own domain (`[policy] sender_mismatch`).
//!
//! | file | what |
//! |---|---|
//! | `scope.rs` | what a policy applies to: `domain:D`, `recipient:ADDRESS`, `account:LOGIN` |
//! | `rule.rs` | one scope's policy and the one way to change it |
//! | `stance.rs` | one policy's view of a message and the strictest merge of several |
//! | `resolve.rs` | the stored policies compiled, and their application to a verdict |
//! | `mismatch.rs` | sender/login match: the account's domain, aliases, the `From:` header |
//! | `cache.rs` | the service's copy of the stored policies, at most `refresh_ms` stale |
//! | `config.rs` | `[policy]` |
//!
//! The store is reached through [`PolicyStore`], four calls a backend must
//! answer (the embedded redb store implements it in `quarantine::policies`; a
//! shared store such as Redis can implement the same four). Every change goes
//! through [`edit`], which both the command line and the admin API call.

mod cache;
pub mod config;
pub mod mismatch;
mod resolve;
mod rule;
mod scope;
mod stance;

pub use cache::PolicyCache;
pub use config::{MismatchAction, Policy, PolicyConfig};
pub use resolve::{Mark, POLICY, PolicySet, SENDER_MISMATCH, apply};
pub use rule::{Change, Key, MAX_ENTRY_BYTES, MAX_LIST_ENTRIES, Rule, canonical};
pub use scope::{MAX_SCOPE_BYTES, Scope};
pub use stance::Stance;

/// Most scopes the store may hold policies for.
pub const MAX_POLICIES: usize = 100_000;

/// A policy call failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The scope, key or value is refused (why).
    #[error("{0}")]
    Invalid(String),
    /// What was to be removed is not there.
    #[error("{0}")]
    NotFound(String),
    /// The store holds [`MAX_POLICIES`] scopes already.
    #[error("the store already holds policies for {MAX_POLICIES} scopes")]
    Full,
    /// The store failed.
    #[error("state store: {0}")]
    Store(String),
}

/// Where policies are kept: what a state backend implements.
///
/// `update_policy` runs `change` on the scope's current rule and writes what it
/// returns (None removes the rule) in one atomic step, bumps the revision and
/// records the change (`what`, by `by` at `now`) in the admin action log;
/// `change`'s error aborts it and is returned.
pub trait PolicyStore: Send + Sync {
    /// The revision: changes with every edit.
    fn policy_revision(&self) -> Result<u64, PolicyError>;
    /// Every stored rule, in scope order.
    fn policies(&self) -> Result<Vec<(Scope, Rule)>, PolicyError>;
    /// One scope's rule.
    fn policy(&self, scope: &Scope) -> Result<Option<Rule>, PolicyError>;
    /// Changes one scope's rule (see the trait's note).
    fn update_policy(
        &self,
        scope: &Scope,
        change: &mut dyn FnMut(Option<Rule>) -> Result<Option<Rule>, PolicyError>,
        by: &str,
        what: &str,
        now: u64,
    ) -> Result<Option<Rule>, PolicyError>;
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Edited {
    /// The scope, normalised.
    pub scope: String,
    /// Its rule now (None: it has none any more).
    pub rule: Option<Rule>,
    /// The store's revision after the edit.
    pub revision: u64,
}

/// Applies `change` to the policy of `scope` (as written: `domain:…`,
/// `recipient:…`, `account:…`; `realm` is `[accounts] realm`) for `by` at
/// `now`: the one function behind `chaff policy set|unset` and the admin API.
pub fn edit(
    store: &dyn PolicyStore,
    scope: &str,
    change: &Change,
    realm: Option<&str>,
    by: &str,
    now: u64,
) -> Result<Edited, PolicyError> {
    let scope = Scope::parse(scope, realm).map_err(PolicyError::Invalid)?;
    let mut at = |old: Option<Rule>| {
        Rule::apply(old, &scope, change).map(|r| {
            r.map(|mut r| {
                r.by = by.to_string();
                r.at = now;
                r
            })
        })
    };
    let what = format!("{} {}", change.verb(), change.describe());
    let rule = store.update_policy(&scope, &mut at, by, &what, now)?;
    Ok(Edited {
        scope: scope.to_string(),
        rule,
        revision: store.policy_revision()?,
    })
}
