//! Route: from score and envelope to an action, a reply and a reason. Its
//! pre-scan runs before anything else ([`pre_scan`]), the rest last ([`route`]).
//!
//! Policy is kept apart from scoring so that the same score can mean different
//! things for inbound mail and for outbound mail from the site's own accounts.

use crate::config::Config;
use crate::reply::Reply;
use crate::verdict::{Action, Envelope, Reason, Verdict};

/// The decision before any content is read: oversize mail and listed senders.
/// `None` means the content decides.
pub fn pre_scan(
    cfg: &Config,
    env: &Envelope,
    size: usize,
) -> Option<(Action, Option<Reply>, Reason)> {
    if size > cfg.max_message_size {
        return Some((
            Action::Reject,
            Some(cfg.oversize_reply.clone()),
            Reason::Oversize {
                size,
                limit: cfg.max_message_size,
            },
        ));
    }
    let sender = env.sender.as_deref().filter(|s| !s.is_empty())?;
    let find = |list: &[crate::config::SenderPattern], exact_only: bool| {
        list.iter()
            .filter(|p| !exact_only || p.as_str().contains('@') && !p.as_str().contains(['*', '?']))
            .find(|p| p.matches(sender))
            .map(|p| p.as_str().to_string())
    };
    // An exact allowed address beats a blocked domain; otherwise blocking wins.
    let allowed = |entry| (Action::Deliver, None, Reason::AllowListed { entry });
    if let Some(entry) = find(&cfg.allow, true) {
        return Some(allowed(entry));
    }
    if let Some(entry) = find(&cfg.block, false) {
        return Some((
            Action::Reject,
            Some(cfg.reject_reply.clone()),
            Reason::BlockListed { entry },
        ));
    }
    find(&cfg.allow, false).map(allowed)
}

/// The action for a content score.
pub fn route(cfg: &Config, env: &Envelope, score: f64) -> (Action, Option<Reply>, Reason) {
    let t = cfg.thresholds_for(env.is_outbound());
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SenderPattern, Thresholds};

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
        assert_eq!(route(&cfg, &inbound, 4.5).0, Action::Deliver);
        assert_eq!(route(&cfg, &outbound, 4.5).0, Action::Reject);
        assert_eq!(route(&cfg, &inbound, 5.0).0, Action::Quarantine);
        let (action, reply, _) = route(&cfg, &inbound, 10.0);
        assert_eq!(action, Action::Reject);
        assert_eq!(reply.unwrap(), "557 5.7.1 forbid to send spam mail");
    }

    #[test]
    fn oversize_and_lists() {
        let cfg = Config {
            max_message_size: 100,
            block: vec![SenderPattern::parse("spam.test").unwrap()],
            allow: vec![
                SenderPattern::parse("boss@spam.test").unwrap(),
                SenderPattern::parse("*.friend.test").unwrap(),
            ],
            ..Config::default()
        };
        let (a, reply, _) = pre_scan(&cfg, &Envelope::default(), 101).unwrap();
        assert_eq!(a, Action::Reject);
        assert_eq!(reply.unwrap(), "552 5.3.4 Message size exceeds fixed limit");
        assert_eq!(
            pre_scan(&cfg, &env("x@spam.test", None), 10).unwrap().0,
            Action::Reject
        );
        assert_eq!(
            pre_scan(&cfg, &env("boss@spam.test", None), 10).unwrap().0,
            Action::Deliver
        );
        assert_eq!(
            pre_scan(&cfg, &env("a@mx.friend.test", None), 10)
                .unwrap()
                .0,
            Action::Deliver
        );
        assert_eq!(pre_scan(&cfg, &env("a@other.test", None), 10), None);
    }
}
