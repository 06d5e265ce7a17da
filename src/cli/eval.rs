//! `chaff eval`: accuracy and speed on TREC-style labelled index files.

use super::labelled::{Counts, Scanned, per_sec, scan_labelled};
use super::output::Format;
use super::{CliError, engine};
use crate::input::index;
use chaff_train::eval::{fpr_at_recall, recall_at_fpr, roc_auc};
use chaff_train::folds::TrainOrder;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// K-fold evaluation: cut INDEX... into K stratified, seeded folds, train on
    /// all but one and test on that one, K times, and report the pooled held-out
    /// figures (e.g. `--folds 5`).
    #[arg(long, value_name = "K", conflicts_with_all = ["train", "split"])]
    pub folds: Option<usize>,
    /// With --folds: the seed of the fold assignment and of the shuffled order.
    #[arg(long, default_value_t = 1, requires = "folds")]
    pub seed: u64,
    /// With --folds: the order training messages are given in (several may be
    /// given, each measured on the same folds): `shuffled`, `sorted` (all ham,
    /// then all spam) or `index`.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "shuffled",
        requires = "folds"
    )]
    pub train_order: Vec<Order>,
    /// With --folds: write each fold's index files (`foldN.train`, `foldN.test`)
    /// and the pooled held-out scores (`scores.ORDER`: `LABEL SCORE PATH`) here.
    #[arg(long, value_name = "DIR", requires = "folds")]
    pub write_folds: Option<PathBuf>,
    /// With --train or --split: train as `chaff train --chronological` does (in
    /// `Date:` order, thresholds by forward chaining).
    #[arg(long)]
    pub chronological: bool,
    /// With --train or --split: the classifier to measure.
    #[arg(long, value_enum, default_value_t = super::train::Method::Logistic)]
    pub method: super::train::Method,
    /// Index files: lines of `spam PATH` or `ham PATH`, relative to the index.
    #[arg(required = true)]
    pub indexes: Vec<PathBuf>,
}

/// A training order of `--folds`, as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// A seeded shuffle.
    Shuffled,
    /// All ham first, then all spam.
    Sorted,
    /// As listed in the index files.
    Index,
}

impl Order {
    fn order(self) -> TrainOrder {
        match self {
            Order::Shuffled => TrainOrder::Shuffled,
            Order::Sorted => TrainOrder::Sorted,
            Order::Index => TrainOrder::Index,
        }
    }
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
    if let Some(folds) = args.folds {
        return super::folds::run(
            args.batch.config.as_deref(),
            args.batch.format,
            args.batch.jobs,
            &super::folds::FoldArgs {
                folds,
                seed: args.seed,
                orders: args.train_order.iter().map(|o| o.order()).collect(),
                write_folds: args.write_folds.clone(),
            },
            &args.indexes,
        );
    }
    if !args.train.is_empty() || args.split.is_some() {
        return super::train::eval_trained(&args);
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
