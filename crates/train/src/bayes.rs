//! Naive Bayes with Robinson–Fisher combining (the method of bogofilter and
//! SpamBayes), over the same features as the logistic regression.
//!
//! It exists only so that the choice of method can be re-measured
//! (`chaff eval --split 0.5 --method bayes`): on the same features and split it is
//! compared with the logistic regression chaff ships. It is not used for scanning.

use crate::train::Example;

/// Robinson's `s` (strength of the prior), as bogofilter's default.
const ROB_S: f64 = 0.0178;
/// Robinson's `x` (the prior probability of an unknown token), as bogofilter's default.
const ROB_X: f64 = 0.52;
/// Tokens whose probability is within this of 0.5 are ignored, as bogofilter's default.
const MIN_DEV: f64 = 0.375;

/// Token counts per hash bucket.
#[derive(Debug, Clone)]
pub struct Bayes {
    spam: Vec<u32>,
    ham: Vec<u32>,
    nspam: u64,
    nham: u64,
}

impl Bayes {
    /// Empty counts over `2^bits` buckets.
    pub fn new(bits: u8) -> Bayes {
        let n = 1usize << bits.clamp(16, 26);
        Bayes {
            spam: vec![0; n],
            ham: vec![0; n],
            nspam: 0,
            nham: 0,
        }
    }

    /// Counts one message's features.
    pub fn add(&mut self, e: &Example) {
        let counts = if e.spam {
            self.nspam += 1;
            &mut self.spam
        } else {
            self.nham += 1;
            &mut self.ham
        };
        for &b in &e.feats {
            if let Some(c) = counts.get_mut(b as usize) {
                *c = c.saturating_add(1);
            }
        }
    }

    /// The Fisher-combined spamicity in [0, 1] (bogofilter's `(1 + S - H) / 2`).
    pub fn spamicity(&self, feats: &[u32]) -> f64 {
        let (ns, nh) = (self.nspam.max(1) as f64, self.nham.max(1) as f64);
        let (mut ln_s, mut ln_h, mut n) = (0.0f64, 0.0f64, 0usize);
        for &b in feats {
            let s = f64::from(self.spam.get(b as usize).copied().unwrap_or(0));
            let h = f64::from(self.ham.get(b as usize).copied().unwrap_or(0));
            if s + h == 0.0 {
                continue;
            }
            let p = (s / ns) / (s / ns + h / nh);
            let f = (ROB_S * ROB_X + (s + h) * p) / (ROB_S + s + h);
            if (f - 0.5).abs() < MIN_DEV {
                continue;
            }
            ln_s += (1.0 - f).ln();
            ln_h += f.ln();
            n += 1;
        }
        if n == 0 {
            return 0.5;
        }
        let s = 1.0 - chi2q(-2.0 * ln_s, 2 * n);
        let h = 1.0 - chi2q(-2.0 * ln_h, 2 * n);
        (1.0 + s - h) / 2.0
    }
}

/// The survival function of the chi-square distribution with `v` (even) degrees
/// of freedom.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_what_it_learned() {
        let mut b = Bayes::new(16);
        for _ in 0..20 {
            b.add(&Example {
                spam: true,
                feats: vec![1, 2, 3],
                keywords: vec![],
                digest: 1,
                date: None,
            });
            b.add(&Example {
                spam: false,
                feats: vec![4, 5, 6],
                keywords: vec![],
                digest: 2,
                date: None,
            });
        }
        assert!(b.spamicity(&[1, 2]) > 0.9);
        assert!(b.spamicity(&[4, 5]) < 0.1);
        assert_eq!(b.spamicity(&[9]), 0.5);
    }

    #[test]
    fn chi2q_matches_known_values() {
        assert!((chi2q(0.0, 4) - 1.0).abs() < 1e-12);
        // P(chi2_2 > 2) = e^-1
        assert!((chi2q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
    }
}
