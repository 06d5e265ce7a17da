//! K-fold evaluation on labelled mail: which fold each message is tested in, and
//! the order a fold's training messages are handed to the trainer.
//!
//! `chaff eval --folds K` trains K models, each on every fold but one, and scores
//! the fold it did not see; the held-out scores of all folds are pooled into one
//! set of figures. The folds are *stratified* (spam and ham are each dealt round
//! the folds after a seeded shuffle, so every fold holds its share of both) and
//! reproducible (the same seed gives the same folds on every machine), so another
//! filter can be measured on exactly the same folds (`--write-folds`,
//! `scripts/folds.sh`).

use crate::rng::Rng;

/// The fold (`0..k`) each message is tested in, for messages with these labels
/// (true: spam). Spam and ham are shuffled apart with `seed` and dealt round the
/// folds in turn, ham continuing where spam stopped, so fold sizes differ by at
/// most one and each class is spread as evenly as it can be.
pub fn assign(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut fold = vec![0usize; labels.len()];
    let mut rng = Rng::new(seed);
    let mut next = 0usize;
    for class in [true, false] {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        for i in members {
            fold[i] = next % k;
            next += 1;
        }
    }
    fold
}

/// The order in which a fold's training messages reach the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrainOrder {
    /// As listed in the index files.
    Index,
    /// All ham first, then all spam, each as listed: how a user lists a ham folder
    /// and a spam folder.
    Sorted,
    /// A seeded shuffle.
    Shuffled,
}

impl TrainOrder {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            TrainOrder::Index => "index",
            TrainOrder::Sorted => "sorted",
            TrainOrder::Shuffled => "shuffled",
        }
    }
}

/// The messages (indices into `labels`) that train the model tested on `fold`, in
/// `order`.
pub fn training_set(
    folds: &[usize],
    labels: &[bool],
    fold: usize,
    order: TrainOrder,
    seed: u64,
) -> Vec<usize> {
    let mut set: Vec<usize> = (0..folds.len()).filter(|&i| folds[i] != fold).collect();
    match order {
        TrainOrder::Index => {}
        // Stable: ham (false) before spam (true), each in index order.
        TrainOrder::Sorted => set.sort_by_key(|&i| labels[i]),
        TrainOrder::Shuffled => Rng::new(seed ^ (fold as u64 + 1)).shuffle(&mut set),
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_balanced_and_reproducible() {
        // 103 spam, 31 ham, interleaved unevenly.
        let labels: Vec<bool> = (0..134)
            .map(|i| i % 13 != 0 && i < 134 - 20 || i % 2 == 0 && i >= 114)
            .collect();
        let spam = labels.iter().filter(|&&s| s).count();
        let ham = labels.len() - spam;
        let folds = assign(&labels, 5, 1);
        assert_eq!(folds, assign(&labels, 5, 1));
        assert_ne!(folds, assign(&labels, 5, 2));
        for f in 0..5 {
            let n = folds.iter().filter(|&&x| x == f).count();
            let s = (0..labels.len())
                .filter(|&i| folds[i] == f && labels[i])
                .count();
            assert!(n.abs_diff(labels.len() / 5) <= 1, "fold {f}: {n}");
            assert!(s.abs_diff(spam / 5) <= 1, "fold {f}: {s} spam");
            assert!((n - s).abs_diff(ham / 5) <= 1, "fold {f}: {} ham", n - s);
        }
    }

    #[test]
    fn training_sets_leave_their_fold_out_in_the_order_asked() {
        let labels = [
            true, false, true, false, true, false, true, false, true, true,
        ];
        let folds = assign(&labels, 2, 3);
        for fold in 0..2 {
            let index = training_set(&folds, &labels, fold, TrainOrder::Index, 3);
            assert!(index.iter().all(|&i| folds[i] != fold));
            assert!(index.windows(2).all(|w| w[0] < w[1]));
            let sorted = training_set(&folds, &labels, fold, TrainOrder::Sorted, 3);
            let first_spam = sorted.iter().position(|&i| labels[i]).unwrap();
            assert!(sorted[first_spam..].iter().all(|&i| labels[i]));
            let mut shuffled = training_set(&folds, &labels, fold, TrainOrder::Shuffled, 3);
            shuffled.sort_unstable();
            assert_eq!(shuffled, index);
        }
    }
}
