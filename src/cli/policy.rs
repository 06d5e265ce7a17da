//! `chaff policy list|show|set|unset`: the stored per-domain, per-recipient and
//! per-account policies (thresholds, allow and block lists, an account's
//! aliases and sender/login exemption), layered over `chaff.toml`. An edit goes
//! through the same function as the admin API's (`site_policy::edit`), is
//! written to the store's action log with the user's name, and is applied by a
//! running service within `[policy] refresh_ms` (1 s by default), without a
//! restart.

use super::output::Format;
use super::quarantine::operator;
use super::{CliError, load_service_config};
use chaff_milter::accounts::format_time;
use chaff_milter::quarantine::{StateStore, StoreError, now_ms};
use chaff_milter::site_policy::{self, Change, Key, PolicyStore, Rule, Scope};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff policy`.
#[derive(clap::Args)]
pub struct PolicyArgs {
    /// The configuration file: its `[state] path`, `[accounts] realm`, `[policy]`.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The state store, overriding the configuration.
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: PolicyAction,
}

/// `chaff policy` subcommands.
#[derive(clap::Subcommand)]
pub enum PolicyAction {
    /// List every stored policy.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show one scope's policy (domain:D, recipient:ADDRESS or account:LOGIN).
    Show {
        /// The scope.
        scope: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Set a threshold or flag, or add a list entry: KEY is quarantine, reject,
    /// allow, block, aliases or mismatch_exempt.
    Set {
        /// The scope.
        scope: String,
        /// The key.
        key: String,
        /// The value (quote an allow entry with networks: "x.test from 192.0.2.0/24").
        #[arg(required = true, num_args = 1.., allow_negative_numbers = true)]
        value: Vec<String>,
    },
    /// Remove a threshold or flag; with a value one list entry, without the list.
    Unset {
        /// The scope.
        scope: String,
        /// The key.
        key: String,
        /// The list entry to remove.
        #[arg(num_args = 0.., allow_negative_numbers = true)]
        value: Vec<String>,
    },
}

fn print_rule(scope: &str, r: &Rule) {
    println!("{scope}  (by {} at {})", r.by, format_time(r.at));
    if let Some(q) = r.quarantine {
        println!("  quarantine       {q}");
    }
    if let Some(j) = r.reject {
        println!("  reject           {j}");
    }
    for (name, list) in [
        ("allow", &r.allow),
        ("block", &r.block),
        ("aliases", &r.aliases),
    ] {
        for e in list {
            println!("  {name:<16} {e}");
        }
    }
    if r.mismatch_exempt {
        println!("  mismatch_exempt  true");
    }
}

fn print_json(scope: &str, r: &Rule) -> Result<(), CliError> {
    println!(
        "{}",
        serde_json::json!({"scope": scope, "rule": r, "at_utc": format_time(r.at)})
    );
    Ok(())
}

/// Runs one `chaff policy` subcommand.
pub fn run(args: PolicyArgs) -> Result<ExitCode, CliError> {
    let config = load_service_config(args.config.as_deref())?;
    let path = args.db.clone().unwrap_or_else(|| config.state.path.clone());
    let realm = config.accounts.realm.as_deref();
    let readable = || -> Result<Option<StateStore>, CliError> {
        match StateStore::open_existing(&path) {
            Ok(s) => Ok(Some(s)),
            Err(StoreError::Missing { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let (scope, change) = match args.action {
        PolicyAction::List { format } => {
            let rules = match readable()? {
                Some(s) => s.policies()?,
                None => Vec::new(),
            };
            if rules.is_empty() && format == Format::Text {
                println!("no stored policies");
            }
            for (s, r) in &rules {
                match format {
                    Format::Json => print_json(&s.to_string(), r)?,
                    Format::Text => print_rule(&s.to_string(), r),
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        PolicyAction::Show { scope, format } => {
            let scope = Scope::parse(&scope, realm)?;
            let rule = match readable()? {
                Some(s) => s.policy(&scope)?,
                None => None,
            };
            let Some(r) = rule else {
                eprintln!("chaff: {scope} has no stored policy");
                return Ok(ExitCode::from(1));
            };
            match format {
                Format::Json => print_json(&scope.to_string(), &r)?,
                Format::Text => print_rule(&scope.to_string(), &r),
            }
            return Ok(ExitCode::SUCCESS);
        }
        PolicyAction::Set { scope, key, value } => {
            (scope, Change::Set(Key::parse(&key)?, value.join(" ")))
        }
        PolicyAction::Unset { scope, key, value } => {
            let v = (!value.is_empty()).then(|| value.join(" "));
            (scope, Change::Unset(Key::parse(&key)?, v))
        }
    };
    let store = StateStore::open(&path)?;
    let edited =
        match site_policy::edit(&store, &scope, &change, realm, &operator(), now_ms() / 1000) {
            Ok(e) => e,
            Err(site_policy::PolicyError::NotFound(m)) => {
                eprintln!("chaff: {m}");
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(e.into()),
        };
    match &edited.rule {
        Some(r) => print_rule(&edited.scope, r),
        None => println!("{}: no stored policy any more", edited.scope),
    }
    println!(
        "(revision {}; a running service applies it within {} ms)",
        edited.revision, config.policy.refresh_ms
    );
    Ok(ExitCode::SUCCESS)
}
