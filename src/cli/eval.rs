//! `chaff eval`: accuracy and speed on TREC-style labelled index files.

use super::output::Format;
use super::{CliError, engine, progress};
use chaff::eval::{Confusion, fpr_at_recall, recall_at_fpr, roc_auc};
use chaff::input::index;
use chaff::ordered::Ordered;
use chaff::{Action, Envelope};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `chaff eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub batch: super::BatchArgs,
    /// Train a model on these indexes (in memory) and test it on INDEX...
    #[arg(long = "train", value_name = "INDEX")]
    pub train: Vec<PathBuf>,
    /// Train on the first FRACTION of INDEX... (in index order, as TREC did) and test
    /// on the rest, e.g. `--split 0.5`.
    #[arg(long, value_name = "FRACTION", conflicts_with = "train")]
    pub split: Option<f64>,
    /// With --train or --split: the classifier to measure.
    #[arg(long, value_enum, default_value_t = super::train::Method::Logistic)]
    pub method: super::train::Method,
    /// Index files: lines of `spam PATH` or `ham PATH`, relative to the index.
    #[arg(required = true)]
    pub indexes: Vec<PathBuf>,
}

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

/// The figures of one evaluation run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Messages, counts and rates.
    #[serde(flatten)]
    pub counts: Counts,
    /// Share of flagged that is spam.
    pub precision: f64,
    /// ROC area under the curve of the scores.
    pub auc: f64,
    /// Spam recall at 0.1 % ham false positives (best threshold).
    pub recall_at_0_1pct_fpr: f64,
    /// Spam recall at 1 % ham false positives (best threshold).
    pub recall_at_1pct_fpr: f64,
    /// Ham false positives at 99 % spam recall (best threshold).
    pub fpr_at_99pct_recall: f64,
    /// Messages that could not be read.
    pub unreadable: u64,
    /// Throughput, reading included, engine start-up excluded.
    pub msgs_per_sec: f64,
}

/// Scans every labelled message and prints the report.
pub fn run(args: EvalArgs) -> Result<ExitCode, CliError> {
    if !args.train.is_empty() || args.split.is_some() {
        return super::train::eval_trained(
            args.batch.config.as_deref(),
            args.batch.format,
            args.batch.jobs,
            &args.train,
            args.split,
            args.method,
            &args.indexes,
        );
    }
    let engine = engine(args.batch.config.as_deref())?;
    let mut labelled = Vec::new();
    for idx in &args.indexes {
        labelled.extend(index::read(idx)?);
    }
    let Scanned {
        confusion,
        scored,
        unreadable,
        elapsed,
    } = scan_labelled(&engine, labelled, args.batch.jobs)?;
    let report = Report {
        counts: Counts::from(confusion),
        precision: confusion.precision(),
        auc: roc_auc(&scored),
        recall_at_0_1pct_fpr: recall_at_fpr(&scored, 0.001),
        recall_at_1pct_fpr: recall_at_fpr(&scored, 0.01),
        fpr_at_99pct_recall: fpr_at_recall(&scored, 0.99),
        unreadable,
        msgs_per_sec: per_sec(confusion.total() + unreadable, elapsed),
    };
    print_report(args.batch.format, &report)?;
    Ok(if unreadable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
    ordered.run(
        labelled,
        |item| {
            let result = std::fs::read(&item.path).map(|raw| engine.scan(&raw, &envelope));
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

/// Prints a report as text or one JSON object.
pub fn print_report(format: Format, r: &Report) -> Result<(), CliError> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(r)?),
        Format::Text => {
            let pct = |x: f64| format!("{:.2} %", x * 100.0);
            println!("messages          {}", r.counts.messages);
            r.counts.print(pct);
            println!("precision         {}", pct(r.precision));
            println!(
                "ROC AUC           {:.4}  (1-AUC {:.3} %)",
                r.auc,
                (1.0 - r.auc) * 100.0
            );
            println!("recall @0.1% FPR  {}", pct(r.recall_at_0_1pct_fpr));
            println!("recall @1% FPR    {}", pct(r.recall_at_1pct_fpr));
            println!("FPR @99% recall   {}", pct(r.fpr_at_99pct_recall));
            if r.unreadable > 0 {
                println!("unreadable        {}", r.unreadable);
            }
            println!("messages/s        {:.0}", r.msgs_per_sec);
        }
    }
    Ok(())
}
