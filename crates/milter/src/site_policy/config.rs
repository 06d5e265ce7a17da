//! The `[policy]` table of `chaff.toml`: the sender/login match and how often
//! the service looks for edited stored policies.

use crate::accounts::normalise_user;
use chaff::Reply;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

/// Shortest `refresh_ms`.
pub const MIN_REFRESH_MS: u64 = 100;
/// Longest `refresh_ms`.
pub const MAX_REFRESH_MS: u64 = 60_000;
/// Most accounts `mismatch_exempt` may list.
pub const MAX_EXEMPT: usize = 10_000;

/// What happens to outbound mail whose sender does not match its login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MismatchAction {
    /// Not checked (the default).
    #[default]
    Off,
    /// `mismatch_points` are added to the score (the thresholds then decide).
    Points,
    /// Held, whatever the score.
    Quarantine,
    /// Refused with `mismatch_reply`, whatever the score.
    Reject,
}

impl MismatchAction {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchAction::Off => "off",
            MismatchAction::Points => "points",
            MismatchAction::Quarantine => "quarantine",
            MismatchAction::Reject => "reject",
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// What happens to authenticated mail whose envelope sender or `From:`
    /// domain is not the login's (see `site_policy::mismatch`).
    pub sender_mismatch: MismatchAction,
    /// Points added with `sender_mismatch = "points"`.
    pub mismatch_points: f64,
    /// The reply with `sender_mismatch = "reject"` (5xx).
    pub mismatch_reply: String,
    /// The domain of bare logins (`alice`); unset, `[accounts] realm`.
    pub default_domain: Option<String>,
    /// Logins never checked (relays, list servers).
    pub mismatch_exempt: Vec<String>,
    /// How stale the service's copy of the stored policies may be, in
    /// milliseconds: a `chaff policy` edit applies within this (an edit through
    /// the admin API at once).
    pub refresh_ms: u64,
}

/// The default `mismatch_reply`.
pub const DEFAULT_MISMATCH_REPLY: &str =
    "553 5.7.1 sender address not owned by the authenticated account";

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            sender_mismatch: MismatchAction::Off,
            mismatch_points: 5.0,
            mismatch_reply: DEFAULT_MISMATCH_REPLY.into(),
            default_domain: None,
            mismatch_exempt: Vec::new(),
            refresh_ms: 1000,
        }
    }
}

/// `[policy]` checked, as the service uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `sender_mismatch`.
    pub mismatch: MismatchAction,
    /// `mismatch_points`.
    pub points: f64,
    /// `mismatch_reply`, parsed.
    pub reply: Reply,
    /// `default_domain`, else `[accounts] realm`, lower case.
    pub default_domain: Option<String>,
    /// `mismatch_exempt`, as account keys.
    pub exempt: HashSet<String>,
    /// `[accounts] realm`, to name accounts as the lock store does.
    pub realm: Option<String>,
    /// `refresh_ms`.
    pub refresh: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        PolicyConfig::default()
            .checked(None)
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl PolicyConfig {
    /// Checks the values (`realm` is `[accounts] realm`); on error the field and why.
    pub fn checked(&self, realm: Option<&str>) -> Result<Policy, (&'static str, String)> {
        if !self.mismatch_points.is_finite() || self.mismatch_points.abs() > 1000.0 {
            return Err((
                "policy.mismatch_points",
                "must be a number within ±1000".into(),
            ));
        }
        let reply = Reply::parse(&self.mismatch_reply)
            .map_err(|e| ("policy.mismatch_reply", e.to_string()))?;
        if !reply.as_str().starts_with('5') {
            return Err((
                "policy.mismatch_reply",
                "must be a permanent (5xx) reply".into(),
            ));
        }
        if let Some(d) = &self.default_domain
            && (d.trim().is_empty() || d.contains(['@', '*']) || d.contains(char::is_whitespace))
        {
            return Err((
                "policy.default_domain",
                "must be a domain, such as `example.com`".into(),
            ));
        }
        if self.mismatch_exempt.len() > MAX_EXEMPT {
            return Err((
                "policy.mismatch_exempt",
                format!("at most {MAX_EXEMPT} logins"),
            ));
        }
        if self
            .mismatch_exempt
            .iter()
            .any(|l| l.trim().is_empty() || l.contains(char::is_whitespace))
        {
            return Err((
                "policy.mismatch_exempt",
                "a login is empty or has spaces".into(),
            ));
        }
        if !(MIN_REFRESH_MS..=MAX_REFRESH_MS).contains(&self.refresh_ms) {
            return Err((
                "policy.refresh_ms",
                format!("must be between {MIN_REFRESH_MS} and {MAX_REFRESH_MS}"),
            ));
        }
        Ok(Policy {
            mismatch: self.sender_mismatch,
            points: self.mismatch_points,
            reply,
            default_domain: self
                .default_domain
                .as_deref()
                .or(realm)
                .map(|d| d.trim().trim_end_matches('.').to_lowercase()),
            exempt: self
                .mismatch_exempt
                .iter()
                .map(|l| normalise_user(l, realm))
                .collect(),
            realm: realm.map(str::to_string),
            refresh: Duration::from_millis(self.refresh_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_name_their_field() {
        let p = PolicyConfig::default()
            .checked(Some("Example.com"))
            .unwrap();
        assert_eq!(p.mismatch, MismatchAction::Off);
        assert_eq!(p.default_domain.as_deref(), Some("example.com"));
        let bad = |c: PolicyConfig| c.checked(None).unwrap_err().0;
        let d = PolicyConfig::default;
        assert_eq!(
            bad(PolicyConfig {
                mismatch_reply: "250 ok".into(),
                ..d()
            }),
            "policy.mismatch_reply"
        );
        assert_eq!(
            bad(PolicyConfig {
                mismatch_points: f64::NAN,
                ..d()
            }),
            "policy.mismatch_points"
        );
        assert_eq!(
            bad(PolicyConfig {
                refresh_ms: 10,
                ..d()
            }),
            "policy.refresh_ms"
        );
        assert_eq!(
            bad(PolicyConfig {
                default_domain: Some("a@b".into()),
                ..d()
            }),
            "policy.default_domain"
        );
        let p = PolicyConfig {
            mismatch_exempt: vec!["Relay@example.com".into()],
            ..d()
        }
        .checked(Some("example.com"))
        .unwrap();
        assert!(p.exempt.contains("relay"));
    }
}
