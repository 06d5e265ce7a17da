//! `chaff senders list|allow|block`: the allow and block lists, as the service
//! applies them: the entries of `chaff.toml` (`[senders]`, never rewritten) and
//! those an admin added, kept in the state store. An edit is checked by the
//! rules the configuration's entries are checked by, logged with the user's
//! name, and applied by the running service within a few seconds (it reloads as
//! on SIGHUP).

use super::output::Format;
use super::quarantine::operator;
use super::{CliError, load_service_config};
use chaff_milter::accounts::format_time;
use chaff_milter::quarantine::{SenderList, StateStore, canonical_entry, now_ms};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff senders`.
#[derive(clap::Args)]
pub struct SendersArgs {
    /// The configuration file: its `[senders]` lists and `[state] path`.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The state store, overriding the configuration.
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: SendersAction,
}

/// `chaff senders` subcommands.
#[derive(clap::Subcommand)]
pub enum SendersAction {
    /// List the allow and block entries with their source.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Add (or with --remove, remove) an allow entry: `ADDRESS`, `DOMAIN` or a
    /// wildcard, optionally with `from NETWORK, ...` as proof.
    Allow(Edit),
    /// Add (or with --remove, remove) a block entry: `ADDRESS`, `DOMAIN` or a
    /// wildcard.
    Block(Edit),
}

/// One edit of a list.
#[derive(clap::Args)]
pub struct Edit {
    /// The entry (quote it when it has spaces: "ceo@example.com from 203.0.113.0/24").
    #[arg(required = true, num_args = 1..)]
    entry: Vec<String>,
    /// Remove the entry instead of adding it.
    #[arg(long)]
    remove: bool,
    /// Why, for the list.
    #[arg(long, default_value = "")]
    comment: String,
}

/// Runs one `chaff senders` subcommand.
pub fn run(args: SendersArgs) -> Result<ExitCode, CliError> {
    let config = load_service_config(args.config.as_deref())?;
    let path = args.db.clone().unwrap_or_else(|| config.state.path.clone());
    let now = now_ms() / 1000;
    let (list, edit) = match args.action {
        SendersAction::List { format } => {
            let source = args
                .config
                .as_ref()
                .map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
            let stored = match StateStore::open_existing(&path) {
                Ok(s) => s.senders()?,
                Err(chaff_milter::quarantine::StoreError::Missing { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let file_entries = config
                .engine
                .allow
                .iter()
                .map(|a| {
                    let mut s = a.pattern.as_str().to_string();
                    if !a.networks.is_empty() {
                        let nets: Vec<String> =
                            a.networks.iter().map(ToString::to_string).collect();
                        s.push_str(&format!(" from {}", nets.join(", ")));
                    }
                    ("allow", s)
                })
                .chain(
                    config
                        .engine
                        .block
                        .iter()
                        .map(|b| ("block", b.as_str().to_string())),
                );
            match format {
                Format::Json => {
                    for (list, entry) in file_entries {
                        println!(
                            "{}",
                            serde_json::json!({"list": list, "entry": entry, "source": "config", "file": source})
                        );
                    }
                    for e in &stored {
                        let mut v = serde_json::to_value(e)?;
                        if let Some(o) = v.as_object_mut() {
                            o.insert("source".into(), "store".into());
                            o.insert("at_utc".into(), format_time(e.at).into());
                        }
                        println!("{v}");
                    }
                }
                Format::Text => {
                    println!("{:<6}  {:<48}  SOURCE", "LIST", "ENTRY");
                    for (list, entry) in file_entries {
                        println!("{list:<6}  {entry:<48}  {source}");
                    }
                    for e in &stored {
                        let comment = if e.comment.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", e.comment)
                        };
                        println!(
                            "{:<6}  {:<48}  store (by {} at {}{comment})",
                            e.list.as_str(),
                            e.entry,
                            e.by,
                            format_time(e.at)
                        );
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        SendersAction::Allow(e) => (SenderList::Allow, e),
        SendersAction::Block(e) => (SenderList::Block, e),
    };
    let text = edit.entry.join(" ");
    let entry = canonical_entry(list, &text)?;
    let store = StateStore::open(&path)?;
    let by = operator();
    if edit.remove {
        if store.remove_sender(list, &entry, &by, now)? {
            println!("{} {entry}: removed", list.as_str());
        } else {
            eprintln!(
                "chaff: {} {entry}: not in the stored list (entries of the configuration file \
                 are removed by editing it)",
                list.as_str()
            );
            return Ok(ExitCode::from(1));
        }
    } else {
        if list == SenderList::Allow
            && !entry.contains(" from ")
            && config.engine.authserv_ids.is_empty()
            && !config.engine.allow_unverified
        {
            eprintln!(
                "chaff: warning: {entry} never applies: it lists no network (`from NETWORK`) and \
                 no `[senders] authserv_id` is set, so nothing can prove the sender"
            );
        }
        if store.add_sender(list, &entry, &by, &edit.comment, now)? {
            println!("{} {entry}: added", list.as_str());
        } else {
            println!("{} {entry}: already there", list.as_str());
        }
    }
    println!("(a running service applies the change within a few seconds)");
    Ok(ExitCode::SUCCESS)
}
