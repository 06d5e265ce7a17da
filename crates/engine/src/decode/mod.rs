//! Decode: the subject and every text part as UTF-8 text a reader sees.
//!
//! Each text part is re-decoded from its raw bytes (see [`transfer`] and
//! [`charset`]) rather than trusted to the parser, because real mail lies about its
//! encodings. HTML is reduced to its visible text ([`html`]). A message whose
//! multipart structure is broken (trec06c strips boundaries) is read as one body.
//! The total text per message is bounded so that a hostile message costs at most
//! a fixed amount of work: the bound counts the text that is scanned (visible text,
//! with runs of whitespace and invisible characters squeezed when a text would not
//! fit), so padding cannot push the real text past it, and a cut is reported
//! ([`Decoded::truncated`]). The raw bytes decoded are bounded by the message size
//! limit (`[limits] max_message_size`), checked before decoding.

pub mod charset;
pub mod header;
pub mod html;
pub mod transfer;

use crate::parse::Parsed;
use crate::verdict::TextSource;
use mail_parser::{HeaderName, Message, MessagePart, MimeHeaders, PartType};
use transfer::TransferEncoding;

/// Text parts decoded per message, at most.
pub const MAX_PARTS: usize = 64;
/// Bytes of decoded text per message, at most, counted after HTML is reduced to
/// its visible text (and, for a text that would not fit, after runs of whitespace
/// and invisible characters are squeezed); the rest is not scanned and the message
/// is marked [`Decoded::truncated`].
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// One decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedText {
    /// Where it came from.
    pub source: TextSource,
    /// The text, UTF-8; HTML is already reduced to its visible text.
    pub text: String,
}

/// Everything later stages read from a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The decoded `Subject:` (empty when there is none).
    pub subject: String,
    /// The body's text parts, in message order.
    pub texts: Vec<DecodedText>,
    /// The `From:` header's first address, if any.
    pub from: Option<String>,
    /// Some text was not decoded: over [`MAX_TEXT_BYTES`] or [`MAX_PARTS`].
    pub truncated: bool,
}

impl Decoded {
    /// The subject and the body texts, in that order, with their sources.
    pub fn all_texts(&self) -> impl Iterator<Item = (TextSource, &str)> {
        std::iter::once((TextSource::Subject, self.subject.as_str()))
            .chain(self.texts.iter().map(|t| (t.source, t.text.as_str())))
    }
}

/// Decodes a parsed message. Never fails: what cannot be decoded is skipped or read
/// as it stands.
pub fn decode(parsed: &Parsed<'_>) -> Decoded {
    let mut out = Decoded::default();
    let mut budget = Budget {
        left: MAX_TEXT_BYTES,
        truncated: false,
    };
    match &parsed.message {
        Some(message) => {
            let root = message.root_part();
            out.subject = subject(message);
            out.from = message
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address.as_deref())
                .map(str::to_string);
            if let Some(start) = parsed.body_start {
                // A single part: only its headers were parsed.
                read_whole_body(
                    root,
                    &parsed.raw[start.min(parsed.raw.len())..],
                    &mut out.texts,
                    &mut budget,
                );
                out.truncated = budget.truncated;
                return out;
            }
            decode_parts(message, &mut out.texts, &mut budget, 0);
            if out.texts.iter().all(|t| t.text.trim().is_empty()) {
                // No usable text part: boundaries missing or never closed (trec06c
                // strips them), a multipart without a boundary parameter, or a
                // body the parser did not classify. Read the body as it stands.
                out.texts.clear();
                budget = Budget {
                    left: MAX_TEXT_BYTES,
                    truncated: false,
                };
                let raw = message.raw_message();
                let body = slice(raw, root.offset_body, u32::MAX);
                let body = if body.is_empty() && root.headers.is_empty() {
                    raw
                } else {
                    body
                };
                read_whole_body(root, body, &mut out.texts, &mut budget);
            }
        }
        None => {
            let raw = parsed.raw;
            let start = parsed.body_start.unwrap_or(0).min(raw.len());
            push_text(
                &mut out.texts,
                &mut budget,
                &raw[start..],
                None,
                TransferEncoding::Identity,
                false,
            );
        }
    }
    out.truncated = budget.truncated;
    out
}

/// What is left of a message's text budget, and whether anything was cut.
struct Budget {
    left: usize,
    truncated: bool,
}

/// Reads a body as one text, with the charset, transfer encoding and type its
/// (root) headers declare; a multipart's body is read as plain bytes.
fn read_whole_body(
    root: &MessagePart<'_>,
    body: &[u8],
    texts: &mut Vec<DecodedText>,
    budget: &mut Budget,
) {
    let ct = root.content_type();
    let multipart = ct.is_some_and(|ct| ct.c_type.eq_ignore_ascii_case("multipart"));
    let charset = ct.and_then(|ct| ct.attribute("charset"));
    let cte = if multipart {
        TransferEncoding::Identity
    } else {
        transfer_encoding(root)
    };
    let html = !multipart
        && ct.is_some_and(|ct| {
            ct.c_subtype
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("html"))
        });
    push_text(texts, budget, body, charset, cte, html);
}

fn subject(message: &Message<'_>) -> String {
    let raw = message.raw_message();
    message
        .root_part()
        .headers
        .iter()
        .find(|h| h.name == HeaderName::Subject)
        .map(|h| header::decode(slice(raw, h.offset_start, h.offset_end)))
        .unwrap_or_default()
}

/// Decodes the parts a reader sees, in message order: every text and HTML part,
/// except the plain-text version of a multipart/alternative whose HTML version is
/// read instead; text parts the parser files as attachments (a second text part
/// of a multipart/mixed) are read too. Nested messages are bounded by the parser's
/// own depth limit on encapsulated messages.
fn decode_parts(
    message: &Message<'_>,
    texts: &mut Vec<DecodedText>,
    budget: &mut Budget,
    depth: usize,
) {
    decode_parts_in(message, message.raw_message(), texts, budget, depth);
}

/// [`decode_parts`] for a message inside `outer`, the outermost message's bytes.
///
/// mail-parser parses an encapsulated message (message/rfc822) in the same pass as
/// the message around it, so its parts' offsets count from the start of `outer`,
/// while its `raw_message()` is only its own stretch of `outer`: slicing that with
/// the offsets would read the wrong bytes. Only a message the parser had to decode
/// first (its bytes are then a buffer of their own) has offsets into its own bytes.
fn decode_parts_in(
    message: &Message<'_>,
    outer: &[u8],
    texts: &mut Vec<DecodedText>,
    budget: &mut Budget,
    depth: usize,
) {
    let own = message.raw_message();
    let raw = if within(own, outer) { outer } else { own };
    for (id, part) in message.parts.iter().enumerate() {
        let id = id as u32;
        let plain_alternative = message.text_body.contains(&id) && !message.html_body.contains(&id);
        match &part.body {
            PartType::Text(_) | PartType::Html(_) if !plain_alternative => {
                if texts.len() >= MAX_PARTS || budget.left == 0 {
                    budget.truncated = true;
                    return;
                }
                let html = matches!(part.body, PartType::Html(_));
                let body = slice(raw, part.offset_body, part.offset_end);
                let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
                push_text(texts, budget, body, charset, transfer_encoding(part), html);
            }
            PartType::Message(nested) if depth < 3 => {
                decode_parts_in(nested, raw, texts, budget, depth + 1)
            }
            _ => {}
        }
    }
}

/// Is `inner` a stretch of `outer`'s bytes (not a copy)?
fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (start, end) = (
        outer.as_ptr() as usize,
        outer.as_ptr() as usize + outer.len(),
    );
    let at = inner.as_ptr() as usize;
    start <= at && at + inner.len() <= end
}

fn transfer_encoding(part: &MessagePart<'_>) -> TransferEncoding {
    part.content_transfer_encoding()
        .map_or(TransferEncoding::Identity, TransferEncoding::from_header)
}

fn push_text(
    texts: &mut Vec<DecodedText>,
    budget: &mut Budget,
    body: &[u8],
    charset_label: Option<&str>,
    cte: TransferEncoding,
    html: bool,
) {
    // The raw bytes are bounded by the message size limit; the budget counts the
    // text that is scanned.
    let bytes = transfer::decode(body, cte);
    let text = charset::decode(&bytes, charset_label);
    let mut text = if html {
        html::visible_text(&text)
    } else {
        text.into_owned()
    };
    if text.len() > budget.left {
        text = squeeze(&text);
    }
    if text.len() > budget.left {
        let mut end = budget.left;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        budget.truncated = true;
    }
    budget.left -= text.len();
    texts.push(DecodedText {
        source: if html {
            TextSource::Html
        } else {
            TextSource::Text
        },
        text,
    });
}

/// `text` with every run of whitespace and invisible characters (zero-width
/// spaces and joiners, controls, …) replaced by one newline (when the run has
/// one), one space (when it has other whitespace) or nothing (invisible
/// characters only, which normalisation drops anyway): padding a reader does not
/// see must not use up the text budget.
fn squeeze(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT_BYTES + 4));
    let (mut space, mut newline) = (false, false);
    for c in text.chars() {
        let blank = c.is_whitespace();
        if blank || crate::normalise::is_invisible(c) {
            newline |= c == '\n';
            space |= blank;
            continue;
        }
        if newline {
            out.push('\n');
        } else if space {
            out.push(' ');
        }
        (space, newline) = (false, false);
        out.push(c);
    }
    if newline {
        out.push('\n');
    } else if space {
        out.push(' ');
    }
    out
}

/// `raw[start..end]`, clamped to the buffer: offsets from a parser are not trusted.
fn slice(raw: &[u8], start: u32, end: u32) -> &[u8] {
    let end = (end as usize).min(raw.len());
    let start = (start as usize).min(end);
    &raw[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn texts(raw: &[u8]) -> Decoded {
        decode(&parse(raw))
    }

    #[test]
    fn plain_gbk_base64_part() {
        let d = texts(
            b"Subject: =?gb2312?B?w+K30Q==?=\r\nContent-Type: text/plain; charset=gb2312\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nw+K30Q==\r\n",
        );
        assert_eq!(d.subject, "免费");
        assert_eq!(d.texts.len(), 1);
        assert_eq!(d.texts[0].text.trim(), "免费");
    }

    #[test]
    fn base64_label_over_plain_gbk() {
        let d = texts(
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\
              \xb4\xfa\xbf\xaa\xb7\xa2\xc6\xb1\xa3\xac\xd3\xc5\xbb\xdd\xb6\xe0\xb6\xe0\r\n",
        );
        assert_eq!(d.texts[0].text.trim(), "代开发票，优惠多多");
    }

    #[test]
    fn multipart_without_boundaries_is_read_whole() {
        let d = texts(
            b"Content-Type: multipart/alternative;\r\n\tboundary=\"==X==\"\r\n\r\n\
              \xb4\xfa\xbf\xaa\xb7\xa2\xc6\xb1\r\n",
        );
        assert!(d.texts.iter().any(|t| t.text.contains("代开发票")), "{d:?}");
    }

    #[test]
    fn parts_of_a_forwarded_message_are_read_from_their_own_bytes() {
        // A bounce or a forward: the spam sits in a message/rfc822 part, its HTML
        // quoted-printable. Its offsets count from the start of the outer message.
        let d = texts(
            b"Subject: bounce\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n\
              --o\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
              --o\r\nContent-Type: message/rfc822\r\n\r\n\
              Subject: offer\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n\
              --i\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
              --i\r\nContent-Type: text/html; charset=utf-8\r\n\
              Content-Transfer-Encoding: quoted-printable\r\n\r\n\
              <p>=E5=85=8D=E8=B4=B9 =E4=BB=A3=E5=BC=80=E5=8F=91=E7=A5=A8</p>\r\n--i--\r\n\
              --o--\r\n",
        );
        let html: Vec<&str> = d
            .texts
            .iter()
            .filter(|t| t.source == TextSource::Html)
            .map(|t| t.text.trim())
            .collect();
        assert_eq!(html, ["免费 代开发票"], "{d:?}");
    }

    #[test]
    fn html_alternative_is_preferred() {
        let d = texts(
            b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
              Content-Type: text/plain\r\n\r\nplain\r\n--b\r\nContent-Type: text/html\r\n\r\n\
              <p>rich <b>text</b></p>\r\n--b--\r\n",
        );
        assert_eq!(d.texts.len(), 1);
        assert_eq!(d.texts[0].source, TextSource::Html);
        assert!(d.texts[0].text.contains("rich text"));
    }

    #[test]
    fn garbage_is_not_lost() {
        let d = texts(b"\xff\xfe\x00\x01 junk");
        assert_eq!(d.texts.len(), 1);
        let d = texts(b"");
        assert!(d.texts.iter().all(|t| t.text.is_empty()));
    }
}
