//! RFC 3464 delivery status fields: a group of per-message fields, then one group
//! per recipient, groups separated by blank lines; fields may be folded.

use super::{Raw, parse_reply, parse_status};

/// What a `message/delivery-status` part says.
#[derive(Debug, Default)]
pub(super) struct Report {
    /// `Reporting-MTA`, without its type.
    pub reporting_mta: Option<String>,
    /// Recipients whose `Action` is `failed` or `delayed` (or absent with a
    /// failure status).
    pub failures: Vec<Raw>,
    /// Was there any recipient group at all?
    pub any_recipient: bool,
}

/// Parses the fields of a delivery-status part. Never fails: lines that are not
/// fields are skipped.
pub(super) fn parse(text: &str) -> Report {
    let mut report = Report::default();
    for group in groups(text).take(super::MAX_RECIPIENTS + 1) {
        let get = |name: &str| {
            group
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let Some(m) = get("Reporting-MTA") {
            report
                .reporting_mta
                .get_or_insert_with(|| typed(m).to_string());
        }
        let Some(recipient) = get("Final-Recipient").or_else(|| get("Original-Recipient")) else {
            continue;
        };
        report.any_recipient = true;
        let status = get("Status").and_then(parse_status);
        let action = get("Action").map(|a| a.trim().to_ascii_lowercase());
        let action = match action.as_deref() {
            Some("failed") => "failed",
            Some("delayed") => "delayed",
            Some(_) => continue,
            None => match status.as_deref().and_then(|s| s.get(..1)) {
                Some("5") => "failed",
                Some("4") => "delayed",
                _ => continue,
            },
        };
        let diagnostic = get("Diagnostic-Code").map(typed).unwrap_or("").to_string();
        let reply = parse_reply(&diagnostic).map(|(_, c)| c);
        let status = status.or_else(|| parse_status(&diagnostic));
        let address = typed(recipient).trim_matches(['<', '>', ' ']).to_string();
        let remote_mta = get("Remote-MTA")
            .map(|m| typed(m).to_string())
            .or_else(|| super::text::remote_mta(&diagnostic));
        report.failures.push(Raw {
            address: (!address.is_empty()).then_some(address),
            action: action.into(),
            reply,
            status,
            diagnostic,
            remote_mta,
            context: String::new(),
        });
    }
    report
}

/// The value after a `type;` prefix (`rfc822; a@b`, `smtp; 550 …`, `dns; mx`).
fn typed(value: &str) -> &str {
    match value.split_once(';') {
        Some((ty, rest)) if !ty.trim().is_empty() && !ty.contains(' ') => rest.trim(),
        _ => value.trim(),
    }
}

/// The groups of fields, unfolded: `(name, value)` pairs.
fn groups(text: &str) -> impl Iterator<Item = Vec<(String, String)>> + '_ {
    let mut lines = text.lines().peekable();
    std::iter::from_fn(move || {
        // Skip blank lines between groups.
        while lines.peek().is_some_and(|l| l.trim().is_empty()) {
            lines.next();
        }
        lines.peek()?;
        let mut group: Vec<(String, String)> = Vec::new();
        while let Some(line) = lines.next_if(|l| !l.trim().is_empty()) {
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = group.last_mut()
                    && v.len() < 4096
                {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':')
                && group.len() < 64
            {
                group.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        Some(group)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_actions_and_folding() {
        let r = parse(
            "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Mon, 1 Jan 2024\r\n\r\n\
             Final-Recipient: rfc822; nobody@example.org\r\nOriginal-Recipient: rfc822;nobody@example.org\r\n\
             Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.org\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address\r\n    rejected: User unknown\r\n\r\n\
             Final-Recipient: rfc822; ok@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n\
             Final-Recipient: rfc822; slow@example.org\r\nStatus: 4.4.1\r\n",
        );
        assert_eq!(r.reporting_mta.as_deref(), Some("mx.example.net"));
        assert_eq!(r.failures.len(), 2);
        let f = &r.failures[0];
        assert_eq!(f.address.as_deref(), Some("nobody@example.org"));
        assert_eq!(
            (f.reply.as_deref(), f.status.as_deref()),
            (Some("550"), Some("5.1.1"))
        );
        assert_eq!(f.remote_mta.as_deref(), Some("mx.example.org"));
        assert!(
            f.diagnostic
                .ends_with("Recipient address rejected: User unknown"),
            "{}",
            f.diagnostic
        );
        assert_eq!(r.failures[1].action, "delayed");
    }

    #[test]
    fn garbage_is_skipped() {
        let r = parse("no fields here\n\n:::\n\n \n\tfold without field\n");
        assert!(r.failures.is_empty() && !r.any_recipient);
    }
}
