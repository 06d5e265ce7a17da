//! `chaff state migrate --to URL|embedded`: moves the account locks between the
//! embedded store (`[accounts] db`) and Redis (`[state] backend`).
//!
//! Each lock keeps its time and reason; a lock the target has already is left
//! as it is (it may be newer). The source is not changed: switch `[state]
//! backend` and restart the services, then delete the old store if wanted.
//! Locks only: the quarantine, the scan history and the sender lists stay in the
//! embedded state store (`[state] path`) for now.

use super::{CliError, load_service_config};
use chaff_milter::accounts::AccountStore;
use chaff_milter::state::Locks;
use chaff_milter::state::journal::Journal;
use chaff_milter::state::redis::RedisState;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `chaff state`.
#[derive(clap::Args)]
pub struct StateArgs {
    /// The configuration file (`[accounts] db`, `[state]`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: StateAction,
}

/// `chaff state` subcommands.
#[derive(clap::Subcommand)]
pub enum StateAction {
    /// Copy the account locks from the embedded store into Redis (`--to
    /// redis://…`), or from Redis (`[state] backend`, or `--from`) into the
    /// embedded store (`--to embedded`).
    Migrate {
        /// `embedded`, or a Redis URL.
        #[arg(long)]
        to: String,
        /// The Redis URL to copy from with `--to embedded` (default: `[state] backend`).
        #[arg(long)]
        from: Option<String>,
    },
}

/// Runs one `chaff state` subcommand.
pub fn run(args: StateArgs) -> Result<ExitCode, CliError> {
    let settings = load_service_config(args.config.as_deref())?;
    let StateAction::Migrate { to, from } = args.action;
    let realm = settings.accounts.realm.as_deref();
    let timeout = Duration::from_millis(settings.state.timeout_ms);
    let journal = Journal::path_for(&settings.accounts.db);
    let connect = |url: &str| -> Result<std::sync::Arc<RedisState>, CliError> {
        let r = RedisState::open_for_command(url, timeout, &journal, realm)?;
        if !r.is_up() {
            return Err(format!("Redis {} does not answer", r.target()).into());
        }
        Ok(r)
    };
    let (source, target): (Vec<_>, _) = if to == "embedded" {
        let url = from.unwrap_or_else(|| settings.state.backend.clone());
        if url == "embedded" {
            return Err("--to embedded needs a Redis to copy from (--from URL)".into());
        }
        let redis = connect(&url)?;
        let rows = Locks::Redis(&redis).list()?;
        let store = AccountStore::open_in_realm(&settings.accounts.db, realm)?;
        let mut copied = 0;
        for (user, rec) in &rows {
            if store.lock(user, rec.locked_at, &rec.reason)? {
                copied += 1;
            }
        }
        println!(
            "{copied} of {} locks copied from {} to {}",
            rows.len(),
            redis.target(),
            settings.accounts.db.display()
        );
        return Ok(ExitCode::SUCCESS);
    } else {
        let store = AccountStore::open_existing(&settings.accounts.db, realm)?;
        (store.list()?, connect(&to)?)
    };
    let mut copied = 0;
    for (user, rec) in &source {
        let (t, u, r) = (target.clone(), user.clone(), rec.clone());
        // The lock's own time: a change made in Redis since is later and wins.
        let at = rec.locked_at.saturating_mul(1000);
        let made = target
            .block(async move { t.set_lock(&u, at, Some(r)).await })
            .ok_or("Redis did not answer in time")??;
        if made {
            copied += 1;
        }
    }
    println!(
        "{copied} of {} locks copied from {} to {}",
        source.len(),
        settings.accounts.db.display(),
        target.target()
    );
    Ok(ExitCode::SUCCESS)
}
