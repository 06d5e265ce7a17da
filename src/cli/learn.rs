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

/// Learns every message and replaces the model file.
pub fn run(args: LearnArgs) -> Result<ExitCode, CliError> {
    let mut config = load_config(args.config.as_deref())?;
    let Some(path) = args.model.clone().or_else(|| config.model.clone()) else {
        return Err(
            "no model to update: set `model = \"PATH\"` in the config or pass --model".into(),
        );
    };
    // Concurrent learners (other `chaff learn` runs, the service's /learnspam)
    // wait for each other: the model is read, updated and replaced under a lock.
    let mut model = ModelFile::open(&path)?;
    config.model = None;
    let engine = Engine::new(&config)?;
    let spam = args.spam;
    let label = if spam { "spam" } else { "ham" };
    let (mut learned, mut changed, mut failures) = (0u64, 0u64, 0u64);
    let limit = engine.config().max_message_size;
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
        let l = model.learn(&engine, &raw, spam);
        learned += 1;
        changed += u64::from(l.steps > 0);
        println!("{name}\t{label}\tscore {:.2} -> {:.2}", l.before, l.after);
    }
    model.save()?;
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
