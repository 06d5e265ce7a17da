//! `chaff learn --spam|--ham PATH...`: correct the model with messages it got wrong
//! (like `sa-learn`). The model named by the config is updated and replaced
//! atomically; scanners that are running pick it up within a second.

use super::{CliError, load_config};
use chaff::Engine;
use chaff_train::learn::ModelFile;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff learn`.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("label").required(true).args(["spam", "ham"]))]
pub struct LearnArgs {
    /// A configuration file; its `model = "PATH"` is the model updated.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model file to update (instead of the config's `model`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The messages are spam.
    #[arg(long)]
    pub spam: bool,
    /// The messages are ham (legitimate mail).
    #[arg(long)]
    pub ham: bool,
    /// Messages: files, directories (recursive), Maildirs, mbox files, `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// A model opened for learning: locked against other learners (other `chaff
/// learn` runs, the service's `/learnspam`) until saved ([`ModelFile`]).
pub struct Learner {
    path: PathBuf,
    file: ModelFile,
    engine: Engine,
    spam: bool,
    learned: u64,
    changed: u64,
}

impl Learner {
    /// Opens the model of `config` (or `model`, if given) to learn messages as
    /// spam or ham.
    pub fn open(
        mut config: chaff::Config,
        model: Option<PathBuf>,
        spam: bool,
    ) -> Result<Learner, CliError> {
        let Some(path) = model.or_else(|| config.model.clone()) else {
            return Err(
                "no model to update: set `model = \"PATH\"` in the config or pass --model".into(),
            );
        };
        let file = ModelFile::open(&path)?;
        config.model = None;
        let engine = Engine::new(&config)?;
        Ok(Learner {
            path,
            file,
            engine,
            spam,
            learned: 0,
            changed: 0,
        })
    }

    /// The largest message learned (`[limits] max_message_size`).
    pub fn max_message_size(&self) -> usize {
        self.engine.config().max_message_size
    }

    /// Learns one message.
    pub fn learn(&mut self, raw: &[u8]) -> chaff_train::Learned {
        let l = self.file.learn(&self.engine, raw, self.spam);
        self.learned += 1;
        self.changed += u64::from(l.steps > 0);
        l
    }

    /// Replaces the model file and releases the lock; returns the messages
    /// learned, those that changed the model, and the file.
    pub fn save(self) -> Result<(u64, u64, PathBuf), CliError> {
        self.file.save()?;
        Ok((self.learned, self.changed, self.path))
    }
}

/// Learns every message and replaces the model file.
pub fn run(args: LearnArgs) -> Result<ExitCode, CliError> {
    let config = load_config(args.config.as_deref())?;
    let spam = args.spam;
    let label = if spam { "spam" } else { "ham" };
    let mut learner = Learner::open(config, args.model.clone(), spam)?;
    let mut failures = 0u64;
    let limit = learner.max_message_size();
    for message in crate::input::messages(&args.paths, limit) {
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
        let l = learner.learn(&raw);
        println!("{name}\t{label}\tscore {:.2} -> {:.2}", l.before, l.after);
    }
    let (learned, changed, path) = learner.save()?;
    eprintln!(
        "chaff: learned {learned} message(s) as {label} ({changed} changed the model): {}",
        path.display()
    );
    Ok(if failures > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
