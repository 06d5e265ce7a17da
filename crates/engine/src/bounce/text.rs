//! Free-text bounces: Postfix, Exim, Sendmail, Exchange/Outlook and qmail reports
//! and Chinese servers' 退信 pages, read from their visible text.
//!
//! The human part of the report (up to the copy of the bounced message) is cut
//! into one block per recipient: a block starts at a line that begins with an
//! address (`<a@b>:` for Postfix and qmail, `a@b` alone for Exim and Exchange,
//! `<a@b>` for Sendmail) and runs to the next such line. In each block the reply
//! code, the enhanced status code and the server (`host X[ip] said`, `while
//! talking to X`, `Generating server: X`, `X does not like recipient`) are found
//! by their usual wording. The Chinese page is read by its labels (收件人, 主题,
//! 时间, 退信原因, 建议解决方案).

use super::{Raw, parse_reply, parse_status};

/// What the free text says.
#[derive(Debug, Default)]
pub(super) struct FreeText {
    pub format: &'static str,
    pub failures: Vec<Raw>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub reporting_mta: Option<String>,
}

/// Wording that marks the human part of a bounce (lowercase).
const BODY_MARKERS: &[&str] = &[
    "this is the mail system at host",
    "could not be delivered",
    "delivery has failed",
    "permanent fatal errors",
    "this is the qmail-send program",
    "wasn't able to deliver",
    "mail delivery software",
    "undeliverable",
    "delivery to the following recipient",
    "delivery failed",
    "退信原因",
    "被退回",
    "无法投递",
    "投递失败",
];

/// Wording of bounce subjects (lowercase).
const SUBJECT_MARKERS: &[&str] = &[
    "undeliver",
    "returned mail",
    "returned to sender",
    "delivery status notification",
    "mail delivery failed",
    "failure notice",
    "delivery failure",
    "non-delivery",
    "nondeliverable",
    "could not be delivered",
    "delivery has failed",
    "退信",
    "被退回",
    "投递失败",
    "未送达",
];

/// Lines at which the copy of the bounced message starts (lowercase).
const COPY_MARKERS: &[&str] = &[
    "below this line is a copy of the message",
    "this is a copy of the message",
    "original message follows",
    "original message headers",
    "----- original message",
    "returned message follows",
    "------ this is a copy",
    "--- below this line",
    "undelivered message attached",
];

/// Does the message look like a bounce (sender, subject or wording)?
pub(super) fn is_bounce(from: &str, subject: &str, body: &str) -> bool {
    let from = from.to_ascii_lowercase();
    let subject = subject.to_ascii_lowercase();
    let head = super::prefix(body, 8192);
    let head = head.to_ascii_lowercase();
    from.contains("mailer-daemon")
        || from.contains("postmaster")
        || from.contains("mail delivery")
        || SUBJECT_MARKERS.iter().any(|m| subject.contains(m))
        || BODY_MARKERS.iter().any(|m| head.contains(m))
}

/// Reads the recipients, subject and date of a free-text report.
pub(super) fn extract(text: &str) -> FreeText {
    let text = super::prefix(text, super::MAX_TEXT_BYTES);
    if text.contains("退信原因") {
        return chinese(text);
    }
    let lower = text.to_ascii_lowercase();
    let format = if lower.contains("this is the mail system at host") {
        "postfix"
    } else if lower.contains("qmail-send program") {
        "qmail"
    } else if lower.contains("mail delivery software") || lower.contains("exim") {
        "exim"
    } else if lower.contains("transcript of session follows")
        || lower.contains("permanent fatal errors")
    {
        "sendmail"
    } else if lower.contains("delivery has failed to these recipients")
        || lower.contains("diagnostic information for administrators")
        || lower.contains("generating server")
    {
        "exchange"
    } else {
        "generic"
    };
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .iter()
        .position(|l| {
            let l = l.to_ascii_lowercase();
            COPY_MARKERS.iter().any(|m| l.contains(m))
        })
        .unwrap_or(lines.len());
    let (human, copy) = lines.split_at(cut);
    let mut out = FreeText {
        format,
        ..FreeText::default()
    };
    // Blocks: (address, lines).
    let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
    // The block later lines belong to.
    let mut current = None;
    for line in human {
        let recipient = recipient_line(line).filter(|(addr, _)| {
            // An indented line naming the current recipient continues its block
            // (Postfix folds `said: 550 5.1.1\n    <a@b>: reason`).
            !(line.starts_with([' ', '\t'])
                && current.is_some_and(|i: usize| blocks[i].0.eq_ignore_ascii_case(addr)))
        });
        if let Some((addr, rest)) = recipient {
            match blocks
                .iter()
                .position(|(a, _)| a.eq_ignore_ascii_case(&addr))
            {
                Some(i) => {
                    blocks[i].1.push(rest);
                    current = Some(i);
                }
                None if blocks.len() < super::MAX_RECIPIENTS => {
                    blocks.push((addr, vec![rest]));
                    current = Some(blocks.len() - 1);
                }
                None => current = None,
            }
        } else if let Some(i) = current {
            blocks[i].1.push(line);
        }
    }
    let generating = find_after(text, "Generating server:").map(first_word);
    for (addr, block) in blocks {
        let joined = block.join("\n");
        let Some(f) = failure(Some(addr), &joined, generating.clone()) else {
            continue;
        };
        out.failures.push(f);
    }
    if out.failures.is_empty() {
        // A report without a recipient line: one failure, address unknown.
        let joined = human.join("\n");
        if let Some(f) = failure(None, &joined, generating)
            && (f.reply.is_some() || f.status.is_some())
        {
            out.failures.push(f);
        }
    }
    out.reporting_mta = find_after(text, "This is the mail system at host ")
        .or_else(|| find_after(text, "qmail-send program at "))
        .map(|s| first_word(s).trim_end_matches(['.', ':']).to_string());
    let copy = copy.join("\n");
    let header = |name: &str| {
        copy.lines()
            .chain(human.iter().copied())
            .find_map(|l| {
                let l = l.trim_start();
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .filter(|v| !v.is_empty())
    };
    out.subject = header("subject");
    out.date = header("date");
    out
}

/// A failure from the text of one recipient's block; `None` when the block says
/// nothing at all.
fn failure(address: Option<String>, block: &str, generating: Option<String>) -> Option<Raw> {
    let reply = parse_reply(block);
    let status = parse_status(block);
    // The reply's line and the indented lines that continue it.
    let paragraph_from = |start: usize| {
        let rest = &block[start..];
        let mut lines = rest.lines();
        let mut out: Vec<&str> = lines.next().into_iter().collect();
        out.extend(lines.take_while(|l| l.starts_with([' ', '\t']) && !l.trim().is_empty()));
        let joined = out.join(" ");
        let mut d = joined.split_whitespace().collect::<Vec<_>>().join(" ");
        if d.ends_with(')') && d.matches(')').count() > d.matches('(').count() {
            d.pop();
        }
        // A reply quoted by the report (`returned '550 …'`) loses its closing quote.
        if let Some(q @ ('\'' | '"')) = block[..start].chars().next_back()
            && d.ends_with(q)
        {
            d.pop();
        }
        d
    };
    let diagnostic = match &reply {
        Some((at, _)) => paragraph_from(*at),
        None => block.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    if diagnostic.is_empty() && address.is_none() {
        return None;
    }
    let remote = remote_mta(block).or(generating);
    Some(Raw {
        address,
        action: "failed".into(),
        reply: reply.map(|(_, c)| c),
        status,
        diagnostic,
        remote_mta: remote,
        context: block.split_whitespace().collect::<Vec<_>>().join(" "),
    })
}

/// The server named in a block.
pub(super) fn remote_mta(block: &str) -> Option<String> {
    for marker in ["host ", "of server "] {
        let Some(rest) = find_after(block, marker) else {
            continue;
        };
        let name = first_word(rest);
        let name = name
            .split('[')
            .next()
            .unwrap_or("")
            .trim_end_matches([':', ',', '.']);
        if name.contains('.') {
            return Some(name.to_string());
        }
    }
    if let Some(rest) = find_after(block, "while talking to ") {
        return Some(first_word(rest).trim_end_matches([':', '.']).to_string());
    }
    for marker in [" does not like recipient", " 的邮件服务器"] {
        for line in block.lines() {
            if let Some((host, _)) = line.split_once(marker)
                && let Some(word) = host.split_whitespace().last()
            {
                return Some(word.to_string());
            }
        }
    }
    None
}

/// The text after the first occurrence of `marker` (ASCII case-insensitive).
fn find_after<'t>(text: &'t str, marker: &str) -> Option<&'t str> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find(&marker.to_ascii_lowercase())?;
    text.get(at + marker.len()..)
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or("").to_string()
}

/// A line that starts a recipient's block: its address and the rest of the line.
fn recipient_line(line: &str) -> Option<(String, &str)> {
    let t = line.trim();
    if t.len() > 512 {
        return None;
    }
    let (candidate, rest) = if let Some(inner) = t.strip_prefix('<') {
        let close = inner.find('>')?;
        let rest = inner[close + 1..].trim_start();
        // `<a@b>:` (Postfix, qmail), `<a@b>` alone or `<a@b>... reason` (Sendmail).
        if !(rest.is_empty() || rest.starts_with(':') || rest.starts_with("...")) {
            return None;
        }
        (&inner[..close], rest.trim_start_matches(':'))
    } else {
        // `a@b` alone, `a@b:`, `a@b (a@b)` or `a@b <mailto:a@b>` (Exim, Exchange).
        let end = t.find([' ', '\t']).unwrap_or(t.len());
        let (word, rest) = t.split_at(end);
        let rest = rest.trim();
        let word = word.trim_end_matches(':');
        if !(rest.is_empty() || rest.starts_with('(') || rest.starts_with('<')) {
            return None;
        }
        (word, "")
    };
    is_address(candidate).then(|| (candidate.to_string(), rest))
}

fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"')
        })
}

/// A Chinese 退信 page: labels and values in a table, as cells or as `标签：值`.
fn chinese(text: &str) -> FreeText {
    let value_after = |label: &str, stop: &[&str]| -> Option<String> {
        let at = text.find(label)?;
        let mut rest =
            text[at + label.len()..].trim_start_matches([':', '：', ' ', '\t', '\r', '\n']);
        for s in stop {
            if let Some(i) = rest.find(s) {
                rest = &rest[..i];
            }
        }
        let v = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        (!v.is_empty()).then_some(v)
    };
    let line_after = |label: &str| -> Option<String> { value_after(label, &["\n"]) };
    let reason = value_after("退信原因", &["建议解决方案", "解决方案"]).unwrap_or_default();
    let address = text
        .find("收件人")
        .and_then(|at| {
            text[at..]
                .split(|c: char| {
                    c.is_whitespace()
                        || matches!(c, '：' | ':' | '<' | '>' | '，' | ',' | '；' | ';')
                })
                .take(12)
                .find(|w| is_address(w))
        })
        .map(str::to_string);
    let reply = parse_reply(&reason).map(|(_, c)| c);
    let status = parse_status(&reason);
    let remote = remote_mta(&reason);
    FreeText {
        format: "chinese-html",
        failures: vec![Raw {
            address,
            action: "failed".into(),
            reply,
            status,
            diagnostic: reason,
            remote_mta: remote,
            context: String::new(),
        }],
        subject: line_after("主题"),
        date: line_after("时间"),
        reporting_mta: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_lines() {
        let r = |l: &str| recipient_line(l).map(|(a, _)| a);
        assert_eq!(
            r("<a@example.org>: host x said: 550"),
            Some("a@example.org".into())
        );
        assert_eq!(r("  a@example.org"), Some("a@example.org".into()));
        assert_eq!(
            r("a@example.org (a@example.org)"),
            Some("a@example.org".into())
        );
        assert_eq!(
            r("<a@example.org>... User unknown"),
            Some("a@example.org".into())
        );
        assert_eq!(r("RCPT TO:<a@example.org>"), None);
        assert_eq!(r("From: a@example.org"), None);
        assert_eq!(r("mail to a@example.org failed"), None);
        assert_eq!(r("<not an address>"), None);
    }

    #[test]
    fn codes_are_found_where_they_stand_alone() {
        assert_eq!(
            parse_status("said: 550 5.1.1 <a@b.c>"),
            Some("5.1.1".into())
        );
        assert_eq!(
            parse_status("version 10.5.1.2 and 5.7.1."),
            Some("5.7.1".into())
        );
        assert_eq!(parse_status("no code"), None);
        assert_eq!(
            parse_reply("host x[10.0.0.5] said: 550 5.1.1 x").map(|r| r.1),
            Some("550".into())
        );
        assert_eq!(
            parse_reply("#550 5.1.1 RESOLVER").map(|r| r.1),
            Some("550".into())
        );
        assert_eq!(parse_reply("size 45000 at 12:55:01").map(|r| r.1), None);
        assert_eq!(
            parse_reply("(reason: 552 too big)").map(|r| r.1),
            Some("552".into())
        );
    }
}
