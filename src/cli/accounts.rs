//! `chaff accounts list|unlock|lock`: manage the accounts the milter locked.
//!
//! The lock store is shared with the running service (redb in multi-writer mode),
//! so these commands work while `chaff milter` runs; an unlock takes effect at the
//! account's next message. `list` only reads the store and `unlock` only changes
//! an existing one: neither creates a store at a mistyped path.

use super::output::Format;
use super::{CliError, load_service_config};
use chaff_milter::ServiceConfig;
use chaff_milter::accounts::{self, AccountStore, StoreView};
use chaff_milter::state::Locks;
use chaff_milter::state::journal::Journal;
use chaff_milter::state::ratelimit::Subject;
use chaff_milter::state::redis::RedisState;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Show (or with --reset clear) the sending-rate counters of an account, a
    /// sender domain or a client address against its `[ratelimit]` limits. With
    /// the embedded backend the counters live in the service's memory: use the
    /// admin API (`/api/ratelimit`) there.
    Limits {
        /// The account (or, with --domain or --client, the domain or address).
        name: String,
        /// NAME is a sender domain.
        #[arg(long, conflicts_with = "client")]
        domain: bool,
        /// NAME is a client address.
        #[arg(long)]
        client: bool,
        /// Clear the counters.
        #[arg(long)]
        reset: bool,
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
    if settings.state.backend != "embedded" && args.db.is_none() {
        return run_shared(args.action, &settings);
    }
    if let AccountsAction::Limits { .. } = args.action {
        return Err(
            "the embedded backend counts sending rates in the running service's \
                    memory: see the admin API's /api/ratelimit"
                .into(),
        );
    }
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
                            "messages": r.messages,
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
                            print_messages(&r.messages);
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
        AccountsAction::Limits { .. } => Err("unreachable: handled above".into()),
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

/// `chaff accounts` on a Redis backend (`[state] backend`): the same commands on
/// the locks every host shares. While Redis is away a lock or unlock is
/// journalled beside the account store and written back by the service when
/// Redis returns.
fn run_shared(action: AccountsAction, settings: &ServiceConfig) -> Result<ExitCode, CliError> {
    let st = &settings.state;
    let redis = RedisState::open_for_command(
        &st.backend,
        Duration::from_millis(st.timeout_ms),
        &Journal::path_for(&settings.accounts.db),
        settings.accounts.realm.as_deref(),
    )?;
    let locks = Locks::Redis(&redis);
    match action {
        AccountsAction::List { format, .. } => {
            let rows = locks.list()?;
            for (user, r) in &rows {
                match format {
                    Format::Json => println!(
                        "{}",
                        serde_json::json!({
                            "user": user,
                            "locked": true,
                            "locked_at": r.locked_at,
                            "locked_at_utc": accounts::format_time(r.locked_at),
                            "reason": r.reason,
                            "rejects": r.rejects,
                            "window_secs": r.window_secs,
                            "last_queue_id": r.last_queue_id,
                            "last_score": r.last_score,
                            "messages": r.messages,
                        })
                    ),
                    Format::Text => {
                        println!(
                            "{user}  {}  {}",
                            accounts::format_time(r.locked_at),
                            r.reason
                        );
                        print_messages(&r.messages);
                    }
                }
            }
            if rows.is_empty() && matches!(format, Format::Text) {
                println!("no locked accounts ({})", redis.target());
            }
            // Use against the limits: locked accounts and those refused by a
            // limit within the last day.
            let cfg = &settings.ratelimit;
            if !cfg.account.is_empty() {
                let me = std::sync::Arc::clone(&redis);
                let mut users: Vec<String> = redis
                    .block(async move { me.limited().await })
                    .ok_or("Redis did not answer in time")??;
                for (u, _) in &rows {
                    if !users.contains(u) {
                        users.push(u.clone());
                    }
                }
                if matches!(format, Format::Text) && !users.is_empty() {
                    println!("\nsending rate (locked, or limited within the last day):");
                }
                for user in users {
                    let usage = locks.usage(cfg, None, &Subject::Account(user.clone()))?;
                    match format {
                        Format::Json => println!(
                            "{}",
                            serde_json::json!({
                                "user": user,
                                "rate": usage.iter().map(|(w, m, used, limit)| serde_json::json!({
                                    "window_secs": w.as_secs(),
                                    "measure": m.as_str(),
                                    "used": used,
                                    "limit": limit,
                                })).collect::<Vec<_>>(),
                            })
                        ),
                        Format::Text => {
                            let parts: Vec<String> = usage
                                .iter()
                                .map(|(w, m, used, limit)| {
                                    format!("{used}/{limit} {} per {} s", m.as_str(), w.as_secs())
                                })
                                .collect();
                            println!("{user}  {}", parts.join(", "));
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AccountsAction::Unlock { user } => {
            let journalled = !redis.is_up();
            if locks.unlock(&user)? {
                println!(
                    "{user}: unlocked{}",
                    if journalled {
                        " (journalled: Redis is away)"
                    } else {
                        ""
                    }
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{user}: not locked");
                Ok(ExitCode::from(1))
            }
        }
        AccountsAction::Lock { user, reason } => {
            let journalled = !redis.is_up();
            let made = locks.lock(&user, accounts::now_secs(), &reason)?;
            let note = if journalled {
                " (journalled: Redis is away)"
            } else {
                ""
            };
            println!(
                "{user}: {}{note}",
                if made { "locked" } else { "already locked" }
            );
            Ok(ExitCode::SUCCESS)
        }
        AccountsAction::Limits {
            name,
            domain,
            client,
            reset,
        } => {
            let subject = if domain {
                Subject::Domain(name.trim().to_lowercase())
            } else if client {
                Subject::Client(
                    name.trim()
                        .parse()
                        .map_err(|_| format!("`{name}` is not an address"))?,
                )
            } else {
                Subject::Account(name.clone())
            };
            let cfg = &settings.ratelimit;
            if reset {
                locks.reset(cfg, None, &subject)?;
                println!("{} {}: counters cleared", subject.kind(), subject.name());
                return Ok(ExitCode::SUCCESS);
            }
            let usage = locks.usage(cfg, None, &subject)?;
            if usage.is_empty() {
                println!(
                    "{} {}: no limits apply ([ratelimit])",
                    subject.kind(),
                    subject.name()
                );
            }
            for (window, measure, used, limit) in usage {
                println!(
                    "{} {}  {used}/{limit} {} per {} s",
                    subject.kind(),
                    subject.name(),
                    measure.as_str(),
                    window.as_secs()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints, under a lock, the rejected messages that caused it: when, the queue
/// id, the score and the quarantine entry id (`chaff quarantine show ID`).
fn print_messages(messages: &[accounts::LockEvidence]) {
    for m in messages {
        let mut line = format!("    rejected {}", accounts::format_time(m.at));
        if let Some(q) = &m.queue_id {
            line.push_str(&format!("  queue id {q}"));
        }
        if let Some(s) = m.score {
            line.push_str(&format!("  score {s:.2}"));
        }
        if let Some(id) = m.entry {
            line.push_str(&format!("  quarantine {id}"));
        }
        println!("{line}");
    }
}
