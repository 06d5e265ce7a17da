//! Measuring a filter on labelled mail: confusion counts, ROC AUC and the
//! operating points the TREC spam track reports.
//!
//! Higher scores mean "more spam". A message is *flagged* when its action is not
//! deliver; ROC figures use the raw score, so they do not depend on thresholds.

use serde::Serialize;

/// Counts of a labelled run. Spam is the positive class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Spam flagged.
    pub tp: u64,
    /// Ham flagged.
    pub fp: u64,
    /// Ham delivered.
    pub tn: u64,
    /// Spam delivered.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    /// Records one message.
    pub fn add(&mut self, spam: bool, flagged: bool) {
        match (spam, flagged) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }

    /// Messages counted.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// Share of spam flagged.
    pub fn spam_recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Share of ham flagged.
    pub fn ham_fpr(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }

    /// Share of flagged mail that is spam.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Area under the ROC curve of `(score, is_spam)` pairs: the probability that a
/// random spam scores above a random ham (ties count one half). 0.5 when either
/// class is missing.
pub fn roc_auc(scored: &[(f64, bool)]) -> f64 {
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let spam = sorted.iter().filter(|s| s.1).count() as f64;
    let ham = sorted.len() as f64 - spam;
    if spam == 0.0 || ham == 0.0 {
        return 0.5;
    }
    // Mann-Whitney U with average ranks over ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    (rank_sum - spam * (spam + 1.0) / 2.0) / (spam * ham)
}

/// The highest spam recall reachable with a threshold whose ham false-positive
/// rate is at most `max_fpr` (flagged = score strictly above the threshold).
pub fn recall_at_fpr(scored: &[(f64, bool)], max_fpr: f64) -> f64 {
    let mut hams: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let spams: Vec<f64> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    if spams.is_empty() {
        return 0.0;
    }
    hams.sort_by(|a, b| b.total_cmp(a));
    let allowed = (max_fpr * hams.len() as f64).floor() as usize;
    // Threshold: the (allowed+1)-th highest ham score; everything above it is flagged.
    let threshold = hams.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    spams.iter().filter(|&&s| s > threshold).count() as f64 / spams.len() as f64
}

/// The lowest ham false-positive rate of a threshold that flags at least
/// `min_recall` of the spam.
pub fn fpr_at_recall(scored: &[(f64, bool)], min_recall: f64) -> f64 {
    let mut spams: Vec<f64> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    let hams: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    if spams.is_empty() || hams.is_empty() {
        return 0.0;
    }
    spams.sort_by(|a, b| b.total_cmp(a));
    let needed = ((min_recall * spams.len() as f64).ceil() as usize).clamp(1, spams.len());
    // Flag every score >= the needed-th highest spam score.
    let threshold = spams[needed - 1];
    hams.iter().filter(|&&h| h >= threshold).count() as f64 / hams.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_tied_scores() {
        assert_eq!(roc_auc(&[(0.0, false), (1.0, true)]), 1.0);
        assert_eq!(roc_auc(&[(1.0, false), (0.0, true)]), 0.0);
        assert_eq!(roc_auc(&[(1.0, false), (1.0, true)]), 0.5);
        let v = [(0.1, false), (0.4, true), (0.5, false), (0.8, true)];
        assert_eq!(roc_auc(&v), 0.75);
    }

    #[test]
    fn operating_points() {
        let mut v: Vec<(f64, bool)> = (0..1000).map(|i| (i as f64, false)).collect();
        v.extend((0..100).map(|i| (990.5 + i as f64, true)));
        // 0.1 % of 1000 hams = 1 ham may be flagged: threshold at 998, 92 spams above.
        assert_eq!(recall_at_fpr(&v, 0.001), 92.0 / 100.0);
        assert_eq!(fpr_at_recall(&v, 1.0), 9.0 / 1000.0);
    }

    #[test]
    fn confusion() {
        let mut c = Confusion::default();
        c.add(true, true);
        c.add(true, false);
        c.add(false, false);
        c.add(false, true);
        assert_eq!(
            (c.spam_recall(), c.ham_fpr(), c.precision(), c.total()),
            (0.5, 0.5, 0.5, 4)
        );
    }
}
