//! `chaff milter`: run the milter service for Postfix or Sendmail, and with it,
//! when configured, the HTTP listener (Rspamd's protocol, the admin API).
//!
//! The service itself is `chaff_milter::server`; this module turns the command line
//! and the `[milter]` table into its options, and sets up logging (one line per
//! message on stderr, which systemd's journal collects).

use super::{CliError, load_service_config};
use chaff_milter::server::{self, ListenAddr, ServeOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff milter`.
#[derive(clap::Args)]
pub struct MilterArgs {
    /// A configuration file (default: the embedded defaults); SIGHUP reads it again.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to listen: `inet:HOST:PORT`, `inet:PORT@HOST` or `unix:PATH`
    /// (default: `listen` in `[milter]`).
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve Prometheus metrics at `http://HOST:PORT/metrics`
    /// (default: `metrics` in `[milter]`).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Also serve Rspamd's HTTP protocol and the admin API on `HOST:PORT`
    /// (default: `listen` in `[http]`, 127.0.0.1:11333, when the file has an
    /// `[http]` table; without either, no HTTP listener runs).
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Log filter, e.g. `info` or `chaff=debug` (default: `$CHAFF_LOG`, else `info`).
    #[arg(long)]
    pub log: Option<String>,
}

/// Sets up `tracing` output on stderr.
pub fn init_logging(filter: Option<&str>) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = filter
        .map(str::to_string)
        .or_else(|| std::env::var("CHAFF_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(chaff_milter::log_batch::BatchedStderr)
        .try_init();
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(args: MilterArgs) -> Result<ExitCode, CliError> {
    init_logging(args.log.as_deref());
    // A huge-page fault in the middle of a scan costs milliseconds of kernel time:
    // the service trades a little throughput for even scan times.
    if let Err(e) = chaff_milter::memory::disable_transparent_huge_pages() {
        tracing::warn!(error = %e, "could not disable transparent huge pages");
    }
    // Read from the absolute path SIGHUP reads again, so a relative `db` resolves
    // the same way at start and at every reload.
    let config_path = match &args.config {
        Some(p) => Some(std::path::absolute(p)?),
        None => None,
    };
    let config = load_service_config(config_path.as_deref())?;
    let listen = args.listen.or_else(|| config.milter.listen.clone()).ok_or(
        "no listen address: give --listen inet:HOST:PORT or unix:PATH, or set `listen` in [milter]",
    )?;
    let listen: ListenAddr = listen.parse()?;
    let metrics = args.metrics.or_else(|| config.milter.metrics.clone());
    server::run(
        &config,
        ServeOptions {
            listen,
            metrics,
            config_path,
            http: args.http,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
