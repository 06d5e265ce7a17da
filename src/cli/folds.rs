//! `chaff eval --folds K`: K-fold evaluation of training. Every message is read
//! once; K models are trained, each on all folds but one (in the order asked,
//! `--train-order`), and each scans the fold it did not see through the real scan
//! path; the held-out verdict scores of all folds are pooled into one report per
//! training order. The folds are stratified and seeded
//! ([`chaff_train::folds::assign`]), and `--write-folds DIR` writes them (and the
//! pooled scores) out, so another filter can be measured on the same folds
//! (`scripts/folds.sh` does this for bogofilter).

use super::labelled::{Counts, scan_labelled};
use super::output::Format;
use super::train::{Ranking, read_indexes, reading_engine};
use super::{CliError, load_config};
use crate::input::index::Labelled;
use crate::ordered::Ordered;
use chaff::Engine;
use chaff_train::eval::Confusion;
use chaff_train::folds::{TrainOrder, assign, training_set};
use chaff_train::train::{Example, Trainer, prepare};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `--folds` needs besides the batch options.
pub struct FoldArgs {
    /// Folds (at least 2).
    pub folds: usize,
    /// Seed of the fold assignment and of the shuffled training order.
    pub seed: u64,
    /// Training orders to measure, each on the same folds.
    pub orders: Vec<TrainOrder>,
    /// Where to write the folds' index files and the pooled scores.
    pub write_folds: Option<PathBuf>,
}

/// Rates at one threshold, over the pooled held-out messages.
#[derive(Debug, Serialize)]
pub struct AtThreshold {
    /// The threshold (score points).
    pub threshold: f64,
    /// Share of held-out spam at or above it.
    pub spam_recall: f64,
    /// Share of held-out ham at or above it.
    pub ham_fpr: f64,
    /// Held-out ham at or above it.
    pub ham_flagged: u64,
}

/// The pooled report of one training order.
#[derive(Debug, Serialize)]
pub struct FoldReport {
    /// How the training messages were ordered.
    pub train_order: &'static str,
    /// Folds.
    pub folds: usize,
    /// Seed.
    pub seed: u64,
    /// Held-out messages scanned (each message once), spam and ham.
    #[serde(flatten)]
    pub counts: Counts,
    /// Ranking figures of the pooled held-out verdict scores.
    #[serde(flatten)]
    pub ranking: Ranking,
    /// At the trained quarantine threshold (`[thresholds] quarantine`).
    pub quarantine: AtThreshold,
    /// At the trained reject threshold.
    pub reject: AtThreshold,
    /// The ham false-positive rate the quarantine threshold was trained for.
    pub quarantine_fpr_target: f64,
    /// Each fold's model: cross-fitted AUC on its training data.
    pub crossfit_auc: Vec<Option<f64>>,
    /// Warnings the trainer gave, over all folds.
    pub train_warnings: Vec<String>,
    /// Messages that could not be read (left out of every fold).
    pub unreadable: u64,
}

/// Runs the K-fold evaluation and prints one report per training order.
pub fn run(
    config: Option<&Path>,
    format: Format,
    jobs: usize,
    args: &FoldArgs,
    indexes: &[PathBuf],
) -> Result<ExitCode, CliError> {
    if args.folds < 2 {
        return Err("--folds must be at least 2".into());
    }
    let config = load_config(config)?;
    let labelled = read_indexes(indexes)?;
    if labelled.len() < args.folds {
        return Err(format!(
            "{} messages cannot be cut into {} folds",
            labelled.len(),
            args.folds
        )
        .into());
    }
    let reader = reading_engine(&config)?;
    let (examples, unreadable) = prepare_all(&reader, &config, &labelled, jobs);
    let labels: Vec<bool> = labelled.iter().map(|l| l.spam).collect();
    let folds = assign(&labels, args.folds, args.seed);
    if let Some(dir) = &args.write_folds {
        write_folds(dir, &labelled, &labels, &folds, args)?;
    }
    let mut scan_config = config.clone();
    scan_config.model = None;
    let thresholds = config.thresholds_for(false);
    for &order in &args.orders {
        let mut pooled: Vec<(f64, bool, usize)> = Vec::with_capacity(labelled.len());
        let mut crossfit_auc = Vec::new();
        let mut train_warnings = Vec::new();
        for fold in 0..args.folds {
            let mut trainer = Trainer::new(&config.classifier);
            for i in training_set(&folds, &labels, fold, order, args.seed) {
                if let Some(e) = &examples[i] {
                    trainer.add(e.clone());
                }
            }
            let (model, report) = trainer.finish(reader.keywords());
            crossfit_auc.push(report.crossfit_auc);
            train_warnings.extend(
                report
                    .warnings
                    .iter()
                    .map(|w| format!("fold {}: {w}", fold + 1)),
            );
            let scanner = Engine::builder()
                .config(scan_config.clone())
                .keywords(reader.keywords().clone())
                .model(model)
                .load_in_background(false)
                .build()?;
            let test: Vec<usize> = (0..labelled.len())
                .filter(|&i| folds[i] == fold && examples[i].is_some())
                .collect();
            let scanned = scan_labelled(
                &scanner,
                test.iter().map(|&i| labelled[i].clone()).collect(),
                jobs,
            )?;
            // scan_labelled keeps input order and skips only unreadable messages,
            // which were left out above.
            pooled.extend(
                scanned
                    .scored
                    .iter()
                    .zip(&test)
                    .map(|(&(s, spam), &i)| (s, spam, i)),
            );
        }
        let scored: Vec<(f64, bool)> = pooled.iter().map(|&(s, spam, _)| (s, spam)).collect();
        let mut confusion = Confusion::default();
        scored
            .iter()
            .for_each(|&(s, spam)| confusion.add(spam, s >= thresholds.quarantine));
        let report = FoldReport {
            train_order: order.name(),
            folds: args.folds,
            seed: args.seed,
            counts: Counts::from(confusion),
            ranking: Ranking::of(&scored),
            quarantine: at(&scored, thresholds.quarantine),
            reject: at(&scored, thresholds.reject),
            quarantine_fpr_target: config.classifier.quarantine_fpr,
            crossfit_auc,
            train_warnings,
            unreadable,
        };
        if let Some(dir) = &args.write_folds {
            let path = dir.join(format!("scores.{}", order.name()));
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
            );
            for &(s, spam, i) in &pooled {
                let label = if spam { "spam" } else { "ham" };
                writeln!(out, "{label} {s} {}", labelled[i].path.display())?;
            }
            out.flush()?;
        }
        match format {
            Format::Json => println!("{}", serde_json::to_string(&report)?),
            Format::Text => print(&report),
        }
    }
    Ok(if unreadable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads and prepares every message once (in parallel, in order); unreadable ones
/// are reported and left as `None`.
fn prepare_all(
    engine: &Engine,
    config: &chaff::Config,
    labelled: &[Labelled],
    jobs: usize,
) -> (Vec<Option<Example>>, u64) {
    let features = config.classifier.feature_config();
    let limit = config.max_message_size;
    let mut out = Vec::with_capacity(labelled.len());
    let mut unreadable = 0;
    let bar = super::progress(Some(labelled.len() as u64));
    Ordered::new(jobs).run(
        labelled.iter(),
        |item| match crate::input::read_whole(&item.path, limit) {
            Ok(raw) => Ok(prepare(engine, &features, &raw, item.spam)),
            Err(e) => Err(format!("{}: {e}", item.path.display())),
        },
        |r| {
            bar.inc(1);
            match r {
                Ok(e) => out.push(Some(e)),
                Err(e) => {
                    eprintln!("chaff: {e}");
                    unreadable += 1;
                    out.push(None);
                }
            }
        },
    );
    bar.finish_and_clear();
    (out, unreadable)
}

fn at(scored: &[(f64, bool)], threshold: f64) -> AtThreshold {
    let mut c = Confusion::default();
    scored
        .iter()
        .for_each(|&(s, spam)| c.add(spam, s >= threshold));
    AtThreshold {
        threshold,
        spam_recall: c.spam_recall(),
        ham_fpr: c.ham_fpr(),
        ham_flagged: c.fp,
    }
}

/// Writes `foldN.train` (in the first training order asked) and `foldN.test`
/// index files with absolute paths, N from 1.
fn write_folds(
    dir: &Path,
    labelled: &[Labelled],
    labels: &[bool],
    folds: &[usize],
    args: &FoldArgs,
) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let order = args.orders.first().copied().unwrap_or(TrainOrder::Shuffled);
    let line = |i: usize| -> Result<String, CliError> {
        let l = &labelled[i];
        let path = std::path::absolute(&l.path)?;
        Ok(format!(
            "{} {}\n",
            if l.spam { "spam" } else { "ham" },
            path.display()
        ))
    };
    for fold in 0..args.folds {
        let mut train = String::new();
        for i in training_set(folds, labels, fold, order, args.seed) {
            train.push_str(&line(i)?);
        }
        let mut test = String::new();
        for i in (0..labelled.len()).filter(|&i| folds[i] == fold) {
            test.push_str(&line(i)?);
        }
        for (name, text) in [("train", train), ("test", test)] {
            let path = dir.join(format!("fold{}.{name}", fold + 1));
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn print(r: &FoldReport) {
    let pct = |x: f64| format!("{:.3} %", x * 100.0);
    println!(
        "train order       {} ({} folds, seed {})",
        r.train_order, r.folds, r.seed
    );
    println!(
        "held out          {} messages (spam {}, ham {})",
        r.counts.messages,
        r.counts.confusion.tp + r.counts.confusion.fn_,
        r.counts.confusion.fp + r.counts.confusion.tn
    );
    println!(
        "ROC AUC           {:.6}  (1-AUC {:.4} %)",
        r.ranking.auc, r.ranking.one_minus_auc_pct
    );
    println!("recall @0.1% FPR  {}", pct(r.ranking.recall_at_0_1pct_fpr));
    println!("FPR @99% recall   {}", pct(r.ranking.fpr_at_99pct_recall));
    for (name, t) in [("quarantine", &r.quarantine), ("reject", &r.reject)] {
        println!(
            "{name:<17} {} points: ham FPR {} ({} ham), spam recall {}",
            t.threshold,
            pct(t.ham_fpr),
            t.ham_flagged,
            pct(t.spam_recall)
        );
    }
    println!(
        "target ham FPR    {} (quarantine)",
        pct(r.quarantine_fpr_target)
    );
    let aucs: Vec<String> = r
        .crossfit_auc
        .iter()
        .map(|a| a.map_or("-".into(), |a| format!("{a:.6}")))
        .collect();
    println!("cross-fitted AUC  {}", aucs.join(" "));
    for w in &r.train_warnings {
        println!("warning           {w}");
    }
    if r.unreadable > 0 {
        println!("unreadable        {}", r.unreadable);
    }
}
