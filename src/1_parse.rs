//! Stage 1, parse: split raw bytes into a MIME tree with raw offsets.
//!
//! mail-parser does the structural work (headers, boundaries, nesting). It is
//! lenient, but it can still give up on garbage; then the message is treated as a
//! bare body so that nothing is ever dropped. Decoding is *not* trusted to it: the
//! next stage re-decodes every text part from the raw offsets it records.

use mail_parser::{HeaderName, Message, MessageParser};

/// A parsed message: the raw bytes and, when mail-parser could make sense of them,
/// its MIME tree.
pub struct Parsed<'a> {
    /// The message as received.
    pub raw: &'a [u8],
    /// The MIME tree, or `None` for bytes mail-parser could not parse at all.
    pub message: Option<Message<'a>>,
}

/// A configured mail-parser, built once and shared: it parses only the headers the
/// later stages read (MIME structure and `From:`); the rest stay raw and cheap.
#[derive(Clone)]
pub struct Parser {
    inner: MessageParser,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            inner: MessageParser::new()
                .with_mime_headers()
                .header_address(HeaderName::From),
        }
    }
}

impl Parser {
    /// Parses raw message bytes. Never fails: see [`Parsed::message`]. A leading
    /// mbox envelope line (`From sender date`), which is not a header, is skipped.
    pub fn parse<'a>(&self, raw: &'a [u8]) -> Parsed<'a> {
        let raw = skip_envelope_line(raw);
        Parsed {
            raw,
            message: self.inner.parse(raw),
        }
    }
}

/// Skips an mbox `From ` line: files saved one message each often keep it.
fn skip_envelope_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match memchr::memchr(b'\n', raw) {
            Some(i) => &raw[i + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

/// Parses with a one-off [`Parser`]; build a `Parser` once when parsing many.
pub fn parse(raw: &[u8]) -> Parsed<'_> {
    Parser::default().parse(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_simple_message() {
        let p = parse(b"Subject: hi\r\n\r\nbody\r\n");
        let m = p.message.expect("parsed");
        assert_eq!(m.subject(), Some("hi"));
    }

    #[test]
    fn skips_an_mbox_envelope_line() {
        let p = parse(b"From a@b.c Mon Jan  1 00:00:00 2024\nSubject: hi\n\nbody\n");
        assert_eq!(p.message.expect("parsed").subject(), Some("hi"));
    }

    #[test]
    fn never_fails_on_garbage() {
        for raw in [&b""[..], b"\xff\xfe\x00", b"::::\n\n", b"\n"] {
            let p = parse(raw);
            assert_eq!(p.raw, raw);
        }
    }
}
