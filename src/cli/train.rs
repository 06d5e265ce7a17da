//! `chaff train`: learn a model from TREC-style labelled indexes and from mailboxes
//! given as spam or ham (files, directories, Maildirs, mbox files); and the train/test
//! modes of `chaff eval` (`--train INDEX`, `--split FRACTION`), which train the same
//! way in memory and then measure the model on mail it has not seen.

use super::labelled::{Counts, Scanned, per_sec, scan_labelled};
use super::output::Format;
use super::{CliError, load_config, progress};
use crate::input::index::{self, Labelled};
use crate::ordered::Ordered;
use chaff::classify::model::{Model, TrainedThresholds};
use chaff::classify::{ClassifierConfig, format};
use chaff::{Config, Engine};
use chaff_train::bayes::Bayes;
use chaff_train::eval::{Confusion, fpr_at_recall, recall_at_fpr, roc_auc};
use chaff_train::train::{Example, Order, TrainReport, Trainer, prepare};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `chaff train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub batch: super::BatchArgs,
    /// Where to write the model (replaced atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Spam: message files, directories (recursive), Maildirs, mbox files (the
    /// option may be repeated and takes several paths; put index files before it
    /// or after `--`).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub spam: Vec<PathBuf>,
    /// Ham (legitimate mail): message files, directories, Maildirs, mbox files.
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub ham: Vec<PathBuf>,
    /// Learn in the order of the messages' `Date:` headers and fit the thresholds
    /// by forward chaining (each period scored by a model of the periods before
    /// it), as a deployed model meets mail. By default the order the messages are
    /// given in does not matter.
    #[arg(long)]
    pub chronological: bool,
    /// Index files: lines of `spam PATH` or `ham PATH`, relative to the index.
    #[arg(required_unless_present_any = ["spam", "ham"])]
    pub indexes: Vec<PathBuf>,
}

/// The report of a training run.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    /// Messages learned.
    pub messages: u64,
    /// Spam learned.
    pub spam: u64,
    /// Ham learned.
    pub ham: u64,
    /// Messages that could not be read.
    pub unreadable: u64,
    /// Training throughput, reading and decoding included.
    pub msgs_per_sec: f64,
    /// Byte-identical copies of a message already given, learned once.
    pub duplicates: u64,
    /// ROC AUC of the cross-fitted scores on the training data.
    pub crossfit_auc: Option<f64>,
    /// ROC AUC of the final model's scores on the training data.
    pub insample_auc: Option<f64>,
    /// Each calibration fold's cross-fitted AUC.
    pub fold_auc: Vec<Option<f64>>,
    /// What the admin should know about the training data (also on stderr).
    pub warnings: Vec<String>,
    /// The thresholds chosen (score points) and what they give on the training data.
    pub thresholds: Option<TrainedThresholds>,
    /// The model file size in bytes (when written).
    pub model_bytes: Option<u64>,
}

/// Trains on every index and mailbox and writes the model.
pub fn run(args: TrainArgs) -> Result<ExitCode, CliError> {
    let config = load_config(args.batch.config.as_deref())?;
    let labelled = read_indexes(&args.indexes)?;
    let sources = Sources {
        labelled,
        spam: args.spam,
        ham: args.ham,
    };
    let order = if args.chronological {
        Order::Chronological
    } else {
        Order::Shuffled
    };
    let (model, summary) = train(&config, sources, order, args.batch.jobs)?;
    if summary.messages == 0 {
        return Err("no message could be read: nothing to train on".into());
    }
    for w in &summary.warnings {
        eprintln!("chaff: warning: {w}");
    }
    format::save(&model, &args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let summary = TrainSummary {
        model_bytes: std::fs::metadata(&args.output).ok().map(|m| m.len()),
        ..summary
    };
    match args.batch.format {
        Format::Json => println!("{}", serde_json::to_string(&summary)?),
        Format::Text => {
            print_train_summary(&summary);
            println!("model             {}", args.output.display());
        }
    }
    Ok(if summary.unreadable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `train` learns from: index entries, and messages found under paths given
/// as spam or as ham.
pub(super) struct Sources {
    labelled: Vec<Labelled>,
    spam: Vec<PathBuf>,
    ham: Vec<PathBuf>,
}

impl From<Vec<Labelled>> for Sources {
    fn from(labelled: Vec<Labelled>) -> Sources {
        Sources {
            labelled,
            spam: Vec::new(),
            ham: Vec::new(),
        }
    }
}

/// One message to learn, not yet read.
enum Item {
    Indexed(Labelled),
    Mailbox(crate::input::Message, bool),
}

/// Reads and concatenates index files, in order.
pub(super) fn read_indexes(indexes: &[PathBuf]) -> Result<Vec<Labelled>, CliError> {
    let mut labelled = Vec::new();
    for idx in indexes {
        labelled.extend(index::read(idx)?);
    }
    Ok(labelled)
}

/// The engine training reads mail with: the config's keywords and scoring, no model.
pub(super) fn reading_engine(config: &Config) -> Result<Engine, CliError> {
    let mut config = config.clone();
    config.model = None;
    Ok(Engine::builder().config(config).build()?)
}

/// Trains a model on labelled messages.
fn train(
    config: &Config,
    sources: impl Into<Sources>,
    order: Order,
    jobs: usize,
) -> Result<(Model, TrainSummary), CliError> {
    let Sources {
        labelled,
        spam,
        ham,
    } = sources.into();
    let engine = reading_engine(config)?;
    let cfg = &config.classifier;
    let features = cfg.feature_config();
    let ordered = Ordered::new(jobs);
    let mailboxes = !spam.is_empty() || !ham.is_empty();
    let bar = progress((!mailboxes).then_some(labelled.len() as u64));
    let mut trainer = match order {
        Order::Shuffled => Trainer::new(cfg),
        Order::Chronological => Trainer::chronological(cfg),
    };
    let mut unreadable = 0u64;
    let started = Instant::now();
    let limit = config.max_message_size;
    let items = labelled
        .into_iter()
        .map(Item::Indexed)
        .chain(crate::input::messages(&spam, limit).map(|m| Item::Mailbox(m, true)))
        .chain(crate::input::messages(&ham, limit).map(|m| Item::Mailbox(m, false)));
    ordered.run(
        items,
        |item| {
            let (name, spam, raw) = match item {
                Item::Indexed(l) => {
                    let raw = crate::input::read_whole(&l.path, limit);
                    (l.path.display().to_string(), l.spam, raw)
                }
                Item::Mailbox(message, spam) => {
                    let (name, input) = message.load(limit);
                    let raw = input.and_then(|input| {
                        if input.is_complete() {
                            Ok(input.bytes)
                        } else {
                            Err(std::io::Error::other(format!(
                                "larger than the limit of {limit} bytes"
                            )))
                        }
                    });
                    (name, spam, raw)
                }
            };
            match raw {
                Ok(raw) => Ok(prepare(&engine, &features, &raw, spam)),
                Err(e) => Err(format!("{name}: {e}")),
            }
        },
        |result| {
            bar.inc(1);
            match result {
                Ok(example) => trainer.add(example),
                Err(e) => {
                    unreadable += 1;
                    eprintln!("chaff: {e}");
                }
            }
        },
    );
    let (model, report) = trainer.finish(engine.keywords());
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let TrainReport {
        spam,
        ham,
        duplicates,
        crossfit_auc,
        insample_auc,
        fold_auc,
        warnings,
        ..
    } = report;
    let summary = TrainSummary {
        messages: spam + ham,
        spam,
        ham,
        unreadable,
        msgs_per_sec: per_sec(spam + ham + duplicates + unreadable, elapsed),
        duplicates,
        crossfit_auc,
        insample_auc,
        fold_auc,
        warnings,
        thresholds: model.meta.thresholds,
        model_bytes: None,
    };
    Ok((model, summary))
}

fn print_train_summary(s: &TrainSummary) {
    println!(
        "trained on        {} messages (spam {}, ham {}), {:.0} msgs/s",
        s.messages, s.spam, s.ham, s.msgs_per_sec
    );
    if s.duplicates > 0 {
        println!(
            "duplicates        {} (byte-identical copies, learned once)",
            s.duplicates
        );
    }
    if s.unreadable > 0 {
        println!("unreadable        {}", s.unreadable);
    }
    if let Some(auc) = s.crossfit_auc {
        println!(
            "cross-fitted AUC  {auc:.6}  (1-AUC {:.4} %){}",
            (1.0 - auc) * 100.0,
            s.insample_auc
                .map(|i| format!(", in-sample {i:.6}"))
                .unwrap_or_default()
        );
    }

    if let Some(t) = &s.thresholds {
        println!(
            "quarantine        {} points: training ham FPR ≤ {:.3} %, spam recall {:.2} %",
            t.quarantine,
            t.quarantine_fpr * 100.0,
            t.quarantine_recall * 100.0
        );
        println!(
            "reject            {} points: training ham FPR ≤ {:.3} %, spam recall {:.2} %",
            t.reject,
            t.reject_fpr * 100.0,
            t.reject_recall * 100.0
        );
    } else {
        println!("thresholds        not trained (needs both spam and ham)");
    }
    if let Some(b) = s.model_bytes {
        println!("model size        {:.1} MB", b as f64 / (1u64 << 20) as f64);
    }
}

/// Which classifier `chaff eval --train/--split` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Online logistic regression (what chaff ships): the full verdict score.
    Logistic,
    /// Naive Bayes with Robinson–Fisher combining, on the same features (for
    /// comparison only: classifier score alone).
    Bayes,
}

/// Ranking figures of one score.
#[derive(Debug, Serialize)]
pub struct Ranking {
    /// ROC area under the curve.
    pub auc: f64,
    /// (1-AUC) in percent.
    pub one_minus_auc_pct: f64,
    /// Spam recall at 0.1 % ham false positives.
    pub recall_at_0_1pct_fpr: f64,
    /// Ham false positives at 99 % spam recall.
    pub fpr_at_99pct_recall: f64,
    /// Spam recall at 0.5 % ham false positives.
    pub recall_at_0_5pct_fpr: f64,
    /// Ham false positives at 98 % spam recall.
    pub fpr_at_98pct_recall: f64,
}

impl Ranking {
    /// The figures of `(score, is_spam)` pairs.
    pub fn of(scored: &[(f64, bool)]) -> Ranking {
        let auc = roc_auc(scored);
        Ranking {
            auc,
            one_minus_auc_pct: (1.0 - auc) * 100.0,
            recall_at_0_1pct_fpr: recall_at_fpr(scored, 0.001),
            fpr_at_99pct_recall: fpr_at_recall(scored, 0.99),
            recall_at_0_5pct_fpr: recall_at_fpr(scored, 0.005),
            fpr_at_98pct_recall: fpr_at_recall(scored, 0.98),
        }
    }
}

/// The report of a train/test evaluation.
#[derive(Debug, Serialize)]
pub struct TrainEvalReport {
    /// The method measured.
    pub method: String,
    /// Training messages and speed.
    pub train: TrainSummary,
    /// Test messages, counts and rates at the thresholds in force.
    #[serde(flatten)]
    pub counts: Counts,
    /// The ranking figures of the score measured.
    #[serde(flatten)]
    pub ranking: Ranking,
    /// With the logistic regression: the ranking figures of the classifier's
    /// log-odds alone (no keywords), for comparison with other classifiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classifier_alone: Option<Ranking>,
    /// Test messages that could not be read.
    pub unreadable: u64,
    /// Scanning throughput with the model (reading included).
    pub msgs_per_sec: f64,
}

/// `chaff eval` in train/test mode: train on `--train` indexes (or the first
/// `--split` of the indexes), measure on the rest.
pub fn eval_trained(args: &super::eval::EvalArgs) -> Result<ExitCode, CliError> {
    let (format, jobs) = (args.batch.format, args.batch.jobs);
    let (train_indexes, split, tests) = (&args.train, args.split, &args.indexes);
    let order = if args.chronological {
        Order::Chronological
    } else {
        Order::Shuffled
    };
    let config = load_config(args.batch.config.as_deref())?;
    let (train_set, test_set) = match split {
        Some(f) => {
            if !(f > 0.0 && f < 1.0) {
                return Err("--split must be between 0 and 1 (e.g. 0.5)".into());
            }
            let mut all = read_indexes(tests)?;
            all.extend(read_indexes(train_indexes)?);
            let n = (all.len() as f64 * f).floor() as usize;
            let test = all.split_off(n);
            (all, test)
        }
        None => (read_indexes(train_indexes)?, read_indexes(tests)?),
    };
    if train_set.is_empty() || test_set.is_empty() {
        return Err("nothing to train on or nothing to test".into());
    }
    let report = match args.method {
        Method::Logistic => eval_logistic(&config, train_set, test_set, order, jobs)?,
        Method::Bayes => eval_bayes(&config, train_set, test_set, jobs)?,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => print_eval(&report),
    }
    Ok(if report.unreadable + report.train.unreadable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn eval_logistic(
    config: &Config,
    train_set: Vec<Labelled>,
    test_set: Vec<Labelled>,
    order: Order,
    jobs: usize,
) -> Result<TrainEvalReport, CliError> {
    let (model, train) = train(config, train_set, order, jobs)?;
    let model_bytes = format::to_bytes(&model).ok().map(|b| b.len() as u64);
    let mut config = config.clone();
    config.model = None;
    let engine = Engine::builder().config(config).model(model).build()?;
    let test_paths: Vec<(bool, PathBuf)> =
        test_set.iter().map(|l| (l.spam, l.path.clone())).collect();
    let Scanned {
        confusion,
        scored,
        unreadable,
        elapsed,
    } = scan_labelled(&engine, test_set, jobs)?;
    let ordered = Ordered::new(jobs);
    let limit = engine.config().max_message_size;
    // The classifier alone, on the same test messages (not timed).
    let classifier_alone = engine.model().map(|loaded| {
        let model = &loaded.model;
        let features = model.meta.features.clone();
        let mut alone = Vec::with_capacity(test_paths.len());
        ordered.run(
            test_paths,
            |(spam, path)| {
                crate::input::read_whole(&path, limit)
                    .ok()
                    .map(|raw| (prepare(&engine, &features, &raw, spam), spam))
            },
            |r| {
                if let Some((e, spam)) = r {
                    alone.push((model.logit_buckets(&e.feats), spam));
                }
            },
        );
        Ranking::of(&alone)
    });
    Ok(TrainEvalReport {
        method: "logistic regression (verdict score: keywords + classifier)".into(),
        train: TrainSummary {
            model_bytes,
            ..train
        },
        counts: Counts::from(confusion),
        ranking: Ranking::of(&scored),
        classifier_alone,
        unreadable,
        msgs_per_sec: per_sec(confusion.total() + unreadable, elapsed),
    })
}

/// Prepares examples of labelled messages (unreadable ones are counted and skipped).
fn examples(
    engine: &Engine,
    cfg: &ClassifierConfig,
    set: Vec<Labelled>,
    jobs: usize,
) -> Result<(Vec<Example>, u64), CliError> {
    let features = cfg.feature_config();
    let ordered = Ordered::new(jobs);
    let mut out = Vec::with_capacity(set.len());
    let mut unreadable = 0;
    let limit = engine.config().max_message_size;
    ordered.run(
        set,
        |item| {
            crate::input::read_whole(&item.path, limit)
                .map(|raw| prepare(engine, &features, &raw, item.spam))
        },
        |r| match r {
            Ok(e) => out.push(e),
            Err(_) => unreadable += 1,
        },
    );
    Ok((out, unreadable))
}

fn eval_bayes(
    config: &Config,
    train_set: Vec<Labelled>,
    test_set: Vec<Labelled>,
    jobs: usize,
) -> Result<TrainEvalReport, CliError> {
    let engine = reading_engine(config)?;
    let cfg = &config.classifier;
    let started = Instant::now();
    let (train, train_unreadable) = examples(&engine, cfg, train_set, jobs)?;
    let mut bayes = Bayes::new(cfg.bits);
    train.iter().for_each(|e| bayes.add(e));
    let train_secs = started.elapsed().as_secs_f64();
    let (spam, ham) = train.iter().fold(
        (0, 0),
        |(s, h), e| {
            if e.spam { (s + 1, h) } else { (s, h + 1) }
        },
    );
    let started = Instant::now();
    let (test, unreadable) = examples(&engine, cfg, test_set, jobs)?;
    let scored: Vec<(f64, bool)> = test
        .iter()
        .map(|e| (bayes.spamicity(&e.feats), e.spam))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let mut confusion = Confusion::default();
    // bogofilter's default spam cutoff.
    scored
        .iter()
        .for_each(|&(s, spam)| confusion.add(spam, s >= 0.99));
    Ok(TrainEvalReport {
        method: "naive Bayes, Robinson-Fisher (classifier score alone)".into(),
        train: TrainSummary {
            messages: spam + ham,
            spam,
            ham,
            unreadable: train_unreadable,
            msgs_per_sec: per_sec(spam + ham, train_secs),
            duplicates: 0,
            crossfit_auc: None,
            insample_auc: None,
            fold_auc: Vec::new(),
            warnings: Vec::new(),
            thresholds: None,
            model_bytes: None,
        },
        counts: Counts::from(confusion),
        ranking: Ranking::of(&scored),
        classifier_alone: None,
        unreadable,
        msgs_per_sec: per_sec(confusion.total() + unreadable, elapsed),
    })
}

fn print_eval(r: &TrainEvalReport) {
    let pct = |x: f64| format!("{:.3} %", x * 100.0);
    println!("method            {}", r.method);
    print_train_summary(&r.train);
    println!("tested on         {} messages", r.counts.messages);
    r.counts.print(pct);
    println!(
        "ROC AUC           {:.6}  (1-AUC {:.4} %)",
        r.ranking.auc, r.ranking.one_minus_auc_pct
    );
    println!("recall @0.1% FPR  {}", pct(r.ranking.recall_at_0_1pct_fpr));
    println!("FPR @99% recall   {}", pct(r.ranking.fpr_at_99pct_recall));
    println!("recall @0.5% FPR  {}", pct(r.ranking.recall_at_0_5pct_fpr));
    println!("FPR @98% recall   {}", pct(r.ranking.fpr_at_98pct_recall));
    if let Some(c) = &r.classifier_alone {
        println!(
            "classifier alone  1-AUC {:.4} %, recall @0.1% FPR {}, FPR @99% recall {}",
            c.one_minus_auc_pct,
            pct(c.recall_at_0_1pct_fpr),
            pct(c.fpr_at_99pct_recall)
        );
    }
    if r.unreadable > 0 {
        println!("unreadable        {}", r.unreadable);
    }
    println!(
        "messages/s        {:.0} (scanning the test set)",
        r.msgs_per_sec
    );
}
