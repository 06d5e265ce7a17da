//! The `chaff` command: score mail offline, evaluate on labelled corpora, check a
//! configuration.

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use std::process::ExitCode;

mod cli;
mod input;
mod ordered;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// chaff: an explainable anti-spam content filter for Chinese and English mail.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score messages: files, directories, Maildirs, mbox files, or `-` for stdin.
    Score(cli::score::ScoreArgs),
    /// Measure accuracy and speed on TREC-style labelled index files.
    Eval(cli::eval::EvalArgs),
    /// Check a configuration file (and the keyword lists and bounce knowledge it names).
    CheckConfig(cli::check::CheckArgs),
    /// Explain bounces: why a message bounced, who must act and what to do.
    ExplainBounce(cli::explain_bounce::ExplainBounceArgs),
    /// Learn a model from TREC-style labelled index files.
    Train(cli::train::TrainArgs),
    /// Correct the model with messages it got wrong (updates it in place).
    Learn(cli::learn::LearnArgs),
    /// Run the milter service for Postfix or Sendmail.
    Milter(cli::milter::MilterArgs),
    /// List, unlock or lock accounts locked for sending spam.
    Accounts(cli::accounts::AccountsArgs),
    /// Move account locks between the embedded store and Redis.
    State(cli::state::StateArgs),
    /// The spam report list: list, show, delete or purge kept messages.
    Quarantine(cli::quarantine::QuarantineArgs),
    /// The allow and block lists: list them, add or remove stored entries.
    Senders(cli::senders::SendersArgs),
    /// Per-domain, per-recipient and per-account policy: list, show, set, unset.
    Policy(cli::policy::PolicyArgs),
    /// Manage the users of the HTTP listener: add, passwd, token, remove, list.
    Users(cli::users::UsersArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Score(a) => cli::score::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::CheckConfig(a) => cli::check::run(a),
        Command::ExplainBounce(a) => cli::explain_bounce::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Learn(a) => cli::learn::run(a),
        Command::Milter(a) => cli::milter::run(a),
        Command::Accounts(a) => cli::accounts::run(a),
        Command::State(a) => cli::state::run(a),
        Command::Quarantine(a) => cli::quarantine::run(a),
        Command::Senders(a) => cli::senders::run(a),
        Command::Policy(a) => cli::policy::run(a),
        Command::Users(a) => cli::users::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chaff: {e}");
            ExitCode::from(2)
        }
    }
}
