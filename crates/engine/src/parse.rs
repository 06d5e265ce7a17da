//! Parse: split raw bytes into a MIME tree with raw offsets.
//!
//! mail-parser does the structural work (headers, boundaries, nesting). It is
//! lenient, but it can still give up on garbage; then the message is treated as a
//! bare body so that nothing is ever dropped. Decoding is *not* trusted to it: the
//! next stage re-decodes every text part from the raw offsets it records.

use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A parsed message: the raw bytes and, when mail-parser could make sense of them,
/// its MIME tree.
pub struct Parsed<'a> {
    /// The message as received.
    pub raw: &'a [u8],
    /// The MIME tree, or `None` for bytes mail-parser could not parse at all.
    pub message: Option<Message<'a>>,
    /// Where the body starts when the message is read as a single part (it is one,
    /// or a multipart whose boundary never occurs): then only its headers were
    /// parsed, and the body is `raw[body_start..]`.
    pub body_start: Option<usize>,
}

impl<'a> Parsed<'a> {
    /// Bytes that could not be parsed as a message: the body after a blank line
    /// if there is one, else everything, is read as text.
    pub fn unparsed(raw: &'a [u8]) -> Parsed<'a> {
        let start = match body_start(raw) {
            n if n >= raw.len() => 0,
            n => n,
        };
        Parsed {
            raw,
            message: None,
            body_start: Some(start),
        }
    }
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
            // Every other header is only located (offsets kept, value not
            // converted): the subject is decoded from its raw bytes later.
            inner: MessageParser::new()
                .default_header_ignore()
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
        // Most mail is a single part. Its headers are all that is needed from the
        // parser: the decode stage reads the body from the raw bytes itself, so
        // letting mail-parser decode it as well would only do the work twice.
        let Some(head) = self.inner.parse_headers(raw) else {
            return Parsed::unparsed(raw);
        };
        let start = body_start(raw);
        if is_container(&head) && !boundary_missing(&head, &raw[start..]) {
            // mail-parser 0.11 panics on some malformed nestings of multiparts
            // ("Invalid part ID, could not find multipart": fuzz/regressions/bounce/):
            // the message is then read as its headers and raw body, like a single
            // part.
            if let Ok(message) = catch_unwind(AssertUnwindSafe(|| self.inner.parse(raw))) {
                return Parsed {
                    raw,
                    message,
                    body_start: None,
                };
            }
        }
        Parsed {
            raw,
            message: Some(head),
            body_start: Some(start),
        }
    }
}

/// The offset after the blank line that ends the headers (the end, if none).
pub fn body_start(raw: &[u8]) -> usize {
    crate::text::header_end(raw).1
}

/// Does the message's root hold other parts (multipart, message/rfc822)?
fn is_container(head: &Message<'_>) -> bool {
    head.root_part().content_type().is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case("multipart") || ct.c_type.eq_ignore_ascii_case("message")
    })
}

/// A multipart whose boundary never occurs in its `body` (trec06c strips them; some
/// spam never had them): there are no parts to find, and mail-parser would only
/// convert the whole body to one lossy UTF-8 string that the decode stage reads
/// again anyway, so it is read as a single part.
fn boundary_missing(head: &Message<'_>, body: &[u8]) -> bool {
    let Some(ct) = head.root_part().content_type() else {
        return false;
    };
    if !ct.c_type.eq_ignore_ascii_case("multipart") {
        return false;
    }
    ct.attribute("boundary").is_none_or(|b| {
        let delimiter = [b"--", b.as_bytes()].concat();
        memchr::memmem::find(body, &delimiter).is_none()
    })
}

/// Skips an mbox `From ` line: files saved one message each often keep it.
pub fn skip_envelope_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match memchr::memchr(b'\n', raw) {
            Some(i) => &raw[i + 1..],
            None => &[],
        }
    } else {
        raw
    }
}

/// The message's `Date:` header as seconds since the Unix epoch (UTC), when there
/// is one that parses as an RFC 5322 date (mail-parser's lenient date parser).
/// Only the header block is read; a folded header is unfolded; an mbox envelope
/// line is skipped. `chaff train --chronological` orders mail by it.
pub fn date(raw: &[u8]) -> Option<i64> {
    let raw = skip_envelope_line(raw);
    let head = &raw[..crate::text::header_end(raw).0];
    let mut lines = head.split(|&b| b == b'\n');
    while let Some(line) = lines.next() {
        let Some(value) = line
            .get(..5)
            .filter(|name| name.eq_ignore_ascii_case(b"date:"))
            .map(|_| &line[5..])
        else {
            continue;
        };
        let mut value = String::from_utf8_lossy(value).into_owned();
        // Continuation lines start with white space.
        for more in lines.by_ref() {
            if more.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                value.push_str(&String::from_utf8_lossy(more));
            } else {
                break;
            }
        }
        return mail_parser::DateTime::parse_rfc822(value.trim())
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp());
    }
    None
}

/// Parses with a one-off [`Parser`]; build a `Parser` once when parsing many.
pub fn parse(raw: &[u8]) -> Parsed<'_> {
    Parser::default().parse(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the bounce fuzz target: mail-parser panics on this nesting of
    /// multiparts (in a debug build; an optimised build, without overflow checks,
    /// gets through), and the message is then read as headers and raw body. Either
    /// way it parses, and the bounce is still explained.
    #[test]
    fn a_panic_in_mail_parser_leaves_headers_and_raw_body() {
        let raw = include_bytes!("../../../fuzz/regressions/bounce/mail-parser-part-id-panic.eml");
        let p = parse(raw);
        assert!(p.message.is_some());
        let e = crate::bounce::Explainer::new(
            &crate::bounce::KnowledgeBase::embedded(),
            crate::bounce::Lang::En,
        )
        .explain(raw);
        assert!(e.bounce);
    }

    #[test]
    fn parses_a_simple_message() {
        let p = parse(b"Subject: hi\r\n\r\nbody\r\n");
        let m = p.message.expect("parsed");
        let subject = m
            .headers()
            .iter()
            .find(|h| h.name == HeaderName::Subject)
            .unwrap();
        assert_eq!(
            &p.raw[subject.offset_start as usize..subject.offset_end as usize],
            b" hi\r\n"
        );
    }

    #[test]
    fn skips_an_mbox_envelope_line() {
        let p = parse(b"From a@b.c Mon Jan  1 00:00:00 2024\nSubject: hi\n\nbody\n");
        assert!(p.raw.starts_with(b"Subject: hi"));
        assert!(p.message.is_some());
    }

    #[test]
    fn body_starts_after_the_blank_line() {
        assert_eq!(body_start(b"A: b\n\nbody"), 6);
        assert_eq!(body_start(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(body_start(b"A: b\r\nC: d"), 10);
        assert_eq!(body_start(b""), 0);
        let p = parse(b"Subject: x\n\nhello");
        assert_eq!(p.body_start, Some(12));
    }

    #[test]
    fn a_multipart_without_its_boundary_is_one_part() {
        let stripped = b"Content-Type: multipart/mixed; boundary=\"xyz\"\n\nbody only\n";
        assert_eq!(parse(stripped).body_start, Some(47));
        let no_param = b"Content-Type: multipart/mixed\n\nbody only\n";
        assert!(parse(no_param).body_start.is_some());
        let real = b"Content-Type: multipart/mixed; boundary=\"xyz\"\n\n--xyz\n\nA\n--xyz--\n";
        assert_eq!(parse(real).body_start, None);
    }

    #[test]
    fn dates_are_read_from_the_header_block() {
        assert_eq!(
            date(b"Subject: x\r\nDate: Sun, 08 Apr 2007 13:07:42 +0800\r\n\r\nDate: no"),
            Some(1_176_008_862)
        );
        assert_eq!(
            date(b"From a Mon Jan  1 00:00:00 2024\nDATE: Thu,\n 1 Jan 1970 00:01:00 +0000\n\n"),
            Some(60)
        );
        assert_eq!(
            date(b"Subject: x\n\nDate: Sun, 08 Apr 2007 13:07:42 +0800\n"),
            None
        );
        assert_eq!(date(b"Date: yesterday\n\n"), None);
        assert_eq!(date(b""), None);
    }

    #[test]
    fn never_fails_on_garbage() {
        for raw in [&b""[..], b"\xff\xfe\x00", b"::::\n\n", b"\n"] {
            let p = parse(raw);
            assert_eq!(p.raw, raw);
        }
    }
}
