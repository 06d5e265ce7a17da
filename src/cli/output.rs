//! How a verdict is printed: one line per message, as text or JSON.

use chaff::Verdict;
use serde::Serialize;
use std::fmt::Write as _;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned, human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Serialize)]
struct JsonVerdict<'a> {
    path: &'a str,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

#[derive(Serialize)]
struct JsonError<'a> {
    path: &'a str,
    error: String,
}

/// One message's line (with the newline).
pub fn verdict_line(format: Format, path: &str, verdict: &Verdict) -> String {
    match format {
        Format::Json => {
            let mut line = serde_json::to_string(&JsonVerdict { path, verdict })
                .unwrap_or_else(|e| format!("{{\"path\":{path:?},\"error\":\"{e}\"}}"));
            line.push('\n');
            line
        }
        Format::Text => {
            let mut line = format!("{path}\t{}\t{:.2}", verdict.action, verdict.score);
            if let Some(reply) = &verdict.reply {
                let _ = write!(line, "\t{reply}");
            }
            let _ = write!(line, "\t{}", verdict.reason);
            for hit in verdict.hits.iter().take(8) {
                let _ = write!(
                    line,
                    "\t{}×{} ({} {:+.2})",
                    hit.keyword, hit.count, hit.category, hit.contribution
                );
            }
            for t in &verdict.tokens {
                let _ = write!(
                    line,
                    "\t{} {:+.2}",
                    t.token.replace(['\t', '\n'], " "),
                    t.weight
                );
            }
            line.push('\n');
            line
        }
    }
}

/// The line for a message that could not be read.
pub fn error_line(format: Format, path: &str, error: &std::io::Error) -> String {
    match format {
        Format::Json => {
            let mut line = serde_json::to_string(&JsonError {
                path,
                error: error.to_string(),
            })
            .unwrap_or_else(|_| format!("{{\"path\":{path:?},\"error\":\"unprintable\"}}"));
            line.push('\n');
            line
        }
        Format::Text => format!("{path}\terror\t{error}\n"),
    }
}
