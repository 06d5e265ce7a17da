//! The subcommands of the `chaff` binary, one module each, and what they share.

pub mod accounts;
pub mod check;
pub mod eval;
pub mod explain_bounce;
pub mod folds;
pub mod labelled;
pub mod learn;
pub mod milter;
pub mod output;
pub mod policy;
pub mod quarantine;
pub mod score;
pub mod senders;
pub mod state;
pub mod train;
pub mod users;

use chaff::{Config, Engine};
use chaff_milter::ServiceConfig;
use std::path::{Path, PathBuf};

/// The options every batch command (`score`, `eval`, `train`) takes.
#[derive(clap::Args)]
pub struct BatchArgs {
    /// A configuration file (default: the embedded defaults). Its keyword lists,
    /// scoring and `[classifier]` settings are what is scored or trained with.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = output::Format::Text)]
    pub format: output::Format,
    /// Worker threads (0: one per core).
    #[arg(long, short, default_value_t = 0)]
    pub jobs: usize,
}

/// An error that ends a command, shown as `chaff: MESSAGE` with exit status 2.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// The config file if one is given, else the embedded defaults: every table
/// checked (the service's too), so a mistake anywhere in the file is named.
pub fn load_service_config(path: Option<&Path>) -> Result<ServiceConfig, CliError> {
    Ok(match path {
        Some(p) => ServiceConfig::load(p)?,
        None => ServiceConfig::default(),
    })
}

/// The engine's part of [`load_service_config`].
pub fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    Ok(load_service_config(path)?.engine)
}

/// Builds the engine for a command, and says on stderr if its model should be
/// retrained.
pub fn engine(config: Option<&Path>) -> Result<Engine, CliError> {
    let config = load_config(config)?;
    let engine = Engine::new(&config)?;
    warn_outdated_model(&engine, &config);
    Ok(engine)
}

/// Prints [`Engine::model_notice`] on stderr, naming the model file.
pub fn warn_outdated_model(engine: &Engine, config: &chaff::Config) {
    if let Some(notice) = engine.model_notice() {
        let file = config
            .model
            .as_deref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        eprintln!("chaff: warning: {file}{notice}");
    }
}

/// A progress bar on stderr, shown only when stderr is a terminal.
pub fn progress(len: Option<u64>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {pos}/{len} messages {per_sec} [{elapsed_precise}] {wide_bar}",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}
