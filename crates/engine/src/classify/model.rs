//! The trained model: hashed feature weights of an online logistic regression, the
//! calibration that turns its log-odds into score points, the trained keyword
//! weights and the thresholds learned for a target false-positive rate.
//!
//! It exists as its own type so that one value is what `chaff train` writes, what
//! `chaff learn` updates, what the scanner reads, and what the file format
//! ([`super::format`]) stores, with no second source of truth.

use super::features::{Extractor, FEATURES_VERSION, Feature, FeatureConfig};
use crate::verdict::TokenWeight;
use serde::{Deserialize, Serialize};

/// How the logistic regression learns: the settings `train` used, kept in the model so
/// that `learn` updates it the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnParams {
    /// Step size of each update. Feature values are `1/sqrt(n)` for a message with
    /// `n` distinct features, so this is the step of the whole message's score.
    pub rate: f64,
    /// A message the model already gets right with at least this probability is not
    /// trained on (TONE, "train on or near error"): it keeps well-learned messages
    /// from pushing weights to extremes.
    pub confident: f64,
    /// Passes over the (cached) training set.
    pub passes: u32,
}

impl Default for LearnParams {
    fn default() -> Self {
        LearnParams {
            rate: 2.0,
            confident: 0.9,
            passes: 3,
        }
    }
}

/// Maps the classifier's log-odds `z` to score points: `offset + scale * z`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Points per unit of log-odds.
    pub scale: f64,
    /// Points at log-odds 0.
    pub offset: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            scale: 1.0,
            offset: 0.0,
        }
    }
}

/// The thresholds `train` chose, in score points, and what they were chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainedThresholds {
    /// Quarantine at or above this score.
    pub quarantine: f64,
    /// Reject at or above this score.
    pub reject: f64,
    /// The ham false-positive rate the quarantine threshold was chosen for.
    pub quarantine_fpr: f64,
    /// The ham false-positive rate the reject threshold was chosen for.
    pub reject_fpr: f64,
    /// Spam recall at the quarantine threshold on the training data (cross-fitted).
    pub quarantine_recall: f64,
    /// Spam recall at the reject threshold on the training data (cross-fitted).
    pub reject_recall: f64,
}

/// A keyword weight learned from labelled mail, in score points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeywordWeight {
    /// The keyword as written in its list.
    pub keyword: String,
    /// Its category.
    pub category: String,
    /// The weight, in score points (may be negative: a word more common in ham).
    pub weight: f64,
}

/// Where the model came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelStats {
    /// Spam messages `train` learned from.
    pub trained_spam: u64,
    /// Ham messages `train` learned from.
    pub trained_ham: u64,
    /// Spam messages added by `learn` since.
    pub learned_spam: u64,
    /// Ham messages added by `learn` since.
    pub learned_ham: u64,
    /// Seconds since the Unix epoch when `train` made the model.
    pub created: u64,
    /// Seconds since the Unix epoch of the last change.
    pub updated: u64,
    /// The chaff version that made it.
    pub chaff_version: String,
}

/// Everything in a model file but the weight table (stored as JSON in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// The tokeniser version the weights were trained with.
    pub features_version: u32,
    /// The feature settings the weights were trained with.
    pub features: FeatureConfig,
    /// The learning settings (for `learn`).
    pub learning: LearnParams,
    /// The logistic regression's bias.
    pub bias: f64,
    /// Log-odds → score points.
    pub calibration: Calibration,
    /// Trained thresholds, when `train` had both spam and ham.
    pub thresholds: Option<TrainedThresholds>,
    /// Trained keyword weights (score points).
    pub keywords: Vec<KeywordWeight>,
    /// Provenance.
    pub stats: ModelStats,
}

/// The classifier's view of one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classification {
    /// Log-odds of spam.
    pub logit: f64,
    /// Score points the classifier adds (`calibration.offset + calibration.scale * logit`).
    pub points: f64,
    /// The tokens that weighed most, spam-wards first, then ham-wards.
    pub tokens: Vec<TokenWeight>,
}

/// A trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Settings, calibration, keywords, thresholds, provenance.
    pub meta: ModelMeta,
    /// One weight per hash bucket (`2^features.bits`).
    pub weights: Vec<f32>,
}

/// Tokens named in an explanation, each way.
pub const EXPLAIN_TOKENS: usize = 5;

impl Model {
    /// An untrained model (all weights zero) for the given settings.
    pub fn new(features: FeatureConfig, learning: LearnParams) -> Model {
        let bits = features.bits.clamp(16, 26);
        let features = FeatureConfig { bits, ..features };
        Model {
            weights: vec![0.0; 1usize << bits],
            meta: ModelMeta {
                features_version: FEATURES_VERSION,
                features,
                learning,
                bias: 0.0,
                calibration: Calibration::default(),
                thresholds: None,
                keywords: Vec::new(),
                stats: ModelStats {
                    chaff_version: env!("CARGO_PKG_VERSION").to_string(),
                    ..ModelStats::default()
                },
            },
        }
    }

    /// What an admin should be told about a model made by an older tokeniser
    /// (`None` for a current one): it is scanned with the features it was trained
    /// on and keeps working, but misses what the current tokeniser reads.
    pub fn outdated(&self) -> Option<String> {
        (self.meta.features_version < FEATURES_VERSION).then(|| {
            format!(
                "the model was trained with tokeniser version {} (this chaff trains version {FEATURES_VERSION}): \
                 it keeps working as trained, but reads only the HTML of multipart/alternative mail; \
                 retrain it with `chaff train` to use the current tokeniser",
                self.meta.features_version
            )
        })
    }

    /// The log-odds of spam for a message's features.
    #[inline]
    pub fn logit(&self, feats: &[Feature]) -> f64 {
        logit_of(
            &self.weights,
            self.meta.bias,
            feats.iter().map(|f| f.bucket),
        )
    }

    /// The log-odds of spam for a list of feature buckets.
    pub fn logit_buckets(&self, buckets: &[u32]) -> f64 {
        logit_of(&self.weights, self.meta.bias, buckets.iter().copied())
    }

    /// Classifies the message the extractor has read: log-odds, points and (when
    /// `explain`) the tokens that weighed most both ways.
    pub fn classify(&self, ex: &Extractor, explain: bool) -> Classification {
        let feats = ex.features();
        // Gather the weights first: independent loads the CPU can overlap, where a
        // branch on each loaded weight would serialise them.
        let ws: Vec<f32> = feats
            .iter()
            .map(|f| self.weights.get(f.bucket as usize).copied().unwrap_or(0.0))
            .collect();
        let sum: f32 = ws.iter().sum();
        let logit = self.meta.bias + f64::from(sum) * value(feats.len());
        let cal = self.meta.calibration;
        let mut out = Classification {
            logit,
            points: cal.offset + cal.scale * logit,
            tokens: Vec::new(),
        };
        if explain && !feats.is_empty() {
            let v = value(feats.len()) * cal.scale;
            let mut top: Vec<(f32, usize)> = Vec::with_capacity(EXPLAIN_TOKENS + 1);
            let mut bottom: Vec<(f32, usize)> = Vec::with_capacity(EXPLAIN_TOKENS + 1);
            let (mut top_min, mut bottom_max) = (0.0f32, 0.0f32);
            for (i, &w) in ws.iter().enumerate() {
                if w > top_min {
                    keep(&mut top, (w, i), |a, b| a > b);
                    if top.len() == EXPLAIN_TOKENS {
                        top_min = top.last().map_or(0.0, |t| t.0);
                    }
                } else if w < bottom_max {
                    keep(&mut bottom, (w, i), |a, b| a < b);
                    if bottom.len() == EXPLAIN_TOKENS {
                        bottom_max = bottom.last().map_or(0.0, |t| t.0);
                    }
                }
            }
            out.tokens = top
                .iter()
                .chain(bottom.iter())
                .map(|&(w, i)| TokenWeight {
                    token: ex.token(&feats[i]),
                    weight: f64::from(w) * v,
                })
                .collect();
        }
        out
    }

    /// One online learning step on a message's features (TONE: skipped when the
    /// model is already confident and right). Returns true if the weights changed.
    pub fn update(&mut self, feats: &[u32], spam: bool) -> bool {
        let p = self.learning_update(feats, spam, self.meta.learning.confident);
        p.is_some()
    }

    /// One online learning step on a message's features, whatever the model says
    /// of it now (`chaff learn` steps until the verdict is right).
    pub fn step(&mut self, feats: &[u32], spam: bool) {
        let _ = self.learning_update(feats, spam, 1.0);
    }

    fn learning_update(&mut self, feats: &[u32], spam: bool, confident: f64) -> Option<f64> {
        let z = logit_of(&self.weights, self.meta.bias, feats.iter().copied());
        let p = sigmoid(z);
        let y = if spam { 1.0 } else { 0.0 };
        let g = y - p;
        if g.abs() < 1.0 - confident {
            return None;
        }
        let rate = self.meta.learning.rate;
        let d = (rate * g * value(feats.len())) as f32;
        for &b in feats {
            if let Some(w) = self.weights.get_mut(b as usize) {
                *w += d;
            }
        }
        self.meta.bias += rate * g * BIAS_RATE;
        Some(p)
    }
}

/// The bias learns at this fraction of the weights' rate.
const BIAS_RATE: f64 = 0.1;

/// The value of each feature of a message with `n` distinct features: the feature
/// vector has unit length, so long messages do not shout down short ones.
#[inline]
pub(crate) fn value(n: usize) -> f64 {
    1.0 / (n.max(1) as f64).sqrt()
}

/// The log-odds of spam of a message with these feature buckets, under `weights`
/// and `bias`: how the scanner and the trainer both compute it.
#[inline]
pub fn logit_of(weights: &[f32], bias: f64, buckets: impl Iterator<Item = u32>) -> f64 {
    let mut sum = 0.0f32;
    let mut n = 0usize;
    for b in buckets {
        sum += weights.get(b as usize).copied().unwrap_or(0.0);
        n += 1;
    }
    bias + f64::from(sum) * value(n)
}

/// The logistic function.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Keeps the `EXPLAIN_TOKENS` best entries by `better`.
fn keep(list: &mut Vec<(f32, usize)>, item: (f32, usize), better: impl Fn(f32, f32) -> bool) {
    if list.len() == EXPLAIN_TOKENS {
        match list.last() {
            Some(last) if better(item.0, last.0) => {
                list.pop();
            }
            _ => return,
        }
    }
    let pos = list
        .iter()
        .position(|e| better(item.0, e.0))
        .unwrap_or(list.len());
    list.insert(pos, item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::features::Field;

    fn feats(text: &str) -> (Extractor, Vec<u32>) {
        let mut ex = Extractor::new(&FeatureConfig {
            bits: 16,
            ..FeatureConfig::default()
        });
        ex.add_text(Field::Body, text);
        let b = ex.features().iter().map(|f| f.bucket).collect();
        (ex, b)
    }

    #[test]
    fn learning_moves_the_score_and_explains() {
        let mut m = Model::new(
            FeatureConfig {
                bits: 16,
                ..FeatureConfig::default()
            },
            LearnParams::default(),
        );
        let (_, spam) = feats("代开发票 cheap invoices");
        let (_, ham) = feats("明天开会讨论论文 meeting tomorrow");
        for _ in 0..5 {
            m.update(&spam, true);
            m.update(&ham, false);
        }
        let (ex, _) = feats("代开发票");
        let c = m.classify(&ex, true);
        assert!(c.logit > 0.0, "{c:?}");
        assert!(c.tokens.len() == EXPLAIN_TOKENS, "{c:?}");
        assert!(
            c.tokens
                .iter()
                .all(|t| t.weight > 0.0 && "代开发票".contains(&t.token)),
            "{c:?}"
        );
        let (ex, _) = feats("明天开会");
        assert!(m.classify(&ex, false).logit < 0.0);
    }

    #[test]
    fn steps_always_move_towards_the_label() {
        let mut m = Model::new(
            FeatureConfig {
                bits: 16,
                ..FeatureConfig::default()
            },
            LearnParams::default(),
        );
        let (_, x) = feats("hello world 你好");
        let mut last = m.logit_buckets(&x);
        for _ in 0..5 {
            m.step(&x, true);
            let now = m.logit_buckets(&x);
            assert!(now > last);
            last = now;
        }
        assert!(sigmoid(last) > 0.9, "{last}");
    }
}
