//! `chaff score`: the verdict for every message of files, directories, Maildirs,
//! mbox files or standard input, in input order.

use super::output::{self, Format};
use super::{CliError, engine, progress};
use chaff::Envelope;
use chaff::ordered::Ordered;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff score`.
#[derive(clap::Args)]
pub struct ScoreArgs {
    /// A configuration file (default: the embedded defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Worker threads (0: one per core).
    #[arg(long, short, default_value_t = 0)]
    pub jobs: usize,
    /// Messages: files, directories (recursive), Maildirs, mbox files, `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Scores every message; exits non-zero at the end if any could not be read.
pub fn run(args: ScoreArgs) -> Result<ExitCode, CliError> {
    let engine = engine(args.config.as_deref())?;
    let ordered = Ordered::new(args.jobs);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let bar = progress(None);
    let envelope = Envelope::default();
    let mut failures = 0u64;
    let mut write_error = None;
    ordered.run(
        chaff::input::messages(&args.paths),
        |message| {
            let (name, bytes) = message.load();
            match bytes {
                Ok(raw) => (
                    true,
                    output::verdict_line(args.format, &name, &engine.scan(&raw, &envelope)),
                ),
                Err(e) => (false, output::error_line(args.format, &name, &e)),
            }
        },
        |(ok, line)| {
            failures += u64::from(!ok);
            bar.inc(1);
            if write_error.is_none()
                && let Err(e) = out.write_all(line.as_bytes())
            {
                write_error = Some(e);
            }
        },
    );
    bar.finish_and_clear();
    out.flush()?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if failures > 0 {
        eprintln!("chaff: {failures} message(s) could not be read");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
