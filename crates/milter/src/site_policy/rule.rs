//! One scope's stored policy ([`Rule`]) and the one way it is changed
//! ([`Change`], [`Rule::apply`]), which the command line and the admin API both
//! go through (via [`super::edit`]).
//!
//! | key | scopes | value | meaning |
//! |---|---|---|---|
//! | `quarantine` | all | a score | hold at or above it (instead of `[thresholds]`/`[outbound]`) |
//! | `reject` | all | a score | refuse at or above it (the "auto-delete" threshold) |
//! | `allow` | domain, recipient | an `[senders] allow` entry (`PATTERN [from NET, …]`) | this sender is delivered to this scope whatever the score (with the same proof as `[senders] allow`) |
//! | `allow` | account | a recipient pattern | mail from this account to matching recipients is never refused for its score |
//! | `block` | domain, recipient | a sender pattern | mail from matching senders to this scope is refused |
//! | `block` | account | a recipient pattern | this account may not send to matching recipients |
//! | `aliases` | account | an address, domain or wildcard | the account may also send as these (sender/login match) |
//! | `mismatch_exempt` | account | `true` or `false` | the sender/login match is not checked for this account |
//!
//! `set` sets a threshold or flag, or adds one entry to a list; `unset` removes
//! a threshold or flag, one entry of a list, or (without a value) the whole list.

use super::PolicyError;
use super::scope::Scope;
use chaff::config::{AllowEntry, SenderPattern};
use serde::{Deserialize, Serialize};

/// Most entries one list of one rule may hold.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Longest list entry, in bytes.
pub const MAX_ENTRY_BYTES: usize = 2048;
/// Thresholds are kept within ±this (scores are sums of keyword weights and
/// classifier points, far below it).
pub const MAX_THRESHOLD: f64 = 1.0e6;

/// A scope's stored policy. Unset fields inherit: a recipient's from its domain,
/// a domain's and an account's from the configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rule {
    /// Quarantine at or above this score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<f64>,
    /// Reject at or above this score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<f64>,
    /// Allow entries (canonical).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Block entries (canonical).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    /// Accounts only: the other senders the account may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Accounts only: the sender/login match is not checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mismatch_exempt: bool,
    /// Who changed it last.
    #[serde(default)]
    pub by: String,
    /// When (seconds since the epoch).
    #[serde(default)]
    pub at: u64,
}

/// A field of a [`Rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `quarantine`.
    Quarantine,
    /// `reject`.
    Reject,
    /// `allow`.
    Allow,
    /// `block`.
    Block,
    /// `aliases`.
    Aliases,
    /// `mismatch_exempt`.
    MismatchExempt,
}

impl Key {
    /// Every key.
    pub const ALL: [Key; 6] = [
        Key::Quarantine,
        Key::Reject,
        Key::Allow,
        Key::Block,
        Key::Aliases,
        Key::MismatchExempt,
    ];

    /// Reads a key's name.
    pub fn parse(name: &str) -> Result<Key, PolicyError> {
        Key::ALL
            .into_iter()
            .find(|k| k.as_str() == name.trim())
            .ok_or_else(|| {
                PolicyError::Invalid(format!(
                    "`{}` is not a policy key: use quarantine, reject, allow, block, aliases or \
                     mismatch_exempt",
                    name.chars().take(40).collect::<String>()
                ))
            })
    }

    /// The key's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Key::Quarantine => "quarantine",
            Key::Reject => "reject",
            Key::Allow => "allow",
            Key::Block => "block",
            Key::Aliases => "aliases",
            Key::MismatchExempt => "mismatch_exempt",
        }
    }
}

/// One change of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Set a threshold or flag, or add an entry to a list.
    Set(Key, String),
    /// Remove a threshold or flag; with a value, one entry of a list; without,
    /// the whole list.
    Unset(Key, Option<String>),
}

impl Change {
    /// What the action log calls it: `policy-set` or `policy-unset`.
    pub fn verb(&self) -> &'static str {
        match self {
            Change::Set(..) => "policy-set",
            Change::Unset(..) => "policy-unset",
        }
    }

    /// `KEY VALUE`, for logs.
    pub fn describe(&self) -> String {
        match self {
            Change::Set(k, v) | Change::Unset(k, Some(v)) => format!("{} {v}", k.as_str()),
            Change::Unset(k, None) => k.as_str().to_string(),
        }
    }
}

fn invalid(m: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(m.into())
}

/// The canonical form of a list entry of `key` for `scope`, checked by the
/// configuration's own parsers.
pub fn canonical(scope: &Scope, key: Key, value: &str) -> Result<String, PolicyError> {
    let v = value.trim();
    if v.is_empty() || v.len() > MAX_ENTRY_BYTES || v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{}: an entry is 1 to {MAX_ENTRY_BYTES} bytes without control characters",
            key.as_str()
        )));
    }
    let named = |m: String| invalid(format!("{} entry refused: {m}", key.as_str()));
    match (key, scope.is_account()) {
        (Key::Allow, false) => {
            let e = AllowEntry::parse(v).map_err(named)?;
            let mut s = e.pattern.as_str().to_string();
            if !e.networks.is_empty() {
                let nets: Vec<String> = e.networks.iter().map(ToString::to_string).collect();
                s.push_str(" from ");
                s.push_str(&nets.join(", "));
            }
            Ok(s)
        }
        (Key::Allow | Key::Block | Key::Aliases, _) => {
            Ok(SenderPattern::parse(v).map_err(named)?.as_str().to_string())
        }
        _ => Err(invalid(format!("{} is not a list", key.as_str()))),
    }
}

fn threshold(key: Key, value: &str) -> Result<f64, PolicyError> {
    let x: f64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(format!("{}: `{value}` is not a number", key.as_str())))?;
    if !x.is_finite() || x.abs() > MAX_THRESHOLD {
        return Err(invalid(format!(
            "{}: must be a number within ±{MAX_THRESHOLD}",
            key.as_str()
        )));
    }
    Ok(x)
}

impl Rule {
    /// True when the rule says nothing (it is then removed from the store).
    pub fn is_empty(&self) -> bool {
        self.quarantine.is_none()
            && self.reject.is_none()
            && self.allow.is_empty()
            && self.block.is_empty()
            && self.aliases.is_empty()
            && !self.mismatch_exempt
    }

    fn list_mut(&mut self, key: Key) -> &mut Vec<String> {
        match key {
            Key::Allow => &mut self.allow,
            Key::Block => &mut self.block,
            _ => &mut self.aliases,
        }
    }

    /// Applies `change` for `scope`; the rule after it, or None when it says
    /// nothing any more. Refused changes say why (a value the configuration
    /// would refuse, a key the scope has not, a list full, a quarantine threshold
    /// above the reject threshold of the same rule).
    pub fn apply(
        rule: Option<Rule>,
        scope: &Scope,
        change: &Change,
    ) -> Result<Option<Rule>, PolicyError> {
        let mut r = rule.unwrap_or_default();
        let key = match change {
            Change::Set(k, _) | Change::Unset(k, _) => *k,
        };
        if matches!(key, Key::Aliases | Key::MismatchExempt) && !scope.is_account() {
            return Err(invalid(format!(
                "{} applies to accounts only (account:LOGIN)",
                key.as_str()
            )));
        }
        match change {
            Change::Set(Key::Quarantine, v) => r.quarantine = Some(threshold(key, v)?),
            Change::Set(Key::Reject, v) => r.reject = Some(threshold(key, v)?),
            Change::Set(Key::MismatchExempt, v) => {
                r.mismatch_exempt = match v.trim() {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => return Err(invalid("mismatch_exempt: use true or false")),
                }
            }
            Change::Set(k, v) => {
                let entry = canonical(scope, *k, v)?;
                let list = r.list_mut(*k);
                if !list.contains(&entry) {
                    if list.len() >= MAX_LIST_ENTRIES {
                        return Err(invalid(format!(
                            "{} already has {MAX_LIST_ENTRIES} entries",
                            k.as_str()
                        )));
                    }
                    list.push(entry);
                }
            }
            Change::Unset(Key::Quarantine, _) => r.quarantine = None,
            Change::Unset(Key::Reject, _) => r.reject = None,
            Change::Unset(Key::MismatchExempt, _) => r.mismatch_exempt = false,
            Change::Unset(k, None) => r.list_mut(*k).clear(),
            Change::Unset(k, Some(v)) => {
                let entry = canonical(scope, *k, v)?;
                let list = r.list_mut(*k);
                let before = list.len();
                list.retain(|e| *e != entry);
                if list.len() == before {
                    return Err(PolicyError::NotFound(format!(
                        "{scope}: {} has no entry `{entry}`",
                        k.as_str()
                    )));
                }
            }
        }
        if let (Some(q), Some(j)) = (r.quarantine, r.reject)
            && q > j
        {
            return Err(invalid(format!(
                "{scope}: quarantine ({q}) must not be above reject ({j})"
            )));
        }
        Ok((!r.is_empty()).then_some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom() -> Scope {
        Scope::Domain("b.test".into())
    }

    #[test]
    fn set_and_unset_thresholds_lists_and_flags() {
        let s = dom();
        let r = Rule::apply(None, &s, &Change::Set(Key::Quarantine, "3.5".into()))
            .unwrap()
            .unwrap();
        assert_eq!(r.quarantine, Some(3.5));
        let r = Rule::apply(Some(r), &s, &Change::Set(Key::Block, "Spam.Test".into()))
            .unwrap()
            .unwrap();
        assert_eq!(r.block, vec!["spam.test"]);
        // Adding twice keeps one.
        let r = Rule::apply(Some(r), &s, &Change::Set(Key::Block, "spam.test".into()))
            .unwrap()
            .unwrap();
        assert_eq!(r.block.len(), 1);
        let r = Rule::apply(
            Some(r),
            &s,
            &Change::Set(Key::Allow, "boss@a.test from 192.0.2.0/24".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.allow, vec!["boss@a.test from 192.0.2.0/24"]);
        assert!(matches!(
            Rule::apply(Some(r.clone()), &s, &Change::Set(Key::Reject, "2".into())),
            Err(PolicyError::Invalid(_))
        ));
        assert!(matches!(
            Rule::apply(
                Some(r.clone()),
                &s,
                &Change::Unset(Key::Block, Some("other.test".into()))
            ),
            Err(PolicyError::NotFound(_))
        ));
        let r = Rule::apply(Some(r), &s, &Change::Unset(Key::Block, None))
            .unwrap()
            .unwrap();
        let r = Rule::apply(Some(r), &s, &Change::Unset(Key::Allow, None))
            .unwrap()
            .unwrap();
        assert_eq!(
            Rule::apply(Some(r), &s, &Change::Unset(Key::Quarantine, None)).unwrap(),
            None
        );
    }

    #[test]
    fn bad_values_and_keys_are_refused() {
        let s = dom();
        for (k, v) in [
            (Key::Quarantine, "high"),
            (Key::Reject, "NaN"),
            (Key::Reject, "1e300"),
            (Key::Block, "two words"),
            (Key::Allow, "x.test from nowhere"),
            (Key::Aliases, "x.test"),
            (Key::MismatchExempt, "true"),
        ] {
            assert!(
                Rule::apply(None, &s, &Change::Set(k, v.into())).is_err(),
                "{k:?} {v}"
            );
        }
        let a = Scope::Account("alice".into());
        assert!(Rule::apply(None, &a, &Change::Set(Key::MismatchExempt, "maybe".into())).is_err());
        let r = Rule::apply(None, &a, &Change::Set(Key::Aliases, "Example.ORG".into()))
            .unwrap()
            .unwrap();
        assert_eq!(r.aliases, vec!["example.org"]);
        assert!(Key::parse("threshold").is_err());
        let mut r = Rule::default();
        for i in 0..MAX_LIST_ENTRIES {
            r.block.push(format!("d{i}.test"));
        }
        assert!(Rule::apply(Some(r), &s, &Change::Set(Key::Block, "new.test".into())).is_err());
    }
}
