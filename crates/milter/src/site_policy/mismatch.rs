//! "Sender must match the login": the domains an authenticated account may send
//! as, and the check of a message's envelope sender and `From:` header against
//! them.
//!
//! An account's own domain is its login's (`alice@example.com`), or for a bare
//! login (`alice`, or `alice@REALM` with `[accounts] realm`, the SASL realm)
//! `[policy] default_domain` (else `[accounts] realm`); with
//! neither, a bare login has no domain and is not checked. The sender matches
//! when its domain is the account's (case-insensitive) or it matches one of the
//! account's stored `aliases` (an address, a domain with its subdomains, or a
//! wildcard, as `[senders]` patterns). A null envelope sender (a bounce) is not
//! compared; the `From:` header always is.

use chaff::config::SenderPattern;
use chaff::text::header_end;

/// Most bytes of the `From:` header read (a longer one is read this far).
pub const MAX_FROM_BYTES: usize = 4096;
/// Most addresses of a `From:` header compared.
pub const MAX_FROM_ADDRESSES: usize = 16;

/// What did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The account's own domain.
    pub account_domain: String,
    /// The envelope sender, when it does not match.
    pub envelope: Option<String>,
    /// The `From:` address, when it does not match.
    pub from: Option<String>,
}

impl Mismatch {
    /// Symbol options: the login's domain, then `mail_from=…` and `from=…`.
    pub fn options(&self, login: &str) -> Vec<String> {
        let mut o = vec![login.to_string(), format!("domain={}", self.account_domain)];
        if let Some(e) = &self.envelope {
            o.push(format!("mail_from={e}"));
        }
        if let Some(f) = &self.from {
            o.push(format!("from={f}"));
        }
        o
    }
}

/// The domain of `login`: its own, or `default` for a bare login.
pub fn account_domain(login: &str, default: Option<&str>) -> Option<String> {
    match login.trim().rsplit_once('@') {
        Some((_, d)) if !d.is_empty() => Some(d.trim_end_matches('.').to_lowercase()),
        _ => default
            .map(|d| d.trim().trim_end_matches('.').to_lowercase())
            .filter(|d| !d.is_empty()),
    }
}

fn matches(address: &str, domain: &str, aliases: &[SenderPattern]) -> bool {
    let a = address.trim().trim_matches(['<', '>']).to_lowercase();
    let own = a
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.trim_end_matches('.') == domain);
    own || aliases.iter().any(|p| p.matches(&a))
}

/// Checks the envelope `sender` and the `From:` addresses of `raw` against the
/// account's `domain` and `aliases`; None when everything matches.
pub fn check(
    domain: &str,
    aliases: &[SenderPattern],
    sender: Option<&str>,
    raw: &[u8],
) -> Option<Mismatch> {
    let envelope = sender
        .map(|s| s.trim().trim_matches(['<', '>']))
        .filter(|s| !s.is_empty())
        .filter(|s| !matches(s, domain, aliases))
        .map(str::to_lowercase);
    let from = from_addresses(raw)
        .into_iter()
        .find(|a| !matches(a, domain, aliases));
    (envelope.is_some() || from.is_some()).then(|| Mismatch {
        account_domain: domain.to_string(),
        envelope,
        from,
    })
}

/// The addresses of the first `From:` header of `raw` (unfolded; quoted
/// strings and comments skipped, so a display name cannot pose as an address).
/// A header without any address yields none.
pub fn from_addresses(raw: &[u8]) -> Vec<String> {
    let head = &raw[..header_end(raw).0.min(raw.len())];
    let Some(value) = header_value(head, b"from") else {
        return Vec::new();
    };
    let mut plain = String::with_capacity(value.len());
    let mut chars = value.chars();
    let (mut quoted, mut depth) = (false, 0u32);
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted || depth > 0 => {
                chars.next();
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                plain.push(' ');
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if quoted || depth > 0 => {}
            _ => plain.push(c),
        }
    }
    let mut out = Vec::new();
    for part in plain.split([',', ';']) {
        let addr = match (part.rfind('<'), part.rfind('>')) {
            (Some(l), Some(r)) if l < r => &part[l + 1..r],
            _ => part.trim().rsplit(':').next().unwrap_or(""),
        };
        let addr = addr.trim();
        if addr.contains('@') && !addr.contains(char::is_whitespace) {
            out.push(addr.to_lowercase());
            if out.len() >= MAX_FROM_ADDRESSES {
                break;
            }
        }
    }
    out
}

/// The unfolded value of the first header `name` (lower case) in `head`, at
/// most [`MAX_FROM_BYTES`], lossily decoded.
fn header_value(head: &[u8], name: &[u8]) -> Option<String> {
    let mut lines = head.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].trim_ascii().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut v = line[colon + 1..].to_vec();
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') && v.len() < MAX_FROM_BYTES {
                v.push(b' ');
                v.extend_from_slice(next);
                lines.next();
            } else {
                break;
            }
        }
        v.truncate(MAX_FROM_BYTES);
        return Some(String::from_utf8_lossy(&v).replace('\r', ""));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(from: &str) -> Vec<u8> {
        format!("Subject: x\r\nFrom: {from}\r\nTo: y@z.test\r\n\r\nbody\r\n").into_bytes()
    }

    #[test]
    fn from_addresses_skip_names_quotes_and_comments() {
        assert_eq!(
            from_addresses(&mail("\"bob@evil.test\" <Alice@Example.com>")),
            vec!["alice@example.com"]
        );
        assert_eq!(
            from_addresses(&mail("alice@example.com (bob@evil.test)")),
            vec!["alice@example.com"]
        );
        assert_eq!(
            from_addresses(&mail("A <a@x.test>, b@y.test")),
            vec!["a@x.test", "b@y.test"]
        );
        assert_eq!(
            from_addresses(b"From: Alice\r\n <alice@x.test>\r\n\r\n"),
            vec!["alice@x.test"]
        );
        assert!(from_addresses(b"Subject: none\r\n\r\nFrom: a@b.test\r\n").is_empty());
        assert!(from_addresses(&mail("undisclosed")).is_empty());
    }

    #[test]
    fn domains_of_logins() {
        assert_eq!(
            account_domain("alice@Example.COM", None).as_deref(),
            Some("example.com")
        );
        assert_eq!(
            account_domain("alice", Some("site.test")).as_deref(),
            Some("site.test")
        );
        assert_eq!(account_domain("alice", None), None);
    }

    #[test]
    fn envelope_and_from_are_checked_with_aliases() {
        let raw = mail("Alice <alice@example.com>");
        assert_eq!(
            check("example.com", &[], Some("alice@example.com"), &raw),
            None
        );
        assert_eq!(check("example.com", &[], None, &raw), None);
        let m = check("example.com", &[], Some("ceo@bank.test"), &raw).unwrap();
        assert_eq!(m.envelope.as_deref(), Some("ceo@bank.test"));
        assert_eq!(m.from, None);
        let spoof = mail("CEO <ceo@bank.test>");
        let m = check("example.com", &[], Some("alice@example.com"), &spoof).unwrap();
        assert_eq!(m.from.as_deref(), Some("ceo@bank.test"));
        // An alias domain (with subdomains) or address lets it through.
        let aliases = [SenderPattern::parse("bank.test").unwrap()];
        assert_eq!(
            check("example.com", &aliases, Some("x@mail.bank.test"), &spoof),
            None
        );
        let one = [SenderPattern::parse("ceo@bank.test").unwrap()];
        assert!(check("example.com", &one, Some("cfo@bank.test"), &spoof).is_some());
        // A subdomain of the account's domain is not the account's domain.
        assert!(check("example.com", &[], Some("a@sub.example.com"), &raw).is_some());
    }
}
