//! What a stored policy applies to: a recipient domain or a recipient address
//! (inbound mail), or an authenticated account (outbound mail), written
//! `domain:example.com`, `recipient:ceo@example.com`, `account:alice`.

use crate::accounts::normalise_user;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest scope name, in bytes (an address is at most 320 bytes, RFC 5321 4.5.3.1).
pub const MAX_SCOPE_BYTES: usize = 330;

/// What a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// Inbound mail to any address of this domain (lower case, no trailing dot).
    Domain(String),
    /// Inbound mail to this address (lower case).
    Recipient(String),
    /// Outbound mail sent by this account (its lock-store key: lower case, and
    /// `USER@REALM` as `USER` with `[accounts] realm`).
    Account(String),
}

impl Scope {
    /// Reads `domain:D`, `recipient:ADDRESS` or `account:LOGIN`; `realm` is
    /// `[accounts] realm`, so an account is named as the lock store names it.
    pub fn parse(text: &str, realm: Option<&str>) -> Result<Scope, String> {
        let text = text.trim();
        if text.len() > MAX_SCOPE_BYTES || text.chars().any(|c| c.is_control()) {
            return Err(format!(
                "a scope is at most {MAX_SCOPE_BYTES} bytes without control characters"
            ));
        }
        let (kind, name) = text.split_once(':').ok_or_else(|| {
            format!(
                "`{text}` is not a scope: write domain:DOMAIN, recipient:ADDRESS or account:LOGIN"
            )
        })?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!(
                "`{text}`: the name after `{kind}:` is empty or has spaces"
            ));
        }
        match kind.trim().to_ascii_lowercase().as_str() {
            "domain" => {
                let d = name.trim_end_matches('.').to_lowercase();
                if d.is_empty() || d.contains(['@', '*', '?', '/']) {
                    return Err(format!("`{name}` is not a domain"));
                }
                Ok(Scope::Domain(d))
            }
            "recipient" => {
                let a = name.trim_matches(['<', '>']).to_lowercase();
                match a.rsplit_once('@') {
                    Some((l, d)) if !l.is_empty() && !d.is_empty() && !a.contains(['*', '?']) => {
                        Ok(Scope::Recipient(a))
                    }
                    _ => Err(format!("`{name}` is not an address (local@domain)")),
                }
            }
            "account" => Ok(Scope::Account(normalise_user(name, realm))),
            other => Err(format!(
                "`{other}` is not a scope kind: use domain, recipient or account"
            )),
        }
    }

    /// True for an account (outbound) scope.
    pub fn is_account(&self) -> bool {
        matches!(self, Scope::Account(_))
    }

    /// `domain`, `recipient` or `account`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Domain(_) => "domain",
            Scope::Recipient(_) => "recipient",
            Scope::Account(_) => "account",
        }
    }

    /// The name after the kind.
    pub fn name(&self) -> &str {
        match self {
            Scope::Domain(n) | Scope::Recipient(n) | Scope::Account(n) => n,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.name())
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    /// Stored scopes are already normalised: no realm is applied again.
    fn try_from(s: String) -> Result<Scope, String> {
        Scope::parse(&s, None)
    }
}

/// The domain of a recipient address (lower case, no angle brackets), or None.
pub fn domain_of(address: &str) -> Option<String> {
    let a = address.trim().trim_matches(['<', '>']);
    let (_, d) = a.rsplit_once('@')?;
    let d = d.trim_end_matches('.');
    (!d.is_empty()).then(|| d.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_read_normalised_and_printed_back() {
        let s = Scope::parse("domain:Example.COM.", None).unwrap();
        assert_eq!(s, Scope::Domain("example.com".into()));
        assert_eq!(s.to_string(), "domain:example.com");
        assert_eq!(
            Scope::parse("recipient:<CEO@Example.com>", None).unwrap(),
            Scope::Recipient("ceo@example.com".into())
        );
        assert_eq!(
            Scope::parse("account:Alice@example.com", Some("example.com")).unwrap(),
            Scope::Account("alice".into())
        );
        for bad in [
            "example.com",
            "domain:",
            "domain:a@b",
            "recipient:nobody",
            "recipient:*@x.test",
            "host:x",
            "account:a b",
        ] {
            assert!(Scope::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Scope::parse(&format!("domain:{}", "a".repeat(400)), None).is_err());
        assert_eq!(domain_of("<Bob@X.Test>").as_deref(), Some("x.test"));
        assert_eq!(domain_of("bob"), None);
    }
}
