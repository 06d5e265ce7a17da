//! `Authentication-Results` headers (RFC 8601): what the site's own MTA found out
//! about a message's DKIM signatures, SPF and DMARC, read as proof for the allow
//! list ([`crate::route`]).
//!
//! The parser is lenient and bounded: folding is undone, comments in parentheses
//! (nested, with `\` escapes) are dropped, values may be quoted strings, methods
//! are separated by `;`, `none` means no results, names are case-insensitive. A
//! header value longer than [`MAX_HEADER_BYTES`] is ignored, and at most
//! [`MAX_HEADERS`] headers of a message are read. Nothing here panics on any input.
//!
//! Who wrote a header is what matters: anyone can write `Authentication-Results`
//! into a message. Only headers whose authserv-id is one the configuration names
//! (`[senders] authserv_id`) are trusted, which is safe only because the site's MTA
//! removes or renames headers carrying its own authserv-id that arrive from outside
//! (RFC 8601 section 5; OpenDKIM and OpenDMARC behind Postfix do).

/// Header values longer than this are ignored (bytes, after unfolding).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// At most this many `Authentication-Results` headers of a message are read.
pub const MAX_HEADERS: usize = 64;

/// One `Authentication-Results` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthResults {
    /// Who wrote it (the authserv-id), as written.
    pub authserv_id: String,
    /// The results, in order; empty for `none`.
    pub results: Vec<MethodResult>,
}

/// One method's result: `dkim=pass header.d=example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MethodResult {
    /// The method, lowercase, without its version (`dkim`, `spf`, `dmarc`, …).
    pub method: String,
    /// The result, lowercase (`pass`, `fail`, `none`, …).
    pub result: String,
    /// The properties: `(ptype.property lowercase, value as written)`, e.g.
    /// `("header.d", "example.com")`.
    pub properties: Vec<(String, String)>,
}

impl MethodResult {
    /// The value of a property (`header.d`), if present.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every `Authentication-Results` header of a header block (the lines before the
/// blank line, see [`crate::text::header_end`]), parsed, in order; those that do
/// not parse, are too long, or come after the first [`MAX_HEADERS`] are skipped.
pub fn from_headers(block: &[u8]) -> Vec<AuthResults> {
    const NAME: &[u8] = b"authentication-results:";
    let mut out = Vec::new();
    let mut seen = 0;
    let mut lines = block.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let is_ours = line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME);
        // Continuation lines (starting with a space or tab) belong to this header.
        let mut value = Vec::new();
        let mut too_long = false;
        if is_ours {
            value.extend_from_slice(&line[NAME.len()..]);
        }
        while let Some(next) = lines.next_if(|l| matches!(l.first(), Some(b' ' | b'\t'))) {
            if is_ours && !too_long {
                value.push(b' ');
                value.extend_from_slice(next);
                too_long = value.len() > MAX_HEADER_BYTES;
            }
        }
        if !is_ours {
            continue;
        }
        seen += 1;
        if seen > MAX_HEADERS {
            break;
        }
        if too_long || value.len() > MAX_HEADER_BYTES {
            continue;
        }
        if let Some(parsed) = parse(&String::from_utf8_lossy(&value)) {
            out.push(parsed);
        }
    }
    out
}

/// Parses one header value (after `Authentication-Results:`). `None` when it has
/// no authserv-id or is longer than [`MAX_HEADER_BYTES`].
pub fn parse(value: &str) -> Option<AuthResults> {
    if value.len() > MAX_HEADER_BYTES {
        return None;
    }
    let mut segments = split_segments(&tokens(value)).into_iter();
    let authserv_id = match segments.next()?.first()? {
        Token::Word(w) | Token::Quoted(w) => w.clone(),
        _ => return None,
    };
    let mut results = Vec::new();
    for segment in segments {
        if let Some(r) = method_result(&segment) {
            results.push(r);
        }
    }
    Some(AuthResults {
        authserv_id,
        results,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Eq,
    Semi,
}

/// Splits a value into words, quoted strings, `=` and `;`, dropping whitespace,
/// line breaks and comments. An unterminated comment or quoted string ends at the
/// end of the value.
fn tokens(value: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>| {
        if !word.is_empty() {
            out.push(Token::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                flush(&mut word, &mut out);
                let mut depth = 1usize;
                while depth > 0 {
                    match chars.next() {
                        Some('\\') => {
                            chars.next();
                        }
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            '"' => {
                flush(&mut word, &mut out);
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => {
                            if let Some(e) = chars.next() {
                                s.push(e);
                            }
                        }
                        Some('"') | None => break,
                        Some(ch) => s.push(ch),
                    }
                }
                out.push(Token::Quoted(s));
            }
            '=' => {
                flush(&mut word, &mut out);
                out.push(Token::Eq);
            }
            ';' => {
                flush(&mut word, &mut out);
                out.push(Token::Semi);
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

fn split_segments(tokens: &[Token]) -> Vec<Vec<Token>> {
    tokens
        .split(|t| *t == Token::Semi)
        .map(<[Token]>::to_vec)
        .collect()
}

/// `method[/version] = result [reason = value] [ptype.property = value]…`.
fn method_result(segment: &[Token]) -> Option<MethodResult> {
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < segment.len() {
        match (segment.get(i), segment.get(i + 1), segment.get(i + 2)) {
            (Some(Token::Word(k)), Some(Token::Eq), Some(Token::Word(v) | Token::Quoted(v))) => {
                pairs.push((k.to_ascii_lowercase(), v.clone()));
                i += 3;
            }
            _ => i += 1,
        }
    }
    let mut pairs = pairs.into_iter();
    let (method, result) = pairs.next()?;
    let method = method.split('/').next().unwrap_or_default().to_string();
    if method.is_empty() {
        return None;
    }
    let properties = pairs.filter(|(k, _)| k.contains('.')).collect();
    Some(MethodResult {
        method,
        result: result.to_ascii_lowercase(),
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_typical_header() {
        let a = parse(
            " mx.example.net;\r\n\tdkim=pass (2048-bit key; unprotected) header.d=Example.com\r\n\t \
             header.i=@example.com header.b=\"Ab/cd+ef\";\r\n spf=pass (sender SPF authorized) \
             smtp.mailfrom=ceo@example.com; dmarc=pass (p=reject dis=none) header.from=example.com",
        )
        .unwrap();
        assert_eq!(a.authserv_id, "mx.example.net");
        let methods: Vec<_> = a.results.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["dkim", "spf", "dmarc"]);
        assert!(a.results.iter().all(|r| r.result == "pass"));
        assert_eq!(a.results[0].property("header.d"), Some("Example.com"));
        assert_eq!(a.results[0].property("header.i"), Some("@example.com"));
        assert_eq!(a.results[0].property("header.b"), Some("Ab/cd+ef"));
        assert_eq!(
            a.results[1].property("smtp.mailfrom"),
            Some("ceo@example.com")
        );
        assert_eq!(a.results[2].property("header.from"), Some("example.com"));
    }

    #[test]
    fn versions_case_spaces_quotes_and_reasons() {
        let a =
            parse("\"mx (x)\" 1 ; DKIM/1 = Fail reason=\"bad; sig\" Header.D = x.test; SPF=None")
                .unwrap();
        assert_eq!(a.authserv_id, "mx (x)");
        assert_eq!(a.results.len(), 2);
        assert_eq!(a.results[0].method, "dkim");
        assert_eq!(a.results[0].result, "fail");
        assert_eq!(
            a.results[0].properties,
            [("header.d".into(), "x.test".into())]
        );
        assert_eq!(a.results[1].method, "spf");
        assert_eq!(a.results[1].result, "none");
    }

    #[test]
    fn none_comments_and_garbage() {
        let a = parse("mx.example.net (comment (nested \\) still)) 1; none").unwrap();
        assert_eq!(a.authserv_id, "mx.example.net");
        assert!(a.results.is_empty());
        assert_eq!(parse("   "), None);
        assert_eq!(parse("; dkim=pass"), None);
        assert_eq!(parse("(only a comment"), None);
        let a = parse("mx; = = ; dkim=; dkim=pass header.d=\"unterminated").unwrap();
        assert_eq!(a.results.len(), 1);
        assert_eq!(a.results[0].property("header.d"), Some("unterminated"));
        assert_eq!(parse(&"x".repeat(MAX_HEADER_BYTES + 1)), None);
    }

    #[test]
    fn headers_are_found_unfolded_and_bounded() {
        let block = b"Received: from x\r\nAuthentication-Results: mx.example.net;\r\n  \
                      dkim=pass header.d=example.com\r\nSubject: hi\r\n\
                      authentication-results: other.test; spf=fail smtp.mailfrom=a@b.test";
        let all = from_headers(block);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].authserv_id, "mx.example.net");
        assert_eq!(all[0].results[0].property("header.d"), Some("example.com"));
        assert_eq!(all[1].authserv_id, "other.test");
        assert_eq!(all[1].results[0].result, "fail");

        let mut many = Vec::new();
        for _ in 0..MAX_HEADERS + 5 {
            many.extend_from_slice(b"Authentication-Results: mx; none\n");
        }
        assert_eq!(from_headers(&many).len(), MAX_HEADERS);

        let mut long = b"Authentication-Results: mx; dkim=pass header.d=a.test\n".to_vec();
        for _ in 0..MAX_HEADER_BYTES / 10 + 1 {
            long.extend_from_slice(b" xxxxxxxx\n");
        }
        long.extend_from_slice(b"Authentication-Results: mx2; none\n");
        let got = from_headers(&long);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].authserv_id, "mx2");
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut block = b"Authentication-Results: ".to_vec();
            block.extend_from_slice(&bytes);
            let _ = from_headers(&block);
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn never_panics_on_header_like_text(s in "[a-zA-Z0-9 ;=().@\"\\\\/\r\n\t-]{0,200}") {
            let _ = parse(&s);
            let _ = from_headers(format!("Authentication-Results:{s}").as_bytes());
        }
    }
}
