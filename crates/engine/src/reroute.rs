//! Routing a verdict again under another policy, without scanning again: for a
//! service that layers its own thresholds and allow lists (per recipient domain,
//! per recipient, per account) over the configuration's. The score and the hits
//! are the scan's; only the action, the reply and the reason change.

use crate::config::{AllowEntry, Thresholds};
use crate::engine::Engine;
use crate::route;
use crate::verdict::{Action, AllowProof, Envelope, Reason, Verdict};

impl Engine {
    /// Routes `verdict` (of this engine's scan) again under `thresholds`: a
    /// verdict decided by its score ([`Reason::Score`]) gets the action, reply and
    /// reason those thresholds give its score, as [`Engine::scan`] would have
    /// given them; any other verdict (allow- or block-listed, oversize, failed)
    /// is left as it is, since its score did not decide it. `extra` points (a
    /// service's own evidence, such as a sender who does not match the login)
    /// are added to the score first, for scored verdicts only.
    pub fn route_under(&self, verdict: &mut Verdict, thresholds: Thresholds, extra: f64) {
        if !matches!(verdict.reason, Reason::Score { .. }) {
            return;
        }
        verdict.score += extra;
        let (action, reply, reason) = route::by_score(self.config(), thresholds, verdict.score);
        verdict.action = action;
        verdict.reply = reply;
        verdict.reason = reason;
    }

    /// The first of `entries` that allows the (inbound) message sent with
    /// `envelope`, with its proof, by the rules of `[senders] allow` (exact
    /// addresses first; proof by the entry's networks, this engine's trusted
    /// `Authentication-Results` or `allow_unverified`). `raw` is the message (only
    /// its header block is read, and only when a pattern matches). None for
    /// outbound mail.
    pub fn allowed_among(
        &self,
        entries: &[AllowEntry],
        envelope: &Envelope,
        raw: &[u8],
    ) -> Option<(String, AllowProof)> {
        route::allowed_among(self.config(), entries, envelope, raw).map(|a| (a.entry, a.proof))
    }

    /// Makes `verdict` a delivery for the allow entry `entry` proved by `proof`,
    /// as the configuration's allow list would have (the score and hits stay).
    pub fn allow_verdict(&self, verdict: &mut Verdict, entry: String, proof: AllowProof) {
        verdict.action = Action::Deliver;
        verdict.reply = None;
        verdict.reason = Reason::AllowListed { entry, proof };
    }

    /// Makes `verdict` a refusal for the block entry `entry`, with this engine's
    /// reject reply, as the configuration's block list would have.
    pub fn block_verdict(&self, verdict: &mut Verdict, entry: String) {
        verdict.action = Action::Reject;
        verdict.reply = Some(self.config().reject_reply.clone());
        verdict.reason = Reason::BlockListed { entry };
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AllowEntry, Thresholds};
    use crate::{Action, AllowProof, Config, Engine, Envelope, Reason};

    fn engine(allow_unverified: bool) -> Engine {
        Engine::builder()
            .config(Config {
                allow_unverified,
                ..Config::default()
            })
            .load_in_background(false)
            .build()
            .unwrap()
    }

    const MAIL: &[u8] = b"From: a@x.test\r\nSubject: hi\r\n\r\nhello\r\n";

    #[test]
    fn route_under_changes_only_scored_verdicts() {
        let e = engine(false);
        let env = Envelope::default();
        let mut v = e.scan(MAIL, &env);
        assert_eq!(v.action, Action::Deliver);
        let base = v.score;
        e.route_under(
            &mut v,
            Thresholds {
                quarantine: base - 1.0,
                reject: base + 10.0,
            },
            0.0,
        );
        assert_eq!(v.action, Action::Quarantine);
        assert_eq!(
            v.reason,
            Reason::Score {
                quarantine: base - 1.0,
                reject: base + 10.0
            }
        );
        // Extra points push it over the reject threshold, with the reply.
        e.route_under(
            &mut v,
            Thresholds {
                quarantine: base + 1.0,
                reject: base + 5.0,
            },
            5.0,
        );
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.score, base + 5.0);
        assert!(v.reply.is_some());
        // A block-listed verdict is not rerouted.
        e.block_verdict(&mut v, "spam.test".into());
        let before = v.clone();
        e.route_under(
            &mut v,
            Thresholds {
                quarantine: 100.0,
                reject: 200.0,
            },
            3.0,
        );
        assert_eq!(v, before);
    }

    #[test]
    fn allowed_among_needs_proof_and_inbound_mail() {
        let entries = vec![AllowEntry::parse("boss@x.test").unwrap()];
        let env = Envelope {
            sender: Some("boss@x.test".into()),
            ..Envelope::default()
        };
        assert_eq!(engine(false).allowed_among(&entries, &env, MAIL), None);
        assert_eq!(
            engine(true).allowed_among(&entries, &env, MAIL),
            Some(("boss@x.test".into(), AllowProof::Unverified))
        );
        let out = Envelope {
            auth_user: Some("boss".into()),
            ..env
        };
        assert_eq!(engine(true).allowed_among(&entries, &out, MAIL), None);
    }
}
