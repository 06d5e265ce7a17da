//! Route: from score and envelope to an action, a reply and a reason. Its
//! pre-scan runs before any content is read ([`pre_scan`]: size, block list, and
//! whether an allow entry is proven), the rest last ([`route`]).
//!
//! Policy is kept apart from scoring so that the same score can mean different
//! things for inbound mail and for outbound mail from the site's own accounts.
//!
//! The allow list is trusted only with proof an attacker cannot forge (see
//! [`AllowEntry`]): the client's network, or a DKIM, SPF or DMARC pass in an
//! `Authentication-Results` header written by the site's own MTA (a configured
//! authserv-id), or, where the admin opted in (`allow_unverified`), the envelope
//! sender alone. It applies to inbound mail only: authenticated (outbound) mail is
//! judged by its account, whatever sender it claims. An allowed message is still
//! scanned; it is only never refused.

use crate::auth_results::{self, AuthResults};
use crate::config::{AllowEntry, Config, Thresholds};
use crate::reply::Reply;
use crate::text::header_end;
use crate::verdict::{Action, AllowProof, Envelope, Reason, Verdict};

/// An allow entry that applies to a message, and its proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The entry's sender pattern.
    pub entry: String,
    /// What proved it.
    pub proof: AllowProof,
    /// The pattern is one exact address (it beats a blocked domain).
    pub exact: bool,
}

/// What the pre-scan decided.
#[derive(Debug, Clone, PartialEq)]
pub enum PreScan {
    /// Decided without reading the content: oversize or block-listed.
    Decided(Action, Option<Reply>, Reason),
    /// The content decides; `Some` when a proven allow entry applies (the message
    /// is then delivered whatever its score).
    Scan(Option<Allowed>),
}

/// The decision before any content is read: oversize mail, blocked senders, and
/// the allow entry (if any) that applies. `raw` is the whole message (only its
/// header block is read, and only when an allow entry's pattern matches).
pub fn pre_scan(cfg: &Config, env: &Envelope, raw: &[u8]) -> PreScan {
    pre_scan_sized(cfg, env, raw, Some(raw.len() as u64))
}

/// [`pre_scan`] for a message of which `raw` was read: all of it, or, over the
/// size limit, its first bytes (or none). `size` is its full size when known;
/// `None` when reading stopped past the limit unmeasured.
pub fn pre_scan_sized(cfg: &Config, env: &Envelope, raw: &[u8], size: Option<u64>) -> PreScan {
    let (size, size_unknown) = match size {
        Some(n) => (
            usize::try_from(n).unwrap_or(usize::MAX).max(raw.len()),
            false,
        ),
        None => (raw.len(), raw.len() > cfg.max_message_size),
    };
    if size > cfg.max_message_size {
        return PreScan::Decided(
            Action::Reject,
            Some(cfg.oversize_reply.clone()),
            Reason::Oversize {
                size,
                limit: cfg.max_message_size,
                size_unknown,
            },
        );
    }
    let allowed = allowed(cfg, env, raw);
    // A proven exact allowed address beats a blocked domain; otherwise blocking
    // wins. The block list matches the envelope sender in both directions: a
    // forged blocked sender only hurts the forger.
    if !allowed.as_ref().is_some_and(|a| a.exact)
        && let Some(sender) = env.sender.as_deref().filter(|s| !s.is_empty())
        && let Some(entry) = cfg.block.iter().find(|p| p.matches(sender))
    {
        return PreScan::Decided(
            Action::Reject,
            Some(cfg.reject_reply.clone()),
            Reason::BlockListed {
                entry: entry.as_str().to_string(),
            },
        );
    }
    PreScan::Scan(allowed)
}

/// The allow entry that applies to an inbound message, with its proof: exact
/// addresses first, then the other entries, each in the order written; the first
/// whose pattern matches the envelope sender and whose proof holds.
pub fn allowed(cfg: &Config, env: &Envelope, raw: &[u8]) -> Option<Allowed> {
    allowed_among(cfg, &cfg.allow, env, raw)
}

/// [`allowed`] among `entries` instead of the configuration's own list, with the
/// same proof rules (the configuration's networks, authserv-ids and
/// `allow_unverified`): for allow lists kept elsewhere (a service's per-domain
/// policy).
pub fn allowed_among(
    cfg: &Config,
    entries: &[AllowEntry],
    env: &Envelope,
    raw: &[u8],
) -> Option<Allowed> {
    if env.is_outbound() || entries.is_empty() {
        return None;
    }
    let sender = env.sender.as_deref().filter(|s| !s.is_empty())?;
    let mut results: Option<Vec<AuthResults>> = None;
    let exact = |e: &&AllowEntry| e.pattern.is_exact_address();
    let ordered = entries
        .iter()
        .filter(exact)
        .chain(entries.iter().filter(|e| !exact(e)));
    for entry in ordered {
        if !entry.pattern.matches(sender) {
            continue;
        }
        let results = results.get_or_insert_with(|| trusted_results(cfg, raw));
        if let Some(proof) = proof(cfg, entry, env, sender, results) {
            return Some(Allowed {
                entry: entry.pattern.as_str().to_string(),
                proof,
                exact: entry.pattern.is_exact_address(),
            });
        }
    }
    None
}

/// The message's `Authentication-Results` headers written by the site's own MTA.
fn trusted_results(cfg: &Config, raw: &[u8]) -> Vec<AuthResults> {
    if cfg.authserv_ids.is_empty() {
        return Vec::new();
    }
    let mut all = auth_results::from_headers(&raw[..header_end(raw).0]);
    all.retain(|a| {
        cfg.authserv_ids
            .iter()
            .any(|id| id.eq_ignore_ascii_case(&a.authserv_id))
    });
    all
}

/// The first proof that holds for an entry whose pattern matched `sender`.
fn proof(
    cfg: &Config,
    entry: &AllowEntry,
    env: &Envelope,
    sender: &str,
    results: &[AuthResults],
) -> Option<AllowProof> {
    if let Some(ip) = env.client_addr
        && entry.networks.iter().any(|n| n.contains(ip))
    {
        return Some(AllowProof::Network);
    }
    let sender = sender.trim().trim_matches(['<', '>']).to_ascii_lowercase();
    let domain = sender.rsplit_once('@').map_or("", |(_, d)| d);
    // The authenticated domain vouches for the sender's domain: the same, or a
    // parent of it (relaxed alignment, as DMARC has it).
    let vouches = |d: &str| {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        let d = d.rsplit_once('@').map_or(d.as_str(), |(_, d)| d);
        !d.is_empty()
            && !domain.is_empty()
            && (domain == d
                || domain
                    .strip_suffix(d)
                    .is_some_and(|rest| rest.ends_with('.')))
    };
    for (want, proof) in [
        ("dkim", AllowProof::Dkim),
        ("spf", AllowProof::Spf),
        ("dmarc", AllowProof::Dmarc),
    ] {
        let passed = results
            .iter()
            .flat_map(|a| &a.results)
            .filter(|r| r.method == want && r.result == "pass")
            .any(|r| match proof {
                AllowProof::Dkim => ["header.d", "header.i"]
                    .iter()
                    .any(|p| r.property(p).is_some_and(vouches)),
                // SPF checked the envelope sender itself: the address, or its
                // domain when the MTA wrote only the domain.
                AllowProof::Spf => r.property("smtp.mailfrom").is_some_and(|m| {
                    let m = m.trim().trim_matches(['<', '>']).to_ascii_lowercase();
                    if m.contains('@') {
                        m == sender
                    } else {
                        !m.is_empty() && m == domain
                    }
                }),
                _ => r.property("header.from").is_some_and(vouches),
            });
        if passed {
            return Some(proof);
        }
    }
    cfg.allow_unverified.then_some(AllowProof::Unverified)
}

/// The action for a content score; a proven allow entry delivers whatever the
/// score.
pub fn route(
    cfg: &Config,
    env: &Envelope,
    score: f64,
    allowed: Option<&Allowed>,
) -> (Action, Option<Reply>, Reason) {
    if let Some(a) = allowed {
        return (
            Action::Deliver,
            None,
            Reason::AllowListed {
                entry: a.entry.clone(),
                proof: a.proof,
            },
        );
    }
    by_score(cfg, cfg.thresholds_for(env.is_outbound()), score)
}

/// The action for a content score under thresholds `t`.
pub fn by_score(cfg: &Config, t: Thresholds, score: f64) -> (Action, Option<Reply>, Reason) {
    let reason = Reason::Score {
        quarantine: t.quarantine,
        reject: t.reject,
    };
    if score >= t.reject {
        (Action::Reject, Some(cfg.reject_reply.clone()), reason)
    } else if score >= t.quarantine {
        (Action::Quarantine, None, reason)
    } else {
        (Action::Deliver, None, reason)
    }
}

/// The verdict when a scan failed: the configured `on_error` action.
pub fn failed(cfg: &Config, error: String) -> Verdict {
    Verdict {
        action: cfg.on_error,
        score: 0.0,
        reply: (cfg.on_error == Action::Reject).then(|| cfg.reject_reply.clone()),
        reason: Reason::Failed { error },
        hits: Vec::new(),
        tokens: Vec::new(),
        truncated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SenderPattern;

    fn env(sender: &str, auth: Option<&str>) -> Envelope {
        Envelope {
            sender: Some(sender.into()),
            auth_user: auth.map(str::to_string),
            ..Envelope::default()
        }
    }

    #[test]
    fn thresholds_by_direction() {
        let cfg = Config {
            thresholds: Thresholds {
                quarantine: 5.0,
                reject: 10.0,
            },
            outbound: Some(Thresholds {
                quarantine: 2.0,
                reject: 4.0,
            }),
            ..Config::default()
        };
        let inbound = env("a@x.test", None);
        let outbound = env("a@x.test", Some("alice"));
        assert_eq!(route(&cfg, &inbound, 4.5, None).0, Action::Deliver);
        assert_eq!(route(&cfg, &outbound, 4.5, None).0, Action::Reject);
        assert_eq!(route(&cfg, &inbound, 5.0, None).0, Action::Quarantine);
        let (action, reply, _) = route(&cfg, &inbound, 10.0, None);
        assert_eq!(action, Action::Reject);
        assert_eq!(reply.unwrap(), "557 5.7.1 forbid to send spam mail");
    }

    fn cfg(allow: &[&str], ids: &[&str]) -> Config {
        Config {
            max_message_size: 1000,
            block: vec![SenderPattern::parse("spam.test").unwrap()],
            allow: allow
                .iter()
                .map(|a| AllowEntry::parse(a).unwrap())
                .collect(),
            authserv_ids: ids.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    fn from(sender: &str, ip: &str) -> Envelope {
        Envelope {
            client_addr: Some(ip.parse().unwrap()),
            ..env(sender, None)
        }
    }

    fn allowed_by(cfg: &Config, env: &Envelope, raw: &str) -> Option<(String, AllowProof)> {
        match pre_scan(cfg, env, raw.as_bytes()) {
            PreScan::Scan(a) => a.map(|a| (a.entry, a.proof)),
            PreScan::Decided(..) => None,
        }
    }

    const BODY: &str = "Subject: hi\r\n\r\nbody\r\n";

    #[test]
    fn oversize_and_block() {
        let cfg = cfg(&["boss@spam.test from 192.0.2.0/24", "*.friend.test"], &[]);
        let PreScan::Decided(a, reply, _) = pre_scan(&cfg, &Envelope::default(), &[b'x'; 1001])
        else {
            panic!("oversize not decided");
        };
        assert_eq!(a, Action::Reject);
        assert_eq!(reply.unwrap(), "552 5.3.4 Message size exceeds fixed limit");
        let blocked = |e: &Envelope| {
            matches!(
                pre_scan(&cfg, e, BODY.as_bytes()),
                PreScan::Decided(Action::Reject, _, Reason::BlockListed { .. })
            )
        };
        assert!(blocked(&env("x@spam.test", None)));
        assert!(blocked(&env("x@spam.test", Some("alice"))));
        // The exact allowed address beats the blocked domain only with its proof.
        assert!(blocked(&from("boss@spam.test", "198.51.100.1")));
        assert!(!blocked(&from("boss@spam.test", "192.0.2.9")));
        assert_eq!(
            pre_scan(&cfg, &env("a@other.test", None), BODY.as_bytes()),
            PreScan::Scan(None)
        );
    }

    #[test]
    fn a_forged_sender_is_not_allowed() {
        let cfg = cfg(
            &["ceo@example.com", "example.org from 192.0.2.0/24"],
            &["mx.site.test"],
        );
        assert_eq!(
            allowed_by(&cfg, &from("ceo@example.com", "198.51.100.7"), BODY),
            None
        );
        assert_eq!(allowed_by(&cfg, &env("ceo@example.com", None), BODY), None);
        assert_eq!(
            allowed_by(&cfg, &from("a@example.org", "198.51.100.7"), BODY),
            None
        );
        assert_eq!(
            allowed_by(&cfg, &from("a@mail.example.org", "192.0.2.200"), BODY),
            Some(("example.org".into(), AllowProof::Network))
        );
    }

    #[test]
    fn trusted_authentication_results_prove_the_sender() {
        let cfg = cfg(&["ceo@example.com", "partner.test"], &["MX.site.test"]);
        let ar = |v: &str| format!("Authentication-Results: {v}\r\n{BODY}");
        let ceo = from("ceo@example.com", "198.51.100.7");
        let dkim = ar("mx.site.test; dkim=pass (ok) header.d=example.com header.s=x");
        assert_eq!(
            allowed_by(&cfg, &ceo, &dkim),
            Some(("ceo@example.com".into(), AllowProof::Dkim))
        );
        // The same header from anyone else is ignored.
        let foreign = ar("mx.attacker.test; dkim=pass header.d=example.com");
        assert_eq!(allowed_by(&cfg, &ceo, &foreign), None);
        // A pass for another domain, or a failure, proves nothing.
        for v in [
            "mx.site.test; dkim=pass header.d=attacker.test",
            "mx.site.test; dkim=pass header.d=notexample.com",
            "mx.site.test; dkim=fail header.d=example.com",
            "mx.site.test; spf=pass smtp.mailfrom=other@example.com",
            "mx.site.test; dmarc=pass header.from=attacker.test",
            "mx.site.test; none",
        ] {
            assert_eq!(allowed_by(&cfg, &ceo, &ar(v)), None, "{v}");
        }
        for (v, proof) in [
            (
                "mx.site.test; dkim=pass header.i=@example.com",
                AllowProof::Dkim,
            ),
            (
                "mx.site.test; spf=pass smtp.mailfrom=CEO@example.com",
                AllowProof::Spf,
            ),
            (
                "mx.site.test; spf=pass smtp.mailfrom=example.com",
                AllowProof::Spf,
            ),
            (
                "mx.site.test; dmarc=pass header.from=example.com",
                AllowProof::Dmarc,
            ),
        ] {
            assert_eq!(
                allowed_by(&cfg, &ceo, &ar(v)),
                Some(("ceo@example.com".into(), proof)),
                "{v}"
            );
        }
        // A domain entry: a signature of the parent domain vouches for a subdomain.
        let sub = from("news@mail.partner.test", "198.51.100.7");
        let v = ar("mx.site.test; dkim=pass header.d=partner.test");
        assert_eq!(
            allowed_by(&cfg, &sub, &v),
            Some(("partner.test".into(), AllowProof::Dkim))
        );
        // No authserv-id configured: no header is trusted.
        let none = super::tests::cfg(&["ceo@example.com"], &[]);
        assert_eq!(allowed_by(&none, &ceo, &dkim), None);
        // Headers in the body are not headers.
        let body = format!(
            "{BODY}Authentication-Results: mx.site.test; dkim=pass header.d=example.com\r\n"
        );
        assert_eq!(allowed_by(&cfg, &ceo, &body), None);
    }

    #[test]
    fn outbound_mail_is_never_allowed_and_unverified_is_opt_in() {
        let mut cfg = cfg(&["ceo@example.com from 0.0.0.0/0"], &["mx.site.test"]);
        let outbound = Envelope {
            client_addr: Some("192.0.2.1".parse().unwrap()),
            ..env("ceo@example.com", Some("mallory"))
        };
        assert_eq!(allowed_by(&cfg, &outbound, BODY), None);
        cfg.allow_unverified = true;
        assert_eq!(allowed_by(&cfg, &outbound, BODY), None);
        cfg.allow = vec![AllowEntry::parse("ceo@example.com").unwrap()];
        assert_eq!(
            allowed_by(&cfg, &env("ceo@example.com", None), BODY),
            Some(("ceo@example.com".into(), AllowProof::Unverified))
        );
        assert_eq!(allowed_by(&cfg, &env("x@example.com", None), BODY), None);
    }

    #[test]
    fn an_allowed_message_is_delivered_whatever_its_score() {
        let cfg = Config::default();
        let a = Allowed {
            entry: "ceo@example.com".into(),
            proof: AllowProof::Dkim,
            exact: true,
        };
        let (action, reply, reason) = route(&cfg, &Envelope::default(), 100.0, Some(&a));
        assert_eq!((action, reply), (Action::Deliver, None));
        assert_eq!(
            reason,
            Reason::AllowListed {
                entry: "ceo@example.com".into(),
                proof: AllowProof::Dkim
            }
        );
        assert_eq!(
            route(&cfg, &Envelope::default(), 100.0, None).0,
            Action::Reject
        );
    }
}
