//! `chaff explain-bounce`: for every message of files, directories, Maildirs, mbox
//! files or standard input, whether it is a bounce and, for each recipient it
//! failed for, why, who must act and what to do.
//!
//! Bounce contents are never logged; they go to standard output only, with their
//! control characters escaped (`chaff::bounce::clean`).

use super::CliError;
use super::output::Format;
use chaff::bounce::{Explainer, Explanation, KnowledgeBase, KnowledgeSources, Lang, clean};
use chaff::config::ConfigFile;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The language of the explanation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LangArg {
    /// Chinese.
    Zh,
    /// English.
    En,
}

/// Arguments of `chaff explain-bounce`.
#[derive(clap::Args)]
pub struct ExplainBounceArgs {
    /// A configuration file: its `[bounce]` table adds knowledge base files.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Language of the explanation (default: zh when $LANG starts with zh, else en).
    #[arg(long, value_enum)]
    pub lang: Option<LangArg>,
    /// Output format: text (a block per message) or json (one object per line).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Bounces: files, directories (recursive), Maildirs, mbox files, `-` for stdin.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Serialize)]
struct JsonExplanation<'a> {
    path: &'a str,
    #[serde(flatten)]
    explanation: &'a Explanation,
}

#[derive(Serialize)]
struct JsonError<'a> {
    path: &'a str,
    error: String,
}

/// Explains every message; exits 1 at the end if any could not be read.
pub fn run(args: ExplainBounceArgs) -> Result<ExitCode, CliError> {
    let sources = match &args.config {
        Some(path) => {
            // Every table checked, as for the other commands.
            super::load_service_config(Some(path))?;
            KnowledgeSources::from_file(&ConfigFile::load(path)?)?
        }
        None => KnowledgeSources::default(),
    };
    let kb = KnowledgeBase::load(&sources)?;
    let lang = match args.lang {
        Some(LangArg::Zh) => Lang::Zh,
        Some(LangArg::En) => Lang::En,
        None => match std::env::var("LANG") {
            Ok(l) if l.starts_with("zh") => Lang::Zh,
            _ => Lang::En,
        },
    };
    let explainer = Explainer::new(&kb, lang);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut failures = 0u64;
    // Bounces are read with the scanner's default size limit.
    let limit = chaff::Config::default().max_message_size;
    for message in crate::input::messages(&args.paths, limit) {
        let (name, input) = message.load(limit);
        let name = clean(&name);
        let bytes = input.and_then(|input| {
            if input.is_complete() {
                Ok(input.bytes)
            } else {
                Err(std::io::Error::other(format!(
                    "larger than the limit of {limit} bytes"
                )))
            }
        });
        let text = match bytes {
            Ok(raw) => render(args.format, lang, &name, &explainer.explain(&raw)),
            Err(e) => {
                failures += 1;
                error(args.format, &name, &e)
            }
        };
        out.write_all(text.as_bytes())?;
    }
    out.flush()?;
    if failures > 0 {
        eprintln!("chaff: {failures} message(s) could not be read");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn error(format: Format, path: &str, e: &std::io::Error) -> String {
    match format {
        Format::Json => {
            let mut line = serde_json::to_string(&JsonError {
                path,
                error: e.to_string(),
            })
            .unwrap_or_else(|_| format!("{{\"path\":{path:?},\"error\":\"unprintable\"}}"));
            line.push('\n');
            line
        }
        Format::Text => format!("{path}\terror\t{e}\n"),
    }
}

/// One message's output (with the final newline).
pub fn render(format: Format, lang: Lang, path: &str, e: &Explanation) -> String {
    if format == Format::Json {
        let mut line = serde_json::to_string(&JsonExplanation {
            path,
            explanation: e,
        })
        .unwrap_or_else(|err| format!("{{\"path\":{path:?},\"error\":\"{err}\"}}"));
        line.push('\n');
        return line;
    }
    let zh = lang == Lang::Zh;
    let mut s = String::new();
    if !e.bounce {
        let _ = writeln!(
            s,
            "{path}\t{}",
            if zh { "不是退信" } else { "not a bounce" }
        );
        return s;
    }
    let _ = write!(s, "{path}\t{}", if zh { "退信" } else { "bounce" });
    let _ = write!(s, " ({})", e.format);
    if let Some(subject) = &e.original_subject {
        let _ = write!(
            s,
            "\t{}{subject}",
            if zh {
                "原邮件主题："
            } else {
                "subject: "
            }
        );
    }
    if let Some(date) = &e.original_date {
        let _ = write!(s, "\t{}{date}", if zh { "时间：" } else { "date: " });
    }
    s.push('\n');
    if e.recipients.is_empty() {
        let _ = writeln!(
            s,
            "  {}",
            if zh {
                "没有找到失败的收件人"
            } else {
                "no failed recipient found"
            }
        );
    }
    for r in &e.recipients {
        let unknown = if zh {
            "（未知地址）"
        } else {
            "(address unknown)"
        };
        let _ = write!(s, "  {}", r.address.as_deref().unwrap_or(unknown));
        if r.action != "failed" {
            let _ = write!(s, " [{}]", r.action);
        }
        let code: Vec<&str> = [r.reply.as_deref(), r.status.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !code.is_empty() {
            let _ = write!(s, "\t{}", code.join(" "));
        }
        if let Some(mta) = &r.remote_mta {
            let _ = write!(s, "\t{}{mta}", if zh { "服务器：" } else { "server: " });
        }
        s.push('\n');
        let labels = if zh {
            ["原因", "谁来处理", "解决办法", "服务器原话"]
        } else {
            ["cause", "who acts", "fix", "server said"]
        };
        let _ = writeln!(s, "    {}: {} [{}]", labels[0], r.cause, r.cause_id);
        let _ = writeln!(s, "    {}: {}", labels[1], r.who_text);
        let _ = writeln!(s, "    {}: {}", labels[2], r.fix);
        if !r.diagnostic.is_empty() {
            let _ = writeln!(s, "    {}: {}", labels[3], r.diagnostic);
        }
    }
    s
}
