//! `chaff quarantine list|show|release|resolve|delete|purge`: the spam report
//! list, from the command line.
//!
//! The state store is shared with the running service (redb in multi-writer
//! mode), so these commands work while `chaff milter` runs. They never create a
//! store at a mistyped path. Every change is logged in the store's admin action
//! log as `cli:` and the name of the user running the command ([`operator`]).
//!
//! `release` goes through [`chaff_milter::resend::release_entry`], the same code
//! as the HTTP API's release: hold-mode entries leave Postfix's hold queue
//! (`postsuper -H`: as root, or through the sudo rule in `contrib/sudoers.chaff`),
//! the others are sent by SMTP to `[quarantine] release_relay` with a release
//! token made with the service's key (which this command reads, never creates).

use super::output::Format;
use super::{CliError, load_service_config};
use chaff::Engine;
use chaff_milter::accounts::format_time;
use chaff_milter::quarantine::{
    AdminAction, Entry, EntryId, EntryState, Filter, MAX_HEADER_BYTES, MAX_PAGE, Preview,
    StateError, StateFilter, StateStore, Summary, now_ms,
};
use chaff_milter::resend::{ResendError, ResendOptions, release_config, release_entry};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff quarantine`.
#[derive(clap::Args)]
pub struct QuarantineArgs {
    /// The configuration file naming the store (`path` in `[state]`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The state store, overriding the configuration.
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: QuarantineAction,
}

/// `chaff quarantine` subcommands.
#[derive(clap::Subcommand)]
pub enum QuarantineAction {
    /// List kept messages, newest first.
    List(ListArgs),
    /// Show one entry: envelope, verdict, headers and the text with hits marked.
    Show {
        /// The entry's id.
        id: String,
        /// Print the message exactly as it was received instead.
        #[arg(long)]
        raw: bool,
        /// Output format (json: the entry's record, without the message).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Release (resend) entries to their original recipients with their original
    /// envelope; exit status 0 only when every one was released.
    Release {
        /// The entries' ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// After the release, learn each message as ham (updates the configured model).
        #[arg(long)]
        learn_ham: bool,
        /// After the release, allow each sender from the address its message came
        /// from (`SENDER from CLIENT_ADDR`).
        #[arg(long)]
        allow_sender: bool,
        /// Release an entry whose earlier release is in doubt (check first that it
        /// was not delivered: the recipient's mailbox, the MTA's log).
        #[arg(long)]
        force: bool,
    },
    /// Settle an entry whose release is in doubt, after checking the recipient's
    /// mailbox and the MTA's log.
    #[command(group(clap::ArgGroup::new("outcome").required(true).args(["delivered", "not_delivered"])))]
    Resolve {
        /// The entry's id.
        id: String,
        /// It was delivered: mark it released.
        #[arg(long)]
        delivered: bool,
        /// It was not delivered: hold it again, to be released anew.
        #[arg(long)]
        not_delivered: bool,
    },
    /// Delete entries' messages (the record stays, marked deleted, until retention).
    Delete {
        /// The entries' ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Learn each message as spam first (updates the configured model).
        #[arg(long)]
        learn_spam: bool,
    },
    /// Drop every entry kept longer ago than the given age.
    Purge {
        /// An age such as `30d`, `12h`.
        #[arg(long, value_parser = parse_duration)]
        older_than: std::time::Duration,
    },
}

/// Filters and paging of `chaff quarantine list`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Kept within this long (`7d`, `12h`), or since this time: UTC
    /// (`2026-11-29`, `2026-11-29 08:00:00`), RFC 3339, or seconds since 1970.
    #[arg(long, value_parser = parse_since)]
    since: Option<u64>,
    /// Kept before this UTC time (or this long ago).
    #[arg(long, value_parser = parse_since)]
    until: Option<u64>,
    /// The sender: an address, a domain (`example.com`) or `<>`.
    #[arg(long)]
    sender: Option<String>,
    /// A recipient: an address or a domain.
    #[arg(long)]
    rcpt: Option<String>,
    /// The verdict's action: `quarantine` or `reject`.
    #[arg(long)]
    action: Option<String>,
    /// Score at least this.
    #[arg(long)]
    min_score: Option<f64>,
    /// The subject contains this (any case).
    #[arg(long)]
    subject: Option<String>,
    /// The state: held, releasing, in_doubt, released, deleted.
    #[arg(long, value_parser = parse_state)]
    state: Option<StateFilter>,
    /// Most entries listed.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Continue a list below this id (printed at the end of a full page).
    #[arg(long)]
    before: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    chaff::config::parse_duration(s)
}

fn parse_state(s: &str) -> Result<StateFilter, String> {
    StateFilter::parse(s)
        .ok_or_else(|| format!("`{s}`: use held, releasing, in_doubt, released or deleted"))
}

/// A point in time: a duration back from now, seconds since 1970, RFC 3339 or
/// a UTC date (`chaff_milter::time`, the admin API's reader too).
fn parse_since(s: &str) -> Result<u64, String> {
    chaff_milter::time::parse_point(s, now_ms() / 1000)
}

/// Who is running the command, for the action log: `cli:` and the user who
/// ran `sudo` (`SUDO_USER`), else the login name (`USER`, `LOGNAME`), else the
/// name of this process's user id in `/etc/passwd` (or `uidN`).
pub fn operator() -> String {
    let name = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| {
            // The owner of /proc/self is this process's user id (no libc call,
            // so no unsafe code in the CLI).
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata("/proc/self") {
                Ok(m) => user_name(m.uid()).unwrap_or_else(|| format!("uid{}", m.uid())),
                Err(_) => "unknown".into(),
            }
        });
    cli_name(&name)
}

/// `cli:NAME`, the name trimmed, cut at 64 characters, control characters and
/// spaces replaced by `_` (it goes in logs and in the action log's lines).
fn cli_name(name: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("cli:{name}")
}

/// The name of user id `uid` in `/etc/passwd` (read up to 4 MiB).
fn user_name(uid: u32) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open("/etc/passwd")
        .ok()?
        .take(4 << 20)
        .read_to_string(&mut text)
        .ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let (name, _, id) = (f.next()?, f.next()?, f.next()?);
        (id.parse::<u32>().ok()? == uid && !name.is_empty()).then(|| name.to_string())
    })
}

fn id_of(s: &str) -> Result<EntryId, CliError> {
    Ok(s.parse::<EntryId>()?)
}

/// Text cut to `n` characters, with `…`.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Control characters shown as spaces, so nothing from a message can move the
/// terminal's cursor or change its state.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn state_text(s: &EntryState, now: u64) -> String {
    match s {
        EntryState::Held => "held".into(),
        EntryState::Releasing { by, at, doubt, .. } => {
            let mut t = format!("{} (by {by} at {})", s.name(now), format_time(*at));
            if let Some(why) = doubt {
                t.push_str(": ");
                t.push_str(&clean(why));
            }
            t
        }
        EntryState::Released { by, at, how } => {
            format!("released by {by} at {} ({how})", format_time(*at))
        }
        EntryState::Deleted { by, at } => format!("deleted by {by} at {}", format_time(*at)),
    }
}

fn summary_json(s: &Summary, now: u64) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("time_utc".into(), format_time(s.time).into());
        o.insert("state_name".into(), s.state.name(now).into());
    }
    v
}

fn open_store(
    args: &QuarantineArgs,
) -> Result<(StateStore, chaff_milter::ServiceConfig), CliError> {
    let config = load_service_config(args.config.as_deref())?;
    let path = args.db.clone().unwrap_or_else(|| config.state.path.clone());
    Ok((StateStore::open_existing(&path)?, config))
}

/// Runs one `chaff quarantine` subcommand.
pub fn run(args: QuarantineArgs) -> Result<ExitCode, CliError> {
    let (store, config) = open_store(&args)?;
    let now = now_ms() / 1000;
    match args.action {
        QuarantineAction::List(l) => list(&store, l, now),
        QuarantineAction::Show { id, raw, format } => {
            let id = id_of(&id)?;
            let Some(entry) = store.get(id)? else {
                eprintln!("chaff: no quarantine entry {id}");
                return Ok(ExitCode::from(1));
            };
            let message = store.message(id)?;
            if raw {
                use std::io::Write;
                let Some(m) = message else {
                    eprintln!("chaff: {id}: the message was deleted");
                    return Ok(ExitCode::from(1));
                };
                std::io::stdout().write_all(&m)?;
                return Ok(ExitCode::SUCCESS);
            }
            match format {
                Format::Json => {
                    let mut v = serde_json::to_value(&entry)?;
                    if let Some(o) = v.as_object_mut() {
                        o.insert("time_utc".into(), format_time(entry.summary.time).into());
                        o.insert("state_name".into(), entry.summary.state.name(now).into());
                    }
                    println!("{v}");
                }
                Format::Text => {
                    let engine = Engine::new(&config.engine)?;
                    print!("{}", show_text(&entry, message.as_deref(), &engine, now));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineAction::Release {
            ids,
            learn_ham,
            allow_sender,
            force,
        } => {
            let ids = ids
                .iter()
                .map(|s| id_of(s))
                .collect::<Result<Vec<_>, _>>()?;
            let opts = ResendOptions {
                force,
                learn_ham,
                allow_sender,
            };
            release(&store, &config, &ids, &opts)
        }
        QuarantineAction::Resolve {
            id,
            delivered,
            not_delivered: _,
        } => {
            let id = id_of(&id)?;
            match store.resolve_in_doubt(id, &operator(), delivered, now) {
                Ok(s) => {
                    println!("{id}: {}", state_text(&s.state, now));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("chaff: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        QuarantineAction::Delete { ids, learn_spam } => {
            let ids = ids
                .iter()
                .map(|s| id_of(s))
                .collect::<Result<Vec<_>, _>>()?;
            let by = operator();
            if learn_spam {
                // Learn first: if the model cannot be updated, nothing is deleted.
                let mut learner = super::learn::Learner::open(config.engine.clone(), None)?;
                for &id in &ids {
                    match store.message(id)? {
                        Some(m) => {
                            let l = learner.learn(&m, true);
                            println!("{id}\tspam\tscore {:.2} -> {:.2}", l.before, l.after);
                        }
                        None => eprintln!("chaff: {id}: no message to learn"),
                    }
                }
                let (learned, _, path) = learner.save()?;
                for &id in &ids {
                    store.log_action(&AdminAction {
                        at: now,
                        by: by.clone(),
                        what: "learn-spam".into(),
                        id: Some(id),
                        detail: path.display().to_string(),
                    })?;
                }
                eprintln!(
                    "chaff: learned {} message(s) as spam: {}",
                    learned[1],
                    path.display()
                );
            }
            let mut failed = false;
            for id in ids {
                match store.delete(id, &by, now) {
                    Ok(_) => println!("{id}: deleted"),
                    Err(e) => {
                        eprintln!("chaff: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        QuarantineAction::Purge { older_than } => {
            let r = store.purge(older_than, &operator(), now)?;
            println!(
                "purged {} entries ({} bytes) kept more than {} s ago",
                r.entries,
                r.bytes,
                older_than.as_secs()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `chaff quarantine release`: each id in turn, a line for each saying what
/// happened; exit status 1 when any was not released or an option failed.
fn release(
    store: &StateStore,
    config: &chaff_milter::ServiceConfig,
    ids: &[EntryId],
    opts: &ResendOptions,
) -> Result<ExitCode, CliError> {
    let settings = chaff_milter::settings::Settings::from_config(config)
        .map_err(|(field, e)| format!("field `{field}`: {e}"))?;
    let delivery = release_config(&settings)?;
    // The engine only reads the message when it is learned; its configuration
    // names the model. Without --learn-ham the model is not loaded.
    let mut engine_config = config.engine.clone();
    if !opts.learn_ham {
        engine_config.model = None;
    }
    let engine = Engine::new(&engine_config)?;
    let by = operator();
    let mut failed = false;
    for &id in ids {
        match release_entry(store, &engine, &delivery, id, &by, opts, now_ms() / 1000) {
            Ok(r) => {
                println!("{id}: released: {}", r.delivery);
                if let Some((before, after)) = r.learned {
                    println!("{id}: learned as ham: score {before:.2} -> {after:.2}");
                }
                if let Some(entry) = &r.allowed {
                    println!("{id}: allowed: {entry}");
                }
                for p in &r.problems {
                    eprintln!("chaff: {id}: {p}");
                    failed = true;
                }
            }
            Err(e) => {
                // A conflict names the entry itself, with who and when.
                match &e {
                    ResendError::State(StateError::Conflict { .. }) => eprintln!("chaff: {e}"),
                    _ => eprintln!("chaff: {id}: {e}"),
                }
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn list(store: &StateStore, l: ListArgs, now: u64) -> Result<ExitCode, CliError> {
    if let Some(a) = &l.action
        && chaff::Action::from_name(a.trim()).is_none()
    {
        return Err(format!("--action `{a}`: use deliver, quarantine or reject").into());
    }
    if l.limit == 0 || l.limit > MAX_PAGE {
        return Err(format!("--limit must be between 1 and {MAX_PAGE}").into());
    }
    let filter = Filter {
        since: l.since,
        until: l.until,
        sender: l.sender,
        rcpt: l.rcpt,
        action: l.action,
        min_score: l.min_score,
        subject: l.subject,
        state: l.state,
    };
    let before = l.before.as_deref().map(id_of).transpose()?;
    let page = store.list(&filter, l.limit, before, now)?;
    match l.format {
        Format::Json => {
            for s in &page.entries {
                println!("{}", summary_json(s, now));
            }
        }
        Format::Text => {
            if page.entries.is_empty() {
                println!("no entries ({})", store.path().display());
            } else {
                println!(
                    "{:<13}  {:<19}  {:>6}  {:<10}  {:<9}  {:<28}  {:<28}  SUBJECT",
                    "ID", "TIME (UTC)", "SCORE", "ACTION", "STATE", "FROM", "TO"
                );
                for s in &page.entries {
                    let to = match s.recipients.len() {
                        0 => "-".to_string(),
                        1 => s.recipients[0].clone(),
                        n => format!("{} +{}", s.recipients[0], n - 1),
                    };
                    let from = if s.sender.is_empty() { "<>" } else { &s.sender };
                    println!(
                        "{}  {:<19}  {:>6.2}  {:<10}  {:<9}  {:<28}  {:<28}  {}",
                        s.id,
                        format_time(s.time).trim_end_matches(" UTC"),
                        s.score,
                        format!("{}/{}", s.action, s.told.as_str()),
                        s.state.name(now),
                        clean(&cut(from, 28)),
                        clean(&cut(&to, 28)),
                        clean(&cut(&s.subject, 60)),
                    );
                }
            }
            if let Some(next) = page.next {
                println!("(more: --before {next})");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `chaff quarantine show`.
fn show_text(e: &Entry, message: Option<&[u8]>, engine: &Engine, now: u64) -> String {
    use std::fmt::Write as _;
    let s = &e.summary;
    let env = &e.detail.envelope;
    let v = &e.detail.verdict;
    let mut o = String::new();
    let opt = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(o, "id:        {}", s.id);
    let _ = writeln!(o, "time:      {}", format_time(s.time));
    let _ = writeln!(o, "state:     {}", state_text(&s.state, now));
    let _ = writeln!(o, "told MTA:  {}", s.told.as_str());
    let _ = writeln!(o, "host:      {}", clean(&s.host));
    let _ = writeln!(
        o,
        "from:      {}",
        if env.sender.is_empty() {
            "<>".into()
        } else {
            clean(&env.sender)
        }
    );
    let _ = writeln!(o, "to:        {}", clean(&env.recipients.join(", ")));
    let _ = writeln!(
        o,
        "client:    {} ({}), helo {}",
        opt(&env.client_addr),
        clean(&opt(&env.client_name)),
        clean(&opt(&env.helo))
    );
    let _ = writeln!(o, "auth:      {}", clean(&opt(&env.auth_user)));
    let _ = writeln!(o, "queue id:  {}", clean(&opt(&env.queue_id)));
    let _ = writeln!(o, "size:      {} bytes ({} stored)", s.size, s.stored_bytes);
    let _ = writeln!(o, "subject:   {}", clean(&s.subject));
    let _ = writeln!(
        o,
        "verdict:   {} score {:.2}: {}",
        v.action, v.score, v.reason
    );
    if let Some(r) = &v.reply {
        let _ = writeln!(o, "reply:     {r}");
    }
    if v.truncated {
        let _ = writeln!(o, "note:      some text was not scanned (too long)");
    }
    for h in &v.hits {
        let _ = writeln!(
            o,
            "hit:       {} ×{} ({}, weight {:.2}, +{:.2})",
            clean(&h.keyword),
            h.count,
            h.category,
            h.weight,
            h.contribution
        );
    }
    for t in &v.tokens {
        let _ = writeln!(o, "token:     {} {:+.2}", clean(&t.token), t.weight);
    }
    let Some(raw) = message else {
        let _ = writeln!(o, "\n(the message was deleted)");
        return o;
    };
    let p = Preview::of(raw, engine);
    let _ = writeln!(o, "\n--- headers");
    let _ = writeln!(o, "{}", clean(p.headers.trim_end()));
    if p.headers_truncated {
        let _ = writeln!(o, "(headers cut at {MAX_HEADER_BYTES} bytes)");
    }
    let _ = writeln!(o, "\n--- decoded text, hits marked [[like this]]");
    let _ = writeln!(o, "Subject: {}", clean(&p.subject.marked()));
    for (i, t) in p.parts.iter().enumerate() {
        let _ = writeln!(o, "\n[part {} ({})]", i + 1, t.source);
        let _ = writeln!(o, "{}", clean(&t.marked()));
    }
    if p.truncated {
        let _ = writeln!(o, "\n(text cut: over the engine's decoding limit)");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_named_for_the_log() {
        assert_eq!(cli_name("alice"), "cli:alice");
        assert_eq!(cli_name(" bob\n evil "), "cli:bob__evil");
        assert_eq!(cli_name(&"x".repeat(100)).len(), 4 + 64);
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert!(operator().starts_with("cli:"));
    }

    #[test]
    fn times_read_as_the_api_reads_them() {
        let now = now_ms() / 1000;
        let t = parse_since("1h").unwrap();
        assert!(now - t >= 3600 && now - t < 3660);
        assert!(parse_since("soon").is_err());
        assert_eq!(parse_since("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse_since("1700000000"), Ok(1_700_000_000));
    }
}
