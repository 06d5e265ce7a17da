//! SMTP replies: the one type every refusal is written in, checked once.
//!
//! A reply comes from the configuration (`[replies] reject`, `oversize`), is carried
//! in a [`Verdict`](crate::Verdict), and is handed to an MTA by the milter's
//! REPLYCODE, by the C ABI or by a program linking the engine. It is parsed and
//! validated here, when the configuration is read, and nowhere else.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A checked SMTP reply such as `557 5.7.1 forbid to send spam mail`, kept in wire
/// form: lines joined by CRLF, continuation lines marked `ddd-`.
///
/// Every line starts with the same three-digit 4xx or 5xx code (an MTA applies its
/// own default to anything else); an enhanced status code, when present, is of the
/// same class (`5.x.x` with `5xx`); lines are at most 510 bytes and hold no control
/// characters. A multi-line reply may be written with `\n` between lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply(String);

impl Reply {
    /// Parses and checks a reply; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Reply, String> {
        check(text).map(Reply)
    }

    /// A reply built into chaff, already in wire form (the defaults in
    /// [`crate::config`], whose test checks that they parse).
    pub(crate) fn builtin(text: &str) -> Reply {
        Reply(text.to_string())
    }

    /// The reply in wire form (`557-5.7.1 first\r\n557 5.7.1 second` for two lines).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The three-digit reply code, e.g. `557`.
    pub fn code(&self) -> u16 {
        self.0.get(..3).and_then(|c| c.parse().ok()).unwrap_or(550)
    }

    /// True for a permanent (5xx) refusal, false for a temporary (4xx) one.
    pub fn is_permanent(&self) -> bool {
        self.0.starts_with('5')
    }
}

impl FromStr for Reply {
    type Err = String;
    fn from_str(s: &str) -> Result<Reply, String> {
        Reply::parse(s)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Reply {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Reply {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Reply {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Checks an SMTP reply for a REPLYCODE response and returns it in wire form
/// (lines joined by CRLF, continuation lines marked `ddd-`), before `%` escaping.
///
/// Every line must start with the same three-digit code, 4xx or 5xx (Postfix applies
/// its default action to anything else); an enhanced status code, when present, must
/// be of the same class (`5.x.x` with `5xx`). Lines are at most 510 bytes and hold
/// no control characters. A multi-line reply may be written with `\n` between lines.
fn check(text: &str) -> Result<String, String> {
    let lines: Vec<&str> = text
        .trim_end_matches(['\r', '\n'])
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut code: Option<&str> = None;
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in lines.iter().enumerate() {
        let b = line.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "reply line `{line}` does not start with a three-digit code"
            ));
        }
        if b[0] != b'4' && b[0] != b'5' {
            return Err(format!(
                "reply code {} is not 4xx or 5xx: a milter may only refuse with it",
                &line[..3]
            ));
        }
        let this = &line[..3];
        match code {
            None => code = Some(this),
            Some(c) if c != this => {
                return Err(format!("reply lines have different codes ({c} and {this})"));
            }
            Some(_) => {}
        }
        let rest = match b.get(3) {
            None => "",
            Some(b' ' | b'-') => &line[4..],
            Some(_) => {
                return Err(format!(
                    "reply line `{line}`: the code must be followed by a space or `-`"
                ));
            }
        };
        if let Some(bad) = rest.chars().find(|c| c.is_control()) {
            return Err(format!(
                "reply line `{line}` holds the control character {bad:?}"
            ));
        }
        if let Some(enh) = rest.split(' ').next()
            && is_enhanced_code(enh)
            && enh.as_bytes()[0] != b[0]
        {
            return Err(format!(
                "enhanced status code {enh} is not of the class of reply code {this}"
            ));
        }
        if line.len() > 510 {
            return Err(format!("reply line is {} bytes, over 510", line.len()));
        }
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(this);
        out.push(if i + 1 < lines.len() { '-' } else { ' ' });
        out.push_str(rest);
    }
    // A single bare code ("557") keeps its trailing space off.
    Ok(out.trim_end_matches(' ').to_string())
}

/// True for text shaped like an RFC 3463 enhanced status code (`5.7.1`).
fn is_enhanced_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replies_are_checked_into_wire_form() {
        let ok = |s: &str| Reply::parse(s).map(|r| r.as_str().to_string());
        assert_eq!(
            ok("557 5.7.1 forbid to send spam mail"),
            Ok("557 5.7.1 forbid to send spam mail".into())
        );
        assert_eq!(
            ok("557 5.7.1 first\n557 5.7.1 second\n"),
            Ok("557-5.7.1 first\r\n557 5.7.1 second".into())
        );
        assert_eq!(ok("557"), Ok("557".into()));
        assert_eq!(Reply::parse("451 4.3.2 later").unwrap().code(), 451);
        assert!(!Reply::parse("451 4.3.2 later").unwrap().is_permanent());
        for bad in [
            "250 ok",
            "hello",
            "55 short",
            "557x text",
            "557 4.7.1 class mismatch",
            "557 5.7.1 a\n550 5.7.1 b",
            "557 tab\there",
            "",
        ] {
            assert!(Reply::parse(bad).is_err(), "{bad} accepted");
        }
    }

    proptest! {
        #[test]
        fn checked_replies_stay_well_formed(code in 400u16..600, text in "[ -~]{0,80}") {
            if let Ok(r) = Reply::parse(&format!("{code} {text}")) {
                prop_assert!(r.as_str().starts_with(&code.to_string()));
                prop_assert!(!r.as_str().contains('\0'));
                prop_assert_eq!(r.code(), code);
            }
        }
    }
}
