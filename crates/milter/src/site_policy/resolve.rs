//! The stored policies compiled for lookups ([`PolicySet`]), and their
//! application to one scanned message ([`apply`]).
//!
//! Inbound, each recipient's stance is layered: its address's rule, else its
//! domain's, else the configuration, field by field (a recipient rule that sets
//! only `reject` keeps its domain's `quarantine`); its block and allow entries
//! are those of both rules (the configuration's `[senders]` lists were applied
//! by the engine already). The recipients' stances are then merged into the
//! strictest ([`Stance::merge`]). Outbound, the account's rule is layered over
//! `[outbound]` (or `[thresholds]`); its block list refuses mail to a matching
//! recipient, and its allow list delivers mail whose every recipient matches.
//!
//! Then: blocked → refused as block-listed; allowed → delivered as allow-listed;
//! else the verdict is routed again under the merged thresholds
//! ([`chaff::Engine::route_under`], with the sender/login mismatch's points).
//! Last, a mismatch with `quarantine` or `reject` makes the action at least
//! that. Only verdicts decided by score or an allow entry are touched (not
//! oversize, block-listed or failed scans). A message no rule concerns and no
//! mismatch check applies to is left exactly as the engine routed it.

use super::config::{MismatchAction, Policy};
use super::mismatch;
use super::rule::Rule;
use super::scope::{Scope, domain_of};
use super::stance::Stance;
use crate::accounts::normalise_user;
use chaff::config::{AllowEntry, SenderPattern, Thresholds};
use chaff::{Action, AllowProof, Engine, Envelope, Reason, Verdict};
use std::collections::HashMap;
use tracing::warn;

/// One stored rule, parsed.
#[derive(Debug, Clone, Default)]
struct Compiled {
    scope: String,
    quarantine: Option<f64>,
    reject: Option<f64>,
    /// Inbound scopes: `[senders] allow` entries.
    allow_in: Vec<AllowEntry>,
    /// Account scopes: recipient patterns.
    allow_out: Vec<SenderPattern>,
    block: Vec<SenderPattern>,
    aliases: Vec<SenderPattern>,
    mismatch_exempt: bool,
}

/// The stored policies as the service applies them, at one store revision.
#[derive(Debug, Default)]
pub struct PolicySet {
    revision: u64,
    domains: HashMap<String, Compiled>,
    recipients: HashMap<String, Compiled>,
    accounts: HashMap<String, Compiled>,
}

impl PolicySet {
    /// Compiles `rules` (at store revision `revision`). An entry that no longer
    /// parses (written by another version) is left out with a warning.
    pub fn new(revision: u64, rules: &[(Scope, Rule)]) -> PolicySet {
        let mut set = PolicySet {
            revision,
            ..PolicySet::default()
        };
        for (scope, r) in rules {
            let name = scope.to_string();
            let mut c = Compiled {
                scope: name.clone(),
                quarantine: r.quarantine,
                reject: r.reject,
                mismatch_exempt: r.mismatch_exempt,
                ..Compiled::default()
            };
            let pattern = |e: &String| {
                SenderPattern::parse(e)
                    .inspect_err(|m| warn!(scope = name, entry = e, "stored entry skipped: {m}"))
                    .ok()
            };
            c.block = r.block.iter().filter_map(pattern).collect();
            c.aliases = r.aliases.iter().filter_map(pattern).collect();
            if scope.is_account() {
                c.allow_out = r.allow.iter().filter_map(pattern).collect();
            } else {
                c.allow_in = r
                    .allow
                    .iter()
                    .filter_map(|e| {
                        AllowEntry::parse(e)
                            .inspect_err(|m| {
                                warn!(scope = name, entry = e, "stored entry skipped: {m}")
                            })
                            .ok()
                    })
                    .collect();
            }
            let map = match scope {
                Scope::Domain(_) => &mut set.domains,
                Scope::Recipient(_) => &mut set.recipients,
                Scope::Account(_) => &mut set.accounts,
            };
            map.insert(scope.name().to_string(), c);
        }
        set
    }

    /// The store revision compiled.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.domains.len() + self.recipients.len() + self.accounts.len()
    }

    /// True when no rule is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A policy's part in a decision, for explanations (the Rspamd reply's
/// symbols, logs): its symbol, the points it added, and details.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// `CHAFF_SENDER_MISMATCH` or `CHAFF_POLICY`.
    pub symbol: &'static str,
    /// Points added to the score.
    pub score: f64,
    /// Details (the scopes that applied; the login and the senders that did not
    /// match).
    pub options: Vec<String>,
}

/// The symbol of a sender who does not match the login.
pub const SENDER_MISMATCH: &str = "CHAFF_SENDER_MISMATCH";
/// The symbol of stored policies that applied (options: their scopes).
pub const POLICY: &str = "CHAFF_POLICY";

fn stance_of(
    layers: [Option<&Compiled>; 2],
    base: Thresholds,
    allowed: Option<(String, AllowProof)>,
) -> Stance {
    let field = |f: fn(&Compiled) -> Option<f64>, global: f64| {
        layers.iter().flatten().find_map(|c| f(c)).unwrap_or(global)
    };
    Stance {
        quarantine: field(|c| c.quarantine, base.quarantine),
        reject: field(|c| c.reject, base.reject),
        blocked: None,
        allowed,
        scopes: layers.iter().flatten().map(|c| c.scope.clone()).collect(),
    }
}

/// Applies the stored policies `set` and `policy` (`[policy]`) to `verdict`,
/// the engine's verdict on `raw` sent with `env`; what applied, for
/// explanations (empty when nothing did).
pub fn apply(
    engine: &Engine,
    set: &PolicySet,
    policy: &Policy,
    env: &Envelope,
    raw: &[u8],
    verdict: &mut Verdict,
) -> Vec<Mark> {
    if !matches!(
        verdict.reason,
        Reason::Score { .. } | Reason::AllowListed { .. }
    ) {
        return Vec::new();
    }
    let global_allowed = match &verdict.reason {
        Reason::AllowListed { entry, proof } => Some((entry.clone(), *proof)),
        _ => None,
    };
    let mut marks = Vec::new();
    let login = env.auth_user.as_deref().filter(|u| !u.is_empty());
    let Some(login) = login else {
        if set.domains.is_empty() && set.recipients.is_empty() {
            return marks;
        }
        let base = engine.config().thresholds_for(false);
        let mut merged: Option<Stance> = None;
        for rcpt in &env.recipients {
            let address = rcpt.trim().trim_matches(['<', '>']).to_lowercase();
            let r = set.recipients.get(&address);
            let d = domain_of(&address).and_then(|d| set.domains.get(&d));
            let mut s = stance_of([r, d], base, global_allowed.clone());
            let sender = env.sender.as_deref().filter(|s| !s.is_empty());
            for c in [r, d].into_iter().flatten() {
                if s.blocked.is_none()
                    && let Some(sender) = sender
                    && let Some(p) = c.block.iter().find(|p| p.matches(sender))
                {
                    s.blocked = Some(p.as_str().to_string());
                }
            }
            if s.allowed.is_none() {
                let entries: Vec<AllowEntry> = [r, d]
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c.allow_in.iter().cloned())
                    .collect();
                s.allowed = engine.allowed_among(&entries, env, raw);
            }
            merged = Some(match merged {
                None => s,
                Some(m) => m.merge(&s),
            });
        }
        let Some(stance) = merged.filter(|s| !s.scopes.is_empty()) else {
            return marks;
        };
        marks.push(Mark {
            symbol: POLICY,
            score: 0.0,
            options: stance.scopes.iter().cloned().collect(),
        });
        settle(engine, verdict, &stance, 0.0);
        return marks;
    };
    // Outbound.
    let key = normalise_user(login, policy.realm.as_deref());
    let rule = set.accounts.get(&key);
    let base = engine.config().thresholds_for(true);
    let mut stance = stance_of([rule, None], base, None);
    if let Some(c) = rule {
        stance.blocked = env.recipients.iter().find_map(|r| {
            c.block
                .iter()
                .find(|p| p.matches(r))
                .map(|p| p.as_str().to_string())
        });
        if !env.recipients.is_empty() && !c.allow_out.is_empty() {
            let mut first = None;
            let all = env.recipients.iter().all(|r| {
                let hit = c.allow_out.iter().find(|p| p.matches(r));
                if first.is_none() {
                    first = hit.map(|p| p.as_str().to_string());
                }
                hit.is_some()
            });
            if all {
                stance.allowed = first.map(|e| (e, AllowProof::Login));
            }
        }
    }
    let mismatch = (policy.mismatch != MismatchAction::Off
        && !policy.exempt.contains(&key)
        && !rule.is_some_and(|c| c.mismatch_exempt))
    // `USER@REALM` with `[accounts] realm` is the bare `USER` (a Cyrus SASL
    // realm is often not the mail domain).
    .then(|| mismatch::account_domain(&key, policy.default_domain.as_deref()))
    .flatten()
    .and_then(|domain| {
        let aliases = rule.map_or(&[][..], |c| &c.aliases[..]);
        mismatch::check(&domain, aliases, env.sender.as_deref(), raw)
    });
    if rule.is_none() && mismatch.is_none() {
        return marks;
    }
    if !stance.scopes.is_empty() {
        marks.push(Mark {
            symbol: POLICY,
            score: 0.0,
            options: stance.scopes.iter().cloned().collect(),
        });
    }
    let points = match (&mismatch, policy.mismatch) {
        (Some(_), MismatchAction::Points) => policy.points,
        _ => 0.0,
    };
    let added = settle(engine, verdict, &stance, points);
    if let Some(m) = mismatch {
        marks.push(Mark {
            symbol: SENDER_MISMATCH,
            score: added,
            options: m.options(login),
        });
        match policy.mismatch {
            MismatchAction::Reject => {
                verdict.action = Action::Reject;
                verdict.reply = Some(policy.reply.clone());
            }
            MismatchAction::Quarantine if verdict.action == Action::Deliver => {
                verdict.action = Action::Quarantine;
            }
            _ => {}
        }
    }
    marks
}

/// Blocked, allowed or routed by the stance's thresholds with `points` more;
/// returns the points added (only a verdict routed by score gets them).
fn settle(engine: &Engine, verdict: &mut Verdict, stance: &Stance, points: f64) -> f64 {
    if let Some(entry) = &stance.blocked {
        engine.block_verdict(verdict, entry.clone());
        0.0
    } else if let Some((entry, proof)) = &stance.allowed {
        if !matches!(verdict.reason, Reason::AllowListed { .. }) {
            engine.allow_verdict(verdict, entry.clone(), *proof);
        }
        0.0
    } else {
        let scored = matches!(verdict.reason, Reason::Score { .. });
        engine.route_under(
            verdict,
            Thresholds {
                quarantine: stance.quarantine,
                reject: stance.reject,
            },
            points,
        );
        if scored { points } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site_policy::{Change, Key, PolicyConfig};
    use chaff::Config;

    const MAIL: &[u8] = b"From: alice@example.com\r\nSubject: hi\r\n\r\nhello there\r\n";

    fn engine() -> Engine {
        Engine::builder()
            .config(Config::default())
            .load_in_background(false)
            .build()
            .unwrap()
    }

    fn rule(scope: &str, changes: &[(Key, &str)]) -> (Scope, Rule) {
        let s = Scope::parse(scope, None).unwrap();
        let mut r = None;
        for (k, v) in changes {
            r = Rule::apply(r, &s, &Change::Set(*k, v.to_string())).unwrap();
        }
        (s, r.unwrap())
    }

    fn env(auth: Option<&str>, sender: &str, rcpts: &[&str]) -> Envelope {
        Envelope {
            sender: Some(sender.into()),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            auth_user: auth.map(str::to_string),
            ..Envelope::default()
        }
    }

    fn run(set: &PolicySet, policy: &Policy, env: &Envelope) -> (Verdict, Vec<Mark>) {
        let e = engine();
        let mut v = e.scan(MAIL, env);
        let marks = apply(&e, set, policy, env, MAIL, &mut v);
        (v, marks)
    }

    #[test]
    fn the_strictest_recipient_policy_decides_in_any_order() {
        let set = PolicySet::new(
            1,
            &[
                rule("domain:strict.test", &[(Key::Quarantine, "-100")]),
                rule("domain:blocking.test", &[(Key::Block, "example.com")]),
            ],
        );
        let p = Policy::default();
        let (v, marks) = run(&set, &p, &env(None, "a@example.com", &["x@other.test"]));
        assert_eq!(v.action, Action::Deliver);
        assert!(marks.is_empty());
        for rcpts in [
            ["x@other.test", "y@strict.test"],
            ["y@strict.test", "x@other.test"],
        ] {
            let (v, marks) = run(&set, &p, &env(None, "a@example.com", &rcpts));
            assert_eq!(v.action, Action::Quarantine, "{rcpts:?}");
            assert_eq!(marks[0].options, vec!["domain:strict.test"]);
        }
        let (v, _) = run(
            &set,
            &p,
            &env(None, "a@example.com", &["y@strict.test", "z@Blocking.test"]),
        );
        assert_eq!(v.action, Action::Reject);
        assert!(matches!(v.reason, Reason::BlockListed { .. }));
    }

    #[test]
    fn an_allow_entry_needs_every_recipient() {
        let set = PolicySet::new(
            1,
            &[
                rule(
                    "domain:a.test",
                    &[
                        (Key::Quarantine, "-100"),
                        (Key::Allow, "example.com from 192.0.2.0/24"),
                    ],
                ),
                rule("domain:b.test", &[(Key::Quarantine, "-100")]),
            ],
        );
        let p = Policy::default();
        let mut e = env(None, "a@example.com", &["x@a.test"]);
        e.client_addr = Some("192.0.2.7".parse().unwrap());
        let (v, _) = run(&set, &p, &e);
        assert_eq!(v.action, Action::Deliver);
        assert!(matches!(v.reason, Reason::AllowListed { .. }));
        e.recipients.push("y@b.test".into());
        let (v, _) = run(&set, &p, &e);
        assert_eq!(v.action, Action::Quarantine);
    }

    #[test]
    fn sender_mismatch_actions_and_exemptions() {
        let policy = |mode| {
            PolicyConfig {
                sender_mismatch: mode,
                mismatch_points: 50.0,
                default_domain: Some("example.com".into()),
                ..PolicyConfig::default()
            }
            .checked(None)
            .unwrap()
        };
        let empty = PolicySet::default();
        let bad = env(Some("alice"), "ceo@bank.test", &["x@y.test"]);
        let good = env(Some("alice"), "alice@example.com", &["x@y.test"]);
        let (v, marks) = run(&empty, &policy(MismatchAction::Reject), &bad);
        assert_eq!(v.action, Action::Reject);
        assert_eq!(
            v.reply.as_ref().unwrap().as_str(),
            super::super::config::DEFAULT_MISMATCH_REPLY
        );
        assert_eq!(marks[0].symbol, SENDER_MISMATCH);
        let (v, marks) = run(&empty, &policy(MismatchAction::Reject), &good);
        assert_eq!(v.action, Action::Deliver);
        assert!(marks.is_empty());
        let (v, _) = run(&empty, &policy(MismatchAction::Quarantine), &bad);
        assert_eq!(v.action, Action::Quarantine);
        let (v, marks) = run(&empty, &policy(MismatchAction::Points), &bad);
        assert_eq!(marks[0].score, 50.0);
        assert_eq!(v.action, Action::Reject);
        let (v, _) = run(&empty, &policy(MismatchAction::Off), &bad);
        assert_eq!(v.action, Action::Deliver);
        let exempt = PolicySet::new(
            1,
            &[rule("account:alice", &[(Key::MismatchExempt, "true")])],
        );
        let (v, marks) = run(&exempt, &policy(MismatchAction::Reject), &bad);
        assert_eq!(v.action, Action::Deliver);
        assert!(marks.iter().all(|m| m.symbol != SENDER_MISMATCH));
        // A SASL realm login is the bare login: default_domain applies.
        let realm = PolicyConfig {
            sender_mismatch: MismatchAction::Reject,
            default_domain: Some("example.com".into()),
            ..PolicyConfig::default()
        }
        .checked(Some("sasl.test"))
        .unwrap();
        let login = |sender: &str| env(Some("alice@sasl.test"), sender, &["x@y.test"]);
        assert_eq!(
            run(&empty, &realm, &login("alice@example.com")).0.action,
            Action::Deliver
        );
        assert_eq!(
            run(&empty, &realm, &login("alice@sasl.test")).0.action,
            Action::Reject
        );
        let alias = PolicySet::new(1, &[rule("account:alice", &[(Key::Aliases, "bank.test")])]);
        let (v, _) = run(&alias, &policy(MismatchAction::Reject), &bad);
        assert_eq!(v.action, Action::Deliver);
    }

    #[test]
    fn account_lists_match_recipients() {
        let set = PolicySet::new(
            1,
            &[rule(
                "account:alice",
                &[(Key::Block, "rival.test"), (Key::Quarantine, "-100")],
            )],
        );
        let p = Policy::default();
        let (v, _) = run(
            &set,
            &p,
            &env(Some("alice"), "alice@example.com", &["a@rival.test"]),
        );
        assert_eq!(v.action, Action::Reject);
        let (v, _) = run(
            &set,
            &p,
            &env(Some("alice"), "alice@example.com", &["a@ok.test"]),
        );
        assert_eq!(v.action, Action::Quarantine);
        let (v, _) = run(
            &set,
            &p,
            &env(Some("bob"), "bob@example.com", &["a@ok.test"]),
        );
        assert_eq!(v.action, Action::Deliver);
    }
}
