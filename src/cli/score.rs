//! `chaff score`: the verdict for every message of files, directories, Maildirs,
//! mbox files or standard input, in input order.

use super::output;
use super::{CliError, engine, progress};
use crate::ordered::Ordered;
use chaff::Envelope;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff score`.
#[derive(clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub batch: super::BatchArgs,
    /// Messages: files, directories (recursive), Maildirs, mbox files, `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Scores every message; exits non-zero at the end if any could not be read.
pub fn run(args: ScoreArgs) -> Result<ExitCode, CliError> {
    let engine = engine(args.batch.config.as_deref())?;
    let ordered = Ordered::new(args.batch.jobs);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let bar = progress(None);
    let envelope = Envelope::default();
    let mut failures = 0u64;
    let mut write_error = None;
    let mut refused = 0;
    let limit = engine.config().max_message_size;
    ordered.run(
        crate::input::messages(&args.paths, limit),
        |message| {
            let (name, input) = message.load(limit);
            match input {
                Ok(input) => {
                    let verdict = engine.scan_sized(&input.bytes, input.size, &envelope);
                    (
                        true,
                        output::verdict_line(args.batch.format, &name, &verdict),
                    )
                }
                Err(e) => (false, output::error_line(args.batch.format, &name, &e)),
            }
        },
        |(ok, line)| {
            warn_refused_model(&engine, &mut refused);
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

/// Prints a warning on stderr, once per refused version of the model file, when
/// the engine refused to reload it (the previous model keeps serving, but the next
/// start will fail on the file).
pub fn warn_refused_model(engine: &chaff::Engine, seen: &mut u64) {
    let now = engine.model_reload_failures();
    if now > *seen {
        *seen = now;
        let why = engine.model_reload_error().unwrap_or_default();
        eprintln!("chaff: warning: model file refused, the previous model keeps serving: {why}");
    }
}
