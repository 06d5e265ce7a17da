//! Correcting a model with one message it got wrong (`chaff learn`).

use chaff::Engine;
use chaff::classify::{Model, trained_keywords};

/// What learning one message did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Learned {
    /// The message's score (keywords + classifier) before.
    pub before: f64,
    /// Its score after.
    pub after: f64,
    /// Learning steps taken (0: the model already had it right with margin).
    pub steps: u32,
}

/// Score points of margin `learn` aims for beyond the quarantine threshold.
pub const LEARN_MARGIN: f64 = 1.0;
/// At most this many learning steps per message: enough to move a confidently wrong
/// message to the right side, few enough that one message cannot take over.
pub const LEARN_MAX_STEPS: u32 = 25;

/// Learns one message (what `chaff learn` does): online steps until the message's
/// whole score is on the right side of the quarantine threshold by
/// [`LEARN_MARGIN`] (spam at or above, ham below), at most [`LEARN_MAX_STEPS`];
/// at least one ordinary (TONE) step otherwise. `engine` reads the mail (its own
/// model, if any, is not used); its config gives thresholds, scoring and the
/// classifier's weight.
pub fn learn_message(engine: &Engine, model: &mut Model, raw: &[u8], spam: bool) -> Learned {
    let cfg = engine.config();
    let keywords = trained_keywords(model, engine.keywords());
    // The features of the model's own tokeniser version, so an older model is
    // updated the way it was trained.
    let x = engine.extract_version(raw, &model.meta.features, model.meta.features_version);
    let feats = x.buckets;
    let (kw, _) = chaff::score::score(&x.found, &keywords, &cfg.scoring);
    let weight = cfg.classifier.weight;
    let q = cfg.thresholds_for(false).quarantine;
    let total = |m: &Model| {
        let c = m.meta.calibration;
        kw + weight * (c.offset + c.scale * m.logit_buckets(&feats))
    };
    let right = |score: f64| {
        if spam {
            score >= q + LEARN_MARGIN
        } else {
            score < q - LEARN_MARGIN
        }
    };
    let before = total(model);
    let mut steps = 0;
    if weight > 0.0 && model.meta.calibration.scale > 0.0 {
        while !right(total(model)) && steps < LEARN_MAX_STEPS {
            model.step(&feats, spam);
            steps += 1;
        }
    }
    if steps == 0 && model.update(&feats, spam) {
        steps = 1;
    }
    Learned {
        before,
        after: total(model),
        steps,
    }
}
