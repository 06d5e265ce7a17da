//! `chaff check-config FILE`: validate a configuration before deploying it: every
//! table, the keyword lists and the bounce knowledge base files it names.

use super::CliError;
use chaff::Engine;
use chaff::bounce::{KnowledgeBase, KnowledgeSources};
use chaff::config::ConfigFile;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff check-config`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    pub file: PathBuf,
}

/// Loads the file and builds an engine from it; prints a summary.
pub fn run(args: CheckArgs) -> Result<ExitCode, CliError> {
    // Every table: the engine's and the service's (header names, timeouts, account
    // store), and no table that nothing reads.
    let config = chaff_milter::ServiceConfig::load(&args.file)?.engine;
    let engine = Engine::new(&config)?;
    let kw = engine.keywords();
    let sources = KnowledgeSources::from_file(&ConfigFile::load(&args.file)?)?;
    let kb = KnowledgeBase::load(&sources)?;
    println!(
        "{}: ok — {} keywords in {} categories ({}); quarantine at {}, reject at {} with `{}`; \
         {} bounce causes",
        args.file.display(),
        kw.keywords.len(),
        kw.categories.len(),
        kw.categories.join(", "),
        config.thresholds.quarantine,
        config.thresholds.reject,
        config.reject_reply,
        kb.causes.len()
    );
    Ok(ExitCode::SUCCESS)
}
