//! Training: from labelled messages to a [`Model`] with calibrated score points,
//! trained keyword weights and thresholds for a target false-positive rate.
//!
//! This module exists to keep every statistical decision of `chaff train` (and of
//! `chaff eval --train/--split`, which trains the same way in memory) in one place:
//!
//! 1. **Token classifier.** Online logistic regression over hashed binary features
//!    (unit-length feature vectors, TONE "train on or near error"), one pass in
//!    arrival order while messages stream in, then `passes - 1` shuffled passes over
//!    the cached features. The cache is bounded (`max_cache_mb`): beyond it messages
//!    are learned in the streaming pass only, so memory stays bounded whatever the
//!    training set's size.
//! 2. **Honest scores.** The same learner is trained `folds` times, each time without
//!    one interleaved fold, and scores the fold it did not see. These out-of-sample
//!    log-odds are what the thresholds and the combination are fitted on (scores of
//!    training messages under the final model would be over-confident).
//! 3. **Keyword weights.** A logistic regression on the keyword hits alone (each
//!    keyword's feature is its diminishing-returns count, exactly as the scorer
//!    counts it), with a little L2.
//! 4. **Combination.** A three-parameter logistic regression of the label on
//!    (keyword log-odds, classifier log-odds) gives how much each counts.
//! 5. **Thresholds.** On the combined honest scores, the quarantine and reject
//!    thresholds are the lowest scores that flag at most `quarantine_fpr` and
//!    `reject_fpr` of the training ham. The score is then scaled so that these two
//!    points fall on the default `[thresholds]` (9 and 15 points): the configured
//!    thresholds keep their meaning with or without a model.

use chaff::Engine;
use chaff::classify::model::{
    Calibration, KeywordWeight, Model, TrainedThresholds, logit_of, sigmoid,
};
use chaff::classify::{ClassifierConfig, FeatureConfig};
use chaff::config::Config;
use chaff::keywords::KeywordSet;

/// `(spam, ham)` among `examples`.
fn label_counts(examples: &[Example]) -> (usize, usize) {
    let spam = examples.iter().filter(|e| e.spam).count();
    (spam, examples.len() - spam)
}

/// One prepared training message: its label, its feature buckets and its keyword
/// features.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// True for spam.
    pub spam: bool,
    /// Distinct feature buckets.
    pub feats: Vec<u32>,
    /// `(keyword index, diminishing-returns count)` for each keyword found.
    pub keywords: Vec<(u32, f32)>,
}

/// Prepares one labelled message for training: the same decoding, normalisation,
/// keyword matching and feature extraction as scanning ([`Engine::extract`]), and
/// the keywords counted by the scorer's rule ([`chaff::score::keyword_counts`]).
pub fn prepare(engine: &Engine, features: &FeatureConfig, raw: &[u8], spam: bool) -> Example {
    let x = engine.extract(raw, features);
    Example {
        spam,
        feats: x.buckets,
        keywords: chaff::score::keyword_counts(&x.found, &engine.config().scoring),
    }
}

/// What training found, for the `train` report.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Spam messages learned.
    pub spam: u64,
    /// Ham messages learned.
    pub ham: u64,
    /// Messages whose features were cached for the extra passes.
    pub cached: u64,
    /// ROC AUC of the cross-fitted combined scores on the training data.
    pub crossfit_auc: Option<f64>,
    /// Weight of the keyword log-odds in the combination.
    pub keyword_factor: f64,
    /// Weight of the classifier log-odds in the combination.
    pub classifier_factor: f64,
    /// What the admin should know about the training data (printed by `train`).
    pub warnings: Vec<String>,
}

/// Learns a model from a stream of prepared examples.
#[derive(Debug)]
pub struct Trainer {
    cfg: ClassifierConfig,
    model: Model,
    cache: Vec<Example>,
    cached_feats: usize,
    max_cached_feats: usize,
    spam: u64,
    ham: u64,
}

impl Trainer {
    /// A trainer with the given settings.
    pub fn new(cfg: &ClassifierConfig) -> Trainer {
        Trainer {
            model: Model::new(cfg.feature_config(), cfg.learn_params()),
            cache: Vec::new(),
            cached_feats: 0,
            max_cached_feats: cfg.max_cache_mb.saturating_mul(1 << 20) / 4,
            cfg: cfg.clone(),
            spam: 0,
            ham: 0,
        }
    }

    /// The model as learned so far (streaming pass only).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Learns one message (the streaming pass) and caches it for the later passes
    /// while the cache has room.
    pub fn add(&mut self, example: Example) {
        if example.spam {
            self.spam += 1;
        } else {
            self.ham += 1;
        }
        self.model.update(&example.feats, example.spam);
        if self.cached_feats + example.feats.len() + 8 <= self.max_cached_feats {
            self.cached_feats += example.feats.len() + 8;
            self.cache.push(example);
        }
    }

    /// Finishes training: extra passes, cross-fitting, keyword weights, combination,
    /// thresholds and calibration against `keywords` (the lists in force).
    pub fn finish(mut self, keywords: &KeywordSet) -> (Model, TrainReport) {
        let passes = self.cfg.passes.max(1);
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut order: Vec<usize> = (0..self.cache.len()).collect();
        for _ in 1..passes {
            rng.shuffle(&mut order);
            for &i in &order {
                let e = &self.cache[i];
                self.model.update(&e.feats, e.spam);
            }
        }
        let now = unix_now();
        let mut model = self.model;
        model.meta.stats.trained_spam = self.spam;
        model.meta.stats.trained_ham = self.ham;
        model.meta.stats.created = now;
        model.meta.stats.updated = now;
        let mut report = TrainReport {
            spam: self.spam,
            ham: self.ham,
            cached: self.cache.len() as u64,
            crossfit_auc: None,
            keyword_factor: 0.0,
            classifier_factor: 1.0,
            warnings: Vec::new(),
        };
        let cache = &self.cache;
        let (nspam, nham) = label_counts(cache);
        if nspam == 0 || nham == 0 {
            // Nothing to calibrate against: raw log-odds as points, list weights kept.
            return (model, report);
        }

        // 2. Honest classifier log-odds by forward chaining: the cache (in arrival
        //    order) is cut into `folds` blocks; each block after the first is scored
        //    by a model trained on the blocks before it, as deployed models score
        //    mail that arrives after their training.
        let folds = (self.cfg.folds.max(2) as usize).min(cache.len());
        let block = cache.len().div_ceil(folds);
        let honest_from = block.min(cache.len());
        let mut z = vec![0.0f64; cache.len()];
        for fold in 1..folds {
            let (lo, hi) = (fold * block, ((fold + 1) * block).min(cache.len()));
            if lo >= hi {
                break;
            }
            let mut m = Model::new(model.meta.features.clone(), model.meta.learning.clone());
            let mut idx: Vec<usize> = (0..lo).collect();
            for pass in 0..passes {
                if pass > 0 {
                    rng.shuffle(&mut idx);
                }
                for &i in &idx {
                    m.update(&cache[i].feats, cache[i].spam);
                }
            }
            for i in lo..hi {
                z[i] = logit_of(&m.weights, m.meta.bias, cache[i].feats.iter().copied());
            }
        }
        let cache = &cache[honest_from..];
        let z = &z[honest_from..];
        let (nspam, nham) = label_counts(cache);
        if nspam == 0 || nham == 0 {
            return (model, report);
        }

        // 3. Keyword weights (log-odds units) from keyword hits alone.
        let nk = keywords.keywords.len();
        let kw_w = fit_sparse_logistic(cache, nk, self.cfg.keyword_l2);
        let kw: Vec<f64> = cache
            .iter()
            .map(|e| {
                e.keywords
                    .iter()
                    .map(|&(k, x)| kw_w.get(k as usize).copied().unwrap_or(0.0) * f64::from(x))
                    .sum()
            })
            .collect();

        // 4. Combination: label ~ c + a·kw + b·z.
        let labels: Vec<bool> = cache.iter().map(|e| e.spam).collect();
        let [c, a, b] = fit_dense_logistic3(&kw, z, &labels);
        let raw: Vec<f64> = (0..cache.len()).map(|i| c + a * kw[i] + b * z[i]).collect();
        let pairs: Vec<(f64, bool)> = raw.iter().copied().zip(labels.iter().copied()).collect();
        report.crossfit_auc = Some(crate::eval::roc_auc(&pairs));
        report.keyword_factor = a;
        report.classifier_factor = b;

        // 5. Thresholds for the target false-positive rates, then points.
        let q_raw = threshold_for_fpr(&pairs, self.cfg.quarantine_fpr);
        let r_raw = threshold_for_fpr(&pairs, self.cfg.reject_fpr).max(q_raw + MIN_GAP);
        let defaults = Config::default().thresholds;
        let s = (defaults.reject - defaults.quarantine) / (r_raw - q_raw);
        model.meta.calibration = Calibration {
            scale: s * b,
            offset: s * (c - q_raw) + defaults.quarantine,
        };
        let recall =
            |t: f64| pairs.iter().filter(|p| p.1 && p.0 >= t).count() as f64 / nspam as f64;
        model.meta.thresholds = Some(TrainedThresholds {
            quarantine: defaults.quarantine,
            reject: defaults.reject,
            quarantine_fpr: self.cfg.quarantine_fpr,
            reject_fpr: self.cfg.reject_fpr,
            quarantine_recall: recall(q_raw),
            reject_recall: recall(r_raw),
        });
        model.meta.keywords = keywords
            .keywords
            .iter()
            .enumerate()
            .map(|(i, k)| KeywordWeight {
                keyword: k.text.clone(),
                category: keywords
                    .categories
                    .get(k.category)
                    .cloned()
                    .unwrap_or_default(),
                weight: round6(s * a * kw_w.get(i).copied().unwrap_or(0.0)),
            })
            .collect();
        (model, report)
    }
}

/// The smallest distance between the quarantine and reject thresholds, in log-odds.
const MIN_GAP: f64 = 2.0;

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A threshold that flags at most `fpr` of the ham (scores `>= t`) and as much
/// spam as any such threshold: halfway between the highest ham that must not be
/// flagged and the lowest spam above it (the widest margin on both sides, which
/// matters when the training set is small and the classes are far apart).
pub fn threshold_for_fpr(scored: &[(f64, bool)], fpr: f64) -> f64 {
    let mut hams: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    if hams.is_empty() {
        return 0.0;
    }
    hams.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr.max(0.0) * hams.len() as f64).floor() as usize;
    let Some(&h) = hams.get(allowed) else {
        return hams.last().copied().unwrap_or(0.0);
    };
    let next_spam = scored
        .iter()
        .filter(|s| s.1 && s.0 > h)
        .map(|s| s.0)
        .min_by(f64::total_cmp);
    match next_spam {
        Some(sp) => h + (sp - h) / 2.0,
        // No spam above it: just above the ham.
        None => h + 1e-6 * h.abs().max(1.0),
    }
}

/// L2-regularised logistic regression on sparse keyword features (full-batch
/// gradient descent with AdaGrad steps); returns one weight per keyword.
fn fit_sparse_logistic(examples: &[Example], nk: usize, l2: f64) -> Vec<f64> {
    let mut w = vec![0.0f64; nk];
    let mut bias = 0.0f64;
    let mut g2 = vec![1e-8f64; nk + 1];
    let n = examples.len().max(1) as f64;
    let mut grad = vec![0.0f64; nk];
    for _ in 0..300 {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut gb = 0.0;
        for e in examples {
            let z = bias
                + e.keywords
                    .iter()
                    .map(|&(k, x)| w.get(k as usize).copied().unwrap_or(0.0) * f64::from(x))
                    .sum::<f64>();
            let g = sigmoid(z) - if e.spam { 1.0 } else { 0.0 };
            gb += g;
            for &(k, x) in &e.keywords {
                if let Some(gk) = grad.get_mut(k as usize) {
                    *gk += g * f64::from(x);
                }
            }
        }
        for k in 0..nk {
            let gk = grad[k] / n + l2 * w[k];
            g2[k] += gk * gk;
            w[k] -= 0.5 * gk / g2[k].sqrt();
        }
        let gb = gb / n;
        g2[nk] += gb * gb;
        bias -= 0.5 * gb / g2[nk].sqrt();
    }
    w
}

/// Logistic regression of `labels` on `(1, x1, x2)` by Newton's method with a small
/// ridge (the data are close to separable); returns `[c, a, b]`.
fn fit_dense_logistic3(x1: &[f64], x2: &[f64], labels: &[bool]) -> [f64; 3] {
    let mut beta = [0.0f64, 0.0, 1.0];
    let ridge = 1e-3 * labels.len().max(1) as f64;
    for _ in 0..50 {
        let mut g = [0.0f64; 3];
        let mut h = [[0.0f64; 3]; 3];
        for i in 0..labels.len() {
            let x = [1.0, x1[i], x2[i]];
            let p = sigmoid(beta[0] + beta[1] * x[1] + beta[2] * x[2]);
            let y = if labels[i] { 1.0 } else { 0.0 };
            let wgt = (p * (1.0 - p)).max(1e-9);
            for r in 0..3 {
                g[r] += (p - y) * x[r];
                for c in 0..3 {
                    h[r][c] += wgt * x[r] * x[c];
                }
            }
        }
        for r in 1..3 {
            g[r] += ridge * beta[r];
            h[r][r] += ridge;
        }
        h[0][0] += 1e-9;
        let Some(step) = solve3(h, g) else { break };
        let mut done = true;
        for r in 0..3 {
            beta[r] -= step[r];
            done &= step[r].abs() < 1e-9;
        }
        if done {
            break;
        }
    }
    if !beta.iter().all(|b| b.is_finite()) || beta[2] <= 0.0 {
        return [0.0, 0.0, 1.0];
    }
    beta
}

/// Solves a 3×3 linear system by Gaussian elimination with partial pivoting.
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let piv = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..3 {
            let f = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (k, x) in a[row].iter_mut().enumerate().skip(col) {
                *x -= f * pivot_row[k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0f64; 3];
    for row in (0..3).rev() {
        let s: f64 = (row + 1..3).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// A small deterministic PRNG (xorshift64*), so training is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flag_at_most_the_target_share_of_ham() {
        let mut v: Vec<(f64, bool)> = (0..1000).map(|i| (i as f64, false)).collect();
        v.extend((0..100).map(|i| (900.0 + i as f64 * 2.0, true)));
        let t = threshold_for_fpr(&v, 0.01);
        assert_eq!(v.iter().filter(|p| !p.1 && p.0 >= t).count(), 10);
        let t = threshold_for_fpr(&v, 0.0);
        assert_eq!(v.iter().filter(|p| !p.1 && p.0 >= t).count(), 0);
    }

    #[test]
    fn combination_fit_is_sane() {
        let x1: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let x2: Vec<f64> = (0..200).map(|i| (i as f64 - 100.0) / 20.0).collect();
        let y: Vec<bool> = (0..200).map(|i| i > 95 + (i % 7)).collect();
        let [_, _, b] = fit_dense_logistic3(&x1, &x2, &y);
        assert!(b > 0.0);
    }

    #[test]
    fn solve3_solves() {
        let x = solve3(
            [[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [1.0, 0.0, 4.0]],
            [3.0, 3.0, 5.0],
        );
        let x = x.unwrap();
        assert!(
            (x[0] - 1.0).abs() < 1e-12 && (x[1] - 1.0).abs() < 1e-12 && (x[2] - 1.0).abs() < 1e-12
        );
    }
}
