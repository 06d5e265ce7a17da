//! Training and evaluation for chaff, outside the scanning path.
//!
//! The engine (the `chaff` crate) extracts what a learner needs from a message
//! ([`chaff::Engine::extract`]: the classifier's feature buckets and the keyword
//! occurrences, read exactly as a scan reads them); this crate turns labelled
//! messages into a model ([`train`]), corrects a model with one message
//! ([`learn`]), compares with naive Bayes ([`bayes`]), reads labelled corpora
//! ([`index`]), and measures accuracy ([`eval`]). Only [`learn`] is linked into the
//! service (its `/learnspam` and `/learnham`); nothing here is on a scan's path.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bayes;
pub mod eval;
pub mod folds;
pub mod index;
pub mod learn;
pub mod rng;
pub mod train;

pub use learn::{Learned, learn_message};
pub use train::{Example, TrainReport, Trainer, prepare};
