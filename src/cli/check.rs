//! `chaff check-config FILE`: validate a configuration before deploying it: every
//! table, the keyword lists and the bounce knowledge base files it names.

use super::CliError;
use chaff::bounce::{KnowledgeBase, KnowledgeSources};
use chaff::config::ConfigFile;
use chaff::{Config, ConfigError, Engine};
use std::path::Path;
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
    let service = chaff_milter::ServiceConfig::load(&args.file)?;
    // The HTTP listener's TLS certificate and key and its users file, if any.
    chaff_milter::http::check_files(service.http.as_ref(), &service.users)?;
    let config = service.engine.clone();
    let engine = Engine::new(&config)?;
    for warning in warnings(&args.file, &service)? {
        eprintln!("warning: {warning}");
    }
    {
        // A warning, not an error: this may run as another user than the service.
        let settings = chaff_milter::settings::Settings::from_config(&service)
            .map_err(|(field, message)| format!("{field}: {message}"))?;
        let key = settings.release_key();
        match chaff_milter::release::ReleaseKey::load(&key) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => eprintln!(
                "note: release key {} does not exist yet: the service creates it at start",
                key.display()
            ),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    super::warn_outdated_model(&engine, &config);
    let kw = engine.keywords();
    let sources = KnowledgeSources::from_file(&ConfigFile::load(&args.file)?)?;
    let kb = KnowledgeBase::load(&sources)?;
    let outbound = match config.outbound {
        Some(t) => format!(
            "outbound (authenticated) mail: quarantine at {}, reject at {}",
            t.quarantine, t.reject
        ),
        None => "outbound mail: as inbound".into(),
    };
    println!(
        "{}: ok — {} keywords in {} categories ({}); quarantine at {}, reject at {} with `{}`; \
         {outbound}; {} bounce causes",
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

/// Settings that are valid but risky or useless, each located like an error
/// (`FILE:LINE: field `senders.allow_unverified`: …`).
fn warnings(
    file: &Path,
    service: &chaff_milter::ServiceConfig,
) -> Result<Vec<ConfigError>, CliError> {
    let config: &Config = &service.engine;
    let mut out = Vec::new();
    let q = &service.quarantine;
    if q.mode == chaff_milter::config::QuarantineMode::Store && q.release_relay.is_none() {
        let f = ConfigFile::load(file)?;
        out.push(f.error(
            "quarantine.mode",
            "\"store\" keeps the only copy of quarantined mail, and releasing it needs \
             `release_relay` (the MTA's SMTP address): set it",
        ));
    }
    let unprovable: Vec<&str> = config
        .allow
        .iter()
        .filter(|e| e.networks.is_empty())
        .map(|e| e.pattern.as_str())
        .collect();
    if !config.allow_unverified && config.authserv_ids.is_empty() && !unprovable.is_empty() {
        let f = ConfigFile::load(file)?;
        out.push(f.error(
            "senders.allow",
            format!(
                "{} never applies: it lists no network and no `authserv_id` is set, \
                 so nothing can prove the sender",
                unprovable.join(", ")
            ),
        ));
    }
    let p = &service.policy;
    if p.sender_mismatch != chaff_milter::site_policy::MismatchAction::Off
        && p.default_domain.is_none()
        && service.accounts.realm.is_none()
    {
        let f = ConfigFile::load(file)?;
        out.push(f.error(
            "policy.sender_mismatch",
            "bare logins (without @domain) have no domain to match: set `policy.default_domain` \
             or `accounts.realm`, or they are not checked",
        ));
    }
    if config.allow_unverified {
        let f = ConfigFile::load(file)?;
        out.push(f.error(
            "senders.allow_unverified",
            "allow entries match the envelope sender alone, which anyone can forge: \
             mail claiming an allowed sender is never refused",
        ));
    }
    Ok(out)
}
