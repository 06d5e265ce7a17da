//! What `eval` and `train` share: scanning labelled messages in order, and the
//! counts every accuracy report gives.

use super::{CliError, progress};
use crate::input::index;
use crate::ordered::Ordered;
use chaff::{Action, Envelope};
use chaff_train::eval::Confusion;
use serde::Serialize;
use std::time::Instant;

/// Counts and rates at the thresholds in force, as every report gives them.
#[derive(Debug, Serialize)]
pub struct Counts {
    /// Messages scored.
    pub messages: u64,
    /// TP / FP / TN / FN (spam is the positive class, flagged = not delivered).
    #[serde(flatten)]
    pub confusion: Confusion,
    /// Share of spam flagged.
    pub spam_recall: f64,
    /// Share of ham flagged.
    pub ham_fpr: f64,
}

impl From<Confusion> for Counts {
    fn from(c: Confusion) -> Counts {
        Counts {
            messages: c.total(),
            confusion: c,
            spam_recall: c.spam_recall(),
            ham_fpr: c.ham_fpr(),
        }
    }
}

impl Counts {
    /// The counts' lines of a text report.
    pub fn print(&self, pct: impl Fn(f64) -> String) {
        let c = &self.confusion;
        println!(
            "TP / FP / TN / FN {} / {} / {} / {}",
            c.tp, c.fp, c.tn, c.fn_
        );
        println!("spam recall       {}", pct(self.spam_recall));
        println!("ham FP rate       {}", pct(self.ham_fpr));
    }
}

/// `n` per second, 0 when no time passed.
pub fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// What scanning a labelled set gives.
pub struct Scanned {
    /// Flagged (not delivered) against the labels.
    pub confusion: Confusion,
    /// `(score, is_spam)` of every message read.
    pub scored: Vec<(f64, bool)>,
    /// Messages that could not be read (reported on stderr).
    pub unreadable: u64,
    /// Seconds taken, reading included, engine start-up excluded.
    pub elapsed: f64,
}

/// Scans every labelled message with `engine` on `jobs` threads, in order.
pub fn scan_labelled(
    engine: &chaff::Engine,
    labelled: Vec<index::Labelled>,
    jobs: usize,
) -> Result<Scanned, CliError> {
    let ordered = Ordered::new(jobs);
    let bar = progress(Some(labelled.len() as u64));
    let envelope = Envelope::default();
    // Throughput is measured on a ready engine; start-up is a separate figure.
    engine.wait_ready();
    let mut out = Scanned {
        confusion: Confusion::default(),
        scored: Vec::with_capacity(labelled.len()),
        unreadable: 0,
        elapsed: 0.0,
    };
    let started = Instant::now();
    let limit = engine.config().max_message_size;
    ordered.run(
        labelled,
        |item| {
            let result = crate::input::read_path(&item.path, limit)
                .map(|input| engine.scan_sized(&input.bytes, input.size, &envelope));
            (item, result.map(|v| (v.score, v.action != Action::Deliver)))
        },
        |(item, result)| {
            bar.inc(1);
            match result {
                Ok((score, flagged)) => {
                    out.confusion.add(item.spam, flagged);
                    out.scored.push((score, item.spam));
                }
                Err(e) => {
                    out.unreadable += 1;
                    eprintln!("chaff: {}: {e}", item.path.display());
                }
            }
        },
    );
    out.elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(out)
}
