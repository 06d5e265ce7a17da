//! Training: from labelled messages to a [`Model`] with calibrated score points,
//! trained keyword weights and thresholds for a target false-positive rate.
//!
//! This module exists to keep every statistical decision of `chaff train` (and of
//! `chaff eval --train/--split/--folds`, which train the same way in memory) in one
//! place:
//!
//! 1. **Order.** Training does not depend on the order the messages are given in
//!    (users list a ham folder, then a spam folder). Messages are collected first,
//!    byte-identical duplicates once ([`Example::digest`]), and put in a canonical
//!    order: by a seeded hash of their bytes, which is a shuffle that no input
//!    order can change, so the same messages in any order give the same model.
//!    `--chronological` ([`Trainer::chronological`]) orders them by their `Date:`
//!    header instead, for a model that is meant to learn as mail arrives.
//! 2. **Token classifier.** Online logistic regression over hashed binary features
//!    (unit-length feature vectors, TONE "train on or near error"), one pass in the
//!    canonical order, then `passes - 1` shuffled passes. Memory is bounded
//!    (`max_cache_mb`): beyond it, the messages whose hash ranks last are learned
//!    once, when they leave (or never enter) the cache; which messages those are
//!    does not depend on the input order either.
//! 3. **Honest scores.** The same learner is trained `folds` times, each time
//!    without one *stratified* fold (spam and ham dealt evenly round the folds), and
//!    scores the fold it did not see. These out-of-sample log-odds are what the
//!    thresholds and the combination are fitted on (scores of training messages
//!    under the final model would be over-confident). In chronological mode the
//!    folds are blocks in time order instead, each scored by a model trained on the
//!    blocks before it (forward chaining), as a deployed model scores later mail.
//!    Training warns ([`TrainReport::warnings`]) when a fold holds no spam or no
//!    ham, or when the cross-fitted AUC falls far below the in-sample one: signs
//!    that the folds do not look alike and the thresholds cannot be trusted.
//! 4. **Keyword weights.** A logistic regression on the keyword hits alone (each
//!    keyword's feature is its diminishing-returns count, exactly as the scorer
//!    counts it), with a little L2.
//! 5. **Combination.** A three-parameter logistic regression of the label on
//!    (keyword log-odds, classifier log-odds) gives how much each counts.
//! 6. **Thresholds.** On the combined honest scores, the quarantine and reject
//!    thresholds are the lowest scores that flag at most `quarantine_fpr` and
//!    `reject_fpr` of the training ham. The score is then scaled so that these two
//!    points fall on the default `[thresholds]` (9 and 15 points): the configured
//!    thresholds keep their meaning with or without a model.

use crate::eval::roc_auc;
use crate::rng::{Rng, mix};
use chaff::Engine;
use chaff::classify::model::{
    Calibration, KeywordWeight, Model, TrainedThresholds, logit_of, sigmoid,
};
use chaff::classify::{ClassifierConfig, FeatureConfig};
use chaff::config::Config;
use chaff::keywords::KeywordSet;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};

/// `(spam, ham)` among `examples`.
fn label_counts<'a>(examples: impl IntoIterator<Item = &'a Example>) -> (usize, usize) {
    let (mut spam, mut ham) = (0, 0);
    for e in examples {
        if e.spam {
            spam += 1;
        } else {
            ham += 1;
        }
    }
    (spam, ham)
}

/// One prepared training message: its label, its feature buckets, its keyword
/// features, and what orders it (a hash of its bytes, its date).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// True for spam.
    pub spam: bool,
    /// Distinct feature buckets.
    pub feats: Vec<u32>,
    /// `(keyword index, diminishing-returns count)` for each keyword found.
    pub keywords: Vec<(u32, f32)>,
    /// A 128-bit hash of the message's bytes ([`digest`]): byte-identical messages
    /// (an mbox `From ` line and trailing line ends aside) share it and are
    /// learned once; it also places the message in the canonical training order.
    pub digest: u128,
    /// The `Date:` header, seconds since the Unix epoch, when it parses (the order
    /// of `--chronological`).
    pub date: Option<i64>,
}

/// The hash that identifies a message's bytes (XXH3-128): stable across runs,
/// machines and versions, so a training order and a duplicate are the same
/// everywhere. A leading mbox `From ` line and the line ends after the last line
/// are left out, so a message copied between an mbox file and a Maildir is still
/// the same message.
pub fn digest(raw: &[u8]) -> u128 {
    let raw = chaff::parse::skip_envelope_line(raw);
    let end = raw
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    twox_hash::XxHash3_128::oneshot(&raw[..end])
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
        digest: digest(raw),
        date: chaff::parse::date(raw),
    }
}

/// What training found, for the `train` report.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Spam messages learned.
    pub spam: u64,
    /// Ham messages learned.
    pub ham: u64,
    /// Messages whose features were cached for the extra passes and the
    /// calibration.
    pub cached: u64,
    /// Messages that did not fit in `max_cache_mb` and were learned once.
    pub streamed: u64,
    /// Byte-identical copies of a message already given, skipped.
    pub duplicates: u64,
    /// Of those, copies given with the other label (the first label was kept).
    pub conflicts: u64,
    /// ROC AUC of the cross-fitted combined scores on the training data.
    pub crossfit_auc: Option<f64>,
    /// ROC AUC of the final model's combined scores on the training data: what
    /// the cross-fitted AUC is compared with.
    pub insample_auc: Option<f64>,
    /// Each calibration fold's cross-fitted AUC (`None`: the fold was not scored,
    /// or holds only one class).
    pub fold_auc: Vec<Option<f64>>,
    /// Weight of the keyword log-odds in the combination.
    pub keyword_factor: f64,
    /// Weight of the classifier log-odds in the combination.
    pub classifier_factor: f64,
    /// What the admin should know about the training data (printed by `train`).
    pub warnings: Vec<String>,
}

/// How far (in AUC) the cross-fitted AUC of the whole set or of one fold may fall
/// below the in-sample AUC before training warns. On the dev corpora honest folds
/// stay within 0.001 of it (trec06c-dev 0.99999 against 1.0, trec07p-dev 0.9997 to
/// 0.99999); label-sorted input with forward chaining fell 0.015 to 0.08 below.
pub const AUC_GAP_WARNING: f64 = 0.01;

/// The AUC comparisons above are made only for a fold (or a whole set) with at
/// least this many spam and this many ham: below it, one misranked pair moves the
/// AUC by more than a thousandth and the gap says nothing.
pub const AUC_MIN_CLASS: usize = 20;

/// The order a [`Trainer`] learns in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// A seeded hash of each message's bytes: independent of the input order.
    Shuffled,
    /// By `Date:` header (a message without one keeps the date of the message
    /// given before it), ties in input order; calibration by forward chaining.
    Chronological,
}

/// The seed of the canonical order and of the shuffled passes. Fixed, so training
/// is reproducible.
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// A message kept for the passes and the calibration, with what orders it.
#[derive(Debug)]
struct Cached {
    example: Example,
    /// The canonical sort key: a seeded hash rank, or (chronological) the date.
    key: (i64, u128),
}

/// Learns a model from a stream of prepared examples.
#[derive(Debug)]
pub struct Trainer {
    cfg: ClassifierConfig,
    order: Order,
    model: Model,
    /// Cached messages; `None` where one was evicted.
    cache: Vec<Option<Cached>>,
    /// Free slots of `cache`.
    free: Vec<usize>,
    /// Shuffled mode: the cached messages by key, highest on top (the next to
    /// evict when the cache is over its budget).
    heap: BinaryHeap<((i64, u128), usize)>,
    /// Shuffled mode: no message with this key or above is cached (the lowest key
    /// evicted so far).
    cutoff: Option<(i64, u128)>,
    cached_feats: usize,
    max_cached_feats: usize,
    /// Digest → label of every message given.
    seen: HashMap<u128, bool>,
    /// Chronological mode: the last date seen, and input positions.
    last_date: i64,
    seq: u64,
    spam: u64,
    ham: u64,
    streamed: u64,
    duplicates: u64,
    conflicts: u64,
}

impl Trainer {
    /// A trainer with the given settings, learning in the canonical (shuffled)
    /// order whatever order the messages come in.
    pub fn new(cfg: &ClassifierConfig) -> Trainer {
        Trainer::with_order(cfg, Order::Shuffled)
    }

    /// A trainer that learns in `Date:` order and calibrates by forward chaining
    /// (`chaff train --chronological`).
    pub fn chronological(cfg: &ClassifierConfig) -> Trainer {
        Trainer::with_order(cfg, Order::Chronological)
    }

    fn with_order(cfg: &ClassifierConfig, order: Order) -> Trainer {
        Trainer {
            model: Model::new(cfg.feature_config(), cfg.learn_params()),
            order,
            cache: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            cutoff: None,
            cached_feats: 0,
            max_cached_feats: cfg.max_cache_mb.saturating_mul(1 << 20) / 4,
            cfg: cfg.clone(),
            seen: HashMap::new(),
            last_date: i64::MIN,
            seq: 0,
            spam: 0,
            ham: 0,
            streamed: 0,
            duplicates: 0,
            conflicts: 0,
        }
    }

    /// Takes one message. A byte-identical copy of one already given is skipped
    /// (counted in [`TrainReport::duplicates`]). Learning happens in
    /// [`Trainer::finish`], except for messages that do not fit in the cache,
    /// which are learned once, now.
    pub fn add(&mut self, example: Example) {
        match self.seen.entry(example.digest) {
            Entry::Occupied(first) => {
                self.duplicates += 1;
                self.conflicts += u64::from(*first.get() != example.spam);
                return;
            }
            Entry::Vacant(v) => {
                v.insert(example.spam);
            }
        }
        if example.spam {
            self.spam += 1;
        } else {
            self.ham += 1;
        }
        let key = match self.order {
            Order::Shuffled => {
                let (lo, hi) = (example.digest as u64, (example.digest >> 64) as u64);
                (mix(lo ^ mix(hi ^ SEED)) as i64, example.digest)
            }
            Order::Chronological => {
                self.last_date = example.date.unwrap_or(self.last_date);
                self.seq += 1;
                (self.last_date, u128::from(self.seq))
            }
        };
        let size = example.feats.len() + 8;
        if self.cutoff.is_some_and(|c| key >= c)
            || (self.order == Order::Chronological
                && self.cached_feats + size > self.max_cached_feats)
        {
            // Ranks beyond what the cache keeps (or, in time order, arrives after
            // the cache is full): learned once, now.
            self.streamed += 1;
            self.model.update(&example.feats, example.spam);
            return;
        }
        self.cached_feats += size;
        let slot = self.free.pop().unwrap_or(self.cache.len());
        let entry = Some(Cached { example, key });
        if slot == self.cache.len() {
            self.cache.push(entry);
        } else {
            self.cache[slot] = entry;
        }
        if self.order == Order::Shuffled {
            self.heap.push((key, slot));
            // Over budget: the highest keys leave, learned once on their way out,
            // so the cache always holds the lowest-ranked messages that fit,
            // whatever the order they came in.
            while self.cached_feats > self.max_cached_feats {
                let Some((key, slot)) = self.heap.pop() else {
                    break;
                };
                if let Some(c) = self.cache.get_mut(slot).and_then(Option::take) {
                    self.cached_feats -= c.example.feats.len() + 8;
                    self.free.push(slot);
                    self.cutoff = Some(self.cutoff.map_or(key, |k| k.min(key)));
                    self.streamed += 1;
                    self.model.update(&c.example.feats, c.example.spam);
                }
            }
        }
    }

    /// Finishes training: the passes, cross-fitting, keyword weights, combination,
    /// thresholds and calibration against `keywords` (the lists in force).
    pub fn finish(self, keywords: &KeywordSet) -> (Model, TrainReport) {
        let Trainer {
            cfg,
            order,
            mut model,
            cache,
            ..
        } = self;
        let mut cache: Vec<Cached> = cache.into_iter().flatten().collect();
        cache.sort_by_key(|c| c.key);
        let cache: Vec<Example> = cache.into_iter().map(|c| c.example).collect();
        let passes = cfg.passes.max(1);
        let mut rng = Rng::new(SEED);
        let all: Vec<usize> = (0..cache.len()).collect();
        learn(&mut model, &cache, &all, passes, &mut rng);

        let now = unix_now();
        model.meta.stats.trained_spam = self.spam;
        model.meta.stats.trained_ham = self.ham;
        model.meta.stats.created = now;
        model.meta.stats.updated = now;
        let mut report = TrainReport {
            spam: self.spam,
            ham: self.ham,
            cached: cache.len() as u64,
            streamed: self.streamed,
            duplicates: self.duplicates,
            conflicts: self.conflicts,
            crossfit_auc: None,
            insample_auc: None,
            fold_auc: Vec::new(),
            keyword_factor: 0.0,
            classifier_factor: 1.0,
            warnings: Vec::new(),
        };
        if self.conflicts > 0 {
            report.warnings.push(format!(
                "{} message(s) were given both as spam and as ham; each was learned with the label it was first given",
                self.conflicts
            ));
        }
        if self.streamed > 0 {
            report.warnings.push(format!(
                "{} message(s) did not fit in max_cache_mb ({} MB) and were learned once{}; raise it to learn from all of them alike",
                self.streamed,
                cfg.max_cache_mb,
                if order == Order::Chronological {
                    ", in input order"
                } else {
                    ""
                }
            ));
        }
        let (nspam, nham) = label_counts(&cache);
        if nspam == 0 || nham == 0 {
            // Nothing to calibrate against: raw log-odds as points, list weights kept.
            report.warnings.push(format!(
                "no {} to learn from: the model has no trained thresholds or keyword weights",
                if nspam == 0 { "spam" } else { "ham" }
            ));
            return (model, report);
        }

        // 3. Honest classifier log-odds for every message that a fold scored.
        let folds = (cfg.folds.max(2) as usize).min(cache.len());
        let (fold_of, scored) = match order {
            Order::Shuffled => {
                let labels: Vec<bool> = cache.iter().map(|e| e.spam).collect();
                (crate::folds::assign(&labels, folds, SEED), 0..folds)
            }
            Order::Chronological => {
                let block = cache.len().div_ceil(folds);
                ((0..cache.len()).map(|i| i / block).collect(), 1..folds)
            }
        };
        let mut z = vec![f64::NAN; cache.len()];
        for fold in scored.clone() {
            let members: Vec<usize> = (0..cache.len()).filter(|&i| fold_of[i] == fold).collect();
            let (fs, fh) = label_counts(members.iter().map(|&i| &cache[i]));
            let train: Vec<usize> = match order {
                Order::Shuffled => (0..cache.len()).filter(|&i| fold_of[i] != fold).collect(),
                Order::Chronological => (0..cache.len()).filter(|&i| fold_of[i] < fold).collect(),
            };
            let (ts, th) = label_counts(train.iter().map(|&i| &cache[i]));
            let lacking = if fs == 0 || fh == 0 {
                Some(format!("holds no {}", if fs == 0 { "spam" } else { "ham" }))
            } else if ts == 0 || th == 0 {
                Some(format!(
                    "is scored by a model that saw no {}",
                    if ts == 0 { "spam" } else { "ham" }
                ))
            } else {
                None
            };
            if let Some(lacking) = lacking {
                report.warnings.push(format!(
                    "calibration fold {} of {folds} {lacking}: the thresholds rest on the other folds{}",
                    fold + 1,
                    if order == Order::Chronological {
                        " (with --chronological, give spam and ham of the same period)"
                    } else {
                        ""
                    }
                ));
            }
            if train.is_empty() || members.is_empty() {
                continue;
            }
            let mut m = Model::new(model.meta.features.clone(), model.meta.learning.clone());
            learn(&mut m, &cache, &train, passes, &mut rng);
            for &i in &members {
                z[i] = logit_of(&m.weights, m.meta.bias, cache[i].feats.iter().copied());
            }
        }
        let honest: Vec<usize> = (0..cache.len()).filter(|&i| z[i].is_finite()).collect();
        let examples: Vec<&Example> = honest.iter().map(|&i| &cache[i]).collect();
        let z: Vec<f64> = honest.iter().map(|&i| z[i]).collect();
        let (nspam, nham) = label_counts(examples.iter().copied());
        if nspam == 0 || nham == 0 {
            report.warnings.push(
                "the calibration folds hold no spam or no ham: the model has no trained thresholds or keyword weights".into(),
            );
            return (model, report);
        }

        // 4. Keyword weights (log-odds units) from keyword hits alone.
        let nk = keywords.keywords.len();
        let kw_w = fit_sparse_logistic(&examples, nk, cfg.keyword_l2);
        let kw_of = |e: &Example| -> f64 {
            e.keywords
                .iter()
                .map(|&(k, x)| kw_w.get(k as usize).copied().unwrap_or(0.0) * f64::from(x))
                .sum()
        };
        let kw: Vec<f64> = examples.iter().map(|e| kw_of(e)).collect();

        // 5. Combination: label ~ c + a·kw + b·z.
        let labels: Vec<bool> = examples.iter().map(|e| e.spam).collect();
        let [c, a, b] = fit_dense_logistic3(&kw, &z, &labels);
        let raw: Vec<f64> = (0..examples.len())
            .map(|i| c + a * kw[i] + b * z[i])
            .collect();
        let pairs: Vec<(f64, bool)> = raw.iter().copied().zip(labels.iter().copied()).collect();
        let crossfit = roc_auc(&pairs);
        // The same combination with the final model's (in-sample) log-odds.
        let insample: Vec<(f64, bool)> = examples
            .iter()
            .zip(&kw)
            .map(|(e, &k)| (c + a * k + b * model.logit_buckets(&e.feats), e.spam))
            .collect();
        let insample = roc_auc(&insample);
        report.crossfit_auc = Some(crossfit);
        report.insample_auc = Some(insample);
        report.keyword_factor = a;
        report.classifier_factor = b;
        let (spam_n, ham_n) = label_counts(examples.iter().copied());
        if spam_n.min(ham_n) >= AUC_MIN_CLASS && insample - crossfit > AUC_GAP_WARNING {
            report.warnings.push(format!(
                "cross-fitted AUC {crossfit:.6} is far below the in-sample AUC {insample:.6}: the calibration folds do not look alike, so the thresholds may not hold on new mail"
            ));
        }
        for fold in 0..folds {
            let members: Vec<(f64, bool)> = (0..examples.len())
                .filter(|&i| fold_of[honest[i]] == fold)
                .map(|i| pairs[i])
                .collect();
            let (fs, fh) = members.iter().fold(
                (0, 0),
                |(s, h), p| {
                    if p.1 { (s + 1, h) } else { (s, h + 1) }
                },
            );
            let auc = (fs > 0 && fh > 0).then(|| roc_auc(&members));
            report.fold_auc.push(auc);
            if let Some(auc) = auc
                && fs.min(fh) >= AUC_MIN_CLASS
                && insample - auc > AUC_GAP_WARNING
            {
                report.warnings.push(format!(
                    "calibration fold {} of {folds}: cross-fitted AUC {auc:.6} is far below the in-sample AUC {insample:.6}",
                    fold + 1
                ));
            }
        }

        // 6. Thresholds for the target false-positive rates, then points.
        let q_raw = threshold_for_fpr(&pairs, cfg.quarantine_fpr);
        let r_raw = threshold_for_fpr(&pairs, cfg.reject_fpr).max(q_raw + MIN_GAP);
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
            quarantine_fpr: cfg.quarantine_fpr,
            reject_fpr: cfg.reject_fpr,
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

/// Trains `model` on `cache[i]` for `i` in `set`: one pass in the given order,
/// then `passes - 1` passes each in a fresh shuffle.
fn learn(model: &mut Model, cache: &[Example], set: &[usize], passes: u32, rng: &mut Rng) {
    let mut order = set.to_vec();
    for pass in 0..passes {
        if pass > 0 {
            rng.shuffle(&mut order);
        }
        for &i in &order {
            model.update(&cache[i].feats, cache[i].spam);
        }
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
fn fit_sparse_logistic(examples: &[&Example], nk: usize, l2: f64) -> Vec<f64> {
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

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic message: spam draws its features mostly from buckets 0..400,
    /// ham from 300..700 (so they overlap and a model has something to learn).
    fn example(i: u64, spam: bool) -> Example {
        let mut rng = Rng::new(i * 2 + u64::from(spam));
        let base = if spam { 0 } else { 300 };
        let mut feats: Vec<u32> = (0..40)
            .map(|_| base + (rng.next_u64() % 400) as u32)
            .collect();
        feats.sort_unstable();
        feats.dedup();
        Example {
            spam,
            feats,
            keywords: Vec::new(),
            digest: u128::from(i) << 1 | u128::from(spam),
            date: Some(1_000_000 + i as i64),
        }
    }

    fn set() -> Vec<Example> {
        (0..300).map(|i| example(i, i % 3 != 0)).collect()
    }

    fn cfg() -> ClassifierConfig {
        ClassifierConfig {
            bits: 16,
            ..ClassifierConfig::default()
        }
    }

    fn train(
        cfg: &ClassifierConfig,
        examples: impl IntoIterator<Item = Example>,
    ) -> (Model, TrainReport) {
        let mut t = Trainer::new(cfg);
        examples.into_iter().for_each(|e| t.add(e));
        let (mut model, report) = t.finish(&KeywordSet::default());
        model.meta.stats.created = 0;
        model.meta.stats.updated = 0;
        (model, report)
    }

    /// Issue 13: the same messages in any order give the same model.
    #[test]
    fn the_input_order_does_not_change_the_model() {
        let (shuffled, report) = {
            let mut v = set();
            Rng::new(5).shuffle(&mut v);
            train(&cfg(), v)
        };
        let mut sorted = set();
        sorted.sort_by_key(|e| e.spam);
        let (by_label, _) = train(&cfg(), sorted);
        assert_eq!(shuffled, by_label);
        let (as_listed, _) = train(&cfg(), set());
        assert_eq!(shuffled, as_listed);
        assert!(shuffled.meta.thresholds.is_some());
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(report.fold_auc.len(), 4);
        assert!(
            report.fold_auc.iter().all(|a| a.is_some_and(|a| a > 0.9)),
            "{report:?}"
        );
    }

    /// Over the cache budget, the messages kept are the lowest-ranked that fit
    /// whatever the order, and the rest are learned once.
    #[test]
    fn eviction_does_not_depend_on_the_order() {
        let mut small = cfg();
        small.max_cache_mb = 1;
        // About 48 features (+8) a message: ~4,700 fit in 1 MB of u32s.
        let many: Vec<Example> = (0..6000).map(|i| example(i, i % 2 == 0)).collect();
        let mut reversed = many.clone();
        reversed.reverse();
        let (a, ra) = train(&small, many);
        let (b, rb) = train(&small, reversed);
        assert!(ra.streamed > 0 && ra.streamed == rb.streamed, "{ra:?}");
        assert_eq!(ra.cached, rb.cached);
        assert_eq!(ra.cached + ra.streamed, 6000);
        assert!(
            ra.warnings.iter().any(|w| w.contains("max_cache_mb")),
            "{ra:?}"
        );
        // The streamed messages were learned in different orders, so the weights
        // may differ a little; the calibration rests on the same cached set.
        assert_eq!(a.meta.thresholds.is_some(), b.meta.thresholds.is_some());
    }

    #[test]
    fn a_copy_from_an_mbox_has_the_same_digest() {
        let file = b"Subject: x\r\n\r\nbody\r\n";
        assert_eq!(
            digest(file),
            digest(b"From a@b Sat Jan  1 00:00:00 2000\nSubject: x\r\n\r\nbody\r\n\n")
        );
        assert_ne!(digest(file), digest(b"Subject: x\r\n\r\nbody.\r\n"));
        assert_ne!(digest(file), digest(b"Subject: x\r\n\r\n body\r\n"));
    }

    #[test]
    fn byte_identical_copies_are_learned_once() {
        let mut v = set();
        v.extend(set().into_iter().take(30));
        let mut flipped = example(7, true);
        flipped.spam = false; // same bytes, other label
        v.push(flipped);
        let (with_copies, report) = train(&cfg(), v);
        assert_eq!((report.duplicates, report.conflicts), (31, 1));
        assert_eq!(report.spam + report.ham, 300);
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("both as spam and as ham"))
        );
        let (once, _) = train(&cfg(), set());
        assert_eq!(with_copies, once);
    }

    /// Chronological training orders by date; when the dates put all the ham
    /// before all the spam the calibration folds hold one class each, and
    /// training says so.
    #[test]
    fn chronological_training_warns_about_one_class_folds() {
        let mut v = set();
        for e in &mut v {
            // Ham is older than every spam.
            e.date = Some(if e.spam { 2_000_000 } else { 1_000_000 } + e.digest as i64);
        }
        let mut t = Trainer::chronological(&cfg());
        v.into_iter().rev().for_each(|e| t.add(e));
        let (_, report) = t.finish(&KeywordSet::default());
        assert!(
            report.warnings.iter().any(|w| w.contains("holds no ham")),
            "{:?}",
            report.warnings
        );
        assert!(
            report.warnings.iter().any(|w| w.contains("saw no spam")),
            "{:?}",
            report.warnings
        );
        // Shuffled (the default) on the same messages: balanced folds, no warning.
        let (_, report) = train(&cfg(), set());
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

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
