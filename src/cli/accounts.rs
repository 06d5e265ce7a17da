//! `chaff accounts list|unlock|lock`: manage the accounts the milter locked.
//!
//! The lock store is shared with the running service (redb in multi-writer mode),
//! so these commands work while `chaff milter` runs; an unlock takes effect at the
//! account's next message. `list` only reads the store and `unlock` only changes
//! an existing one: neither creates a store at a mistyped path.

use super::output::Format;
use super::{CliError, load_service_config};
use chaff_milter::accounts::{self, AccountStore, StoreView};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff accounts`.
#[derive(clap::Args)]
pub struct AccountsArgs {
    /// The configuration file naming the store (`db` in `[accounts]`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The lock store, overriding the configuration.
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: AccountsAction,
}

/// `chaff accounts` subcommands.
#[derive(clap::Subcommand)]
pub enum AccountsAction {
    /// List locked accounts: when and why.
    List {
        /// Also list accounts with recent rejects that are not (yet) locked.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Unlock an account (exit status 1 if it was not locked).
    Unlock {
        /// The SMTP AUTH user name, as listed (case, and `@REALM` of the
        /// configured realm, do not matter).
        user: String,
    },
    /// Lock an account by hand.
    Lock {
        /// The SMTP AUTH user name.
        user: String,
        /// Why, for the list.
        #[arg(long, default_value = "locked by an administrator")]
        reason: String,
    },
}

/// Runs one `chaff accounts` subcommand.
pub fn run(args: AccountsArgs) -> Result<ExitCode, CliError> {
    let settings = load_service_config(args.config.as_deref())?;
    let db = args.db.unwrap_or_else(|| settings.accounts.db.clone());
    // Names are compared as the service compares them (`[accounts] realm`).
    let realm = settings.accounts.realm.as_deref();
    match args.action {
        AccountsAction::List { all, format } => {
            // Read-only: a mistyped path is an error, not a new empty store.
            let view = StoreView::read(&db, accounts::now_secs(), settings.accounts.window_secs)?;
            let locks = view.locks;
            let recent = if all { view.recent } else { Vec::new() };
            match format {
                Format::Json => {
                    for (user, r) in &locks {
                        let line = serde_json::json!({
                            "user": user,
                            "locked": true,
                            "locked_at": r.locked_at,
                            "locked_at_utc": accounts::format_time(r.locked_at),
                            "reason": r.reason,
                            "rejects": r.rejects,
                            "window_secs": r.window_secs,
                            "last_queue_id": r.last_queue_id,
                            "last_score": r.last_score,
                        });
                        println!("{line}");
                    }
                    for (user, n) in &recent {
                        let line = serde_json::json!({
                            "user": user, "locked": false, "recent_rejects": n,
                            "window_secs": settings.accounts.window_secs,
                        });
                        println!("{line}");
                    }
                }
                Format::Text => {
                    if locks.is_empty() {
                        println!("no locked accounts ({})", db.display());
                    } else {
                        let w = locks
                            .iter()
                            .map(|(u, _)| u.chars().count())
                            .max()
                            .unwrap_or(4);
                        let w = w.max(4);
                        println!("{:<w$}  {:<23}  REASON", "USER", "LOCKED AT");
                        for (user, r) in &locks {
                            println!(
                                "{user:<w$}  {:<23}  {}",
                                accounts::format_time(r.locked_at),
                                r.reason
                            );
                        }
                    }
                    if all {
                        if recent.is_empty() {
                            println!("no other account has recent rejects");
                        } else {
                            println!(
                                "\nnot locked, rejects within the last {} s:",
                                settings.accounts.window_secs
                            );
                            for (user, n) in &recent {
                                println!("{user}  {n}");
                            }
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsAction::Unlock { user } => {
            let store = AccountStore::open_existing(&db, realm)?;
            if store.unlock(&user)? {
                println!("{user}: unlocked");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{user}: not locked");
                Ok(ExitCode::from(1))
            }
        }
        AccountsAction::Lock { user, reason } => {
            let store = AccountStore::open_in_realm(&db, realm)?;
            if store.lock(&user, accounts::now_secs(), &reason)? {
                println!("{user}: locked");
            } else {
                println!("{user}: already locked");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
