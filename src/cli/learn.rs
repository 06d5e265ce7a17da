//! `chaff learn --spam PATH... --ham PATH...`: correct the model with messages it
//! got wrong (like `sa-learn`): files, directories, Maildirs, mbox files. The model named by the config is updated and replaced
//! atomically; scanners that are running pick it up within a second.

use super::{CliError, load_config};
use chaff::Engine;
use chaff_train::learn::ModelFile;
use chaff_train::train::digest;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff learn`.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("label").required(true).multiple(true).args(["spam", "ham"]))]
pub struct LearnArgs {
    /// A configuration file; its `model = "PATH"` is the model updated.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model file to update (instead of the config's `model`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Spam: the PATHs given with it, or (given alone, without paths) the PATHs
    /// at the end of the command.
    #[arg(long, num_args = 0.., value_name = "PATH")]
    pub spam: Option<Vec<PathBuf>>,
    /// Ham (legitimate mail), as for --spam.
    #[arg(long, num_args = 0.., value_name = "PATH")]
    pub ham: Option<Vec<PathBuf>>,
    /// Messages with the one label given: files, directories (recursive),
    /// Maildirs, mbox files, `-` for stdin.
    pub paths: Vec<PathBuf>,
}

/// A model opened for learning: locked against other learners (other `chaff
/// learn` runs, the service's `/learnspam`) until saved ([`ModelFile`]).
pub struct Learner {
    path: PathBuf,
    file: ModelFile,
    engine: Engine,
    learned: [u64; 2],
    changed: u64,
}

impl Learner {
    /// Opens the model of `config` (or `model`, if given) to learn messages; warns
    /// when the model was trained on what an older version read.
    pub fn open(mut config: chaff::Config, model: Option<PathBuf>) -> Result<Learner, CliError> {
        let Some(path) = model.or_else(|| config.model.clone()) else {
            return Err(
                "no model to update: set `model = \"PATH\"` in the config or pass --model".into(),
            );
        };
        let file = ModelFile::open(&path)?;
        if let Some(notice) = file.model().outdated() {
            eprintln!("chaff: warning: {}: {notice}", path.display());
        }
        config.model = None;
        let engine = Engine::new(&config)?;
        Ok(Learner {
            path,
            file,
            engine,
            learned: [0, 0],
            changed: 0,
        })
    }

    /// The largest message learned (`[limits] max_message_size`).
    pub fn max_message_size(&self) -> usize {
        self.engine.config().max_message_size
    }

    /// Learns one message as spam or ham.
    pub fn learn(&mut self, raw: &[u8], spam: bool) -> chaff_train::Learned {
        let l = self.file.learn(&self.engine, raw, spam);
        self.learned[usize::from(spam)] += 1;
        self.changed += u64::from(l.steps > 0);
        l
    }

    /// Replaces the model file and releases the lock; returns the messages
    /// learned as ham and as spam, those that changed the model, and the file.
    pub fn save(self) -> Result<([u64; 2], u64, PathBuf), CliError> {
        self.file.save()?;
        Ok((self.learned, self.changed, self.path))
    }
}

/// The messages to learn, each list with its label.
fn labelled_paths(args: &LearnArgs) -> Result<Vec<(bool, &[PathBuf])>, CliError> {
    let mut lists: Vec<(bool, &[PathBuf])> = Vec::new();
    for (spam, given) in [(true, &args.spam), (false, &args.ham)] {
        if let Some(paths) = given
            && !paths.is_empty()
        {
            lists.push((spam, paths));
        }
    }
    if !args.paths.is_empty() {
        let label = match (&args.spam, &args.ham) {
            (Some(_), None) => true,
            (None, Some(_)) => false,
            _ => {
                return Err(
                    "with both --spam and --ham, give each its paths (--spam PATH... --ham PATH...)"
                        .into(),
                );
            }
        };
        lists.push((label, &args.paths));
    }
    if lists.is_empty() {
        return Err("no messages to learn: --spam PATH... or --ham PATH...".into());
    }
    Ok(lists)
}

/// Learns every message and replaces the model file.
pub fn run(args: LearnArgs) -> Result<ExitCode, CliError> {
    let lists = labelled_paths(&args)?;
    let config = load_config(args.config.as_deref())?;
    let mut learner = Learner::open(config, args.model.clone())?;
    let limit = learner.max_message_size();
    let (mut failures, mut duplicates) = (0u64, 0u64);
    // Byte-identical copies (the same message in two folders, or given twice) are
    // learned once, with the label they were first given.
    let mut seen: HashMap<u128, (bool, String)> = HashMap::new();
    for (spam, paths) in lists {
        let label = if spam { "spam" } else { "ham" };
        for message in crate::input::messages(paths, limit) {
            let (name, input) = message.load(limit);
            let raw = match input {
                Ok(input) if input.is_complete() => input.bytes,
                Ok(_) => {
                    eprintln!("chaff: {name}: larger than the limit of {limit} bytes, not learned");
                    failures += 1;
                    continue;
                }
                Err(e) => {
                    eprintln!("chaff: {name}: {e}");
                    failures += 1;
                    continue;
                }
            };
            match seen.entry(digest(&raw)) {
                Entry::Occupied(first) => {
                    let (first_spam, first_name) = first.get();
                    duplicates += 1;
                    let note = if *first_spam == spam {
                        String::new()
                    } else {
                        format!(
                            " (given as {} there: not learned as {label})",
                            if *first_spam { "spam" } else { "ham" }
                        )
                    };
                    println!("{name}\t{label}\tsame bytes as {first_name}, learned once{note}");
                    continue;
                }
                Entry::Vacant(v) => {
                    v.insert((spam, name.clone()));
                }
            }
            let l = learner.learn(&raw, spam);
            println!("{name}\t{label}\tscore {:.2} -> {:.2}", l.before, l.after);
        }
    }
    let (learned, changed, path) = learner.save()?;
    let dups = if duplicates > 0 {
        format!(", {duplicates} duplicate(s) learned once")
    } else {
        String::new()
    };
    eprintln!(
        "chaff: learned {} message(s) as spam and {} as ham ({changed} changed the model{dups}): {}",
        learned[1],
        learned[0],
        path.display()
    );
    Ok(if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
