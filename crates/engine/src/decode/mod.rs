//! Decode: the subject and every text part as UTF-8 text a reader sees.
//!
//! Each text part is re-decoded from its raw bytes (see [`transfer`] and
//! [`charset`]) rather than trusted to the parser, because real mail lies about its
//! encodings. HTML is reduced to its visible text ([`html`]). Every alternative of
//! a multipart/alternative is read and marked ([`Alternative`]). A message whose
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
    /// The multipart/alternative this text is one version of (the outermost one,
    /// when alternatives nest), if any.
    pub alternative: Option<Alternative>,
    /// How tokeniser version 1 read this part, for models trained with it.
    pub v1: V1Read,
}

/// Where a text sits in a multipart/alternative: the same content in several
/// forms (plain text, HTML), of which a reader sees one.
///
/// Every alternative is read, so words only in the plain text (or only in the
/// HTML) are not missed, and a keyword counts in the group as often as in the
/// alternative where it occurs most, not once per alternative (the engine's
/// `Engine::find`). Measured on trec07p-dev (DESIGN.md, "multipart/alternative").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alternative {
    /// The group, numbered from 0 in the message.
    pub group: u32,
    /// Which alternative of the group (0: the first, usually plain text).
    pub branch: u32,
}

/// What the first tokeniser (classifier features version 1) read of a text part:
/// the plain-text version of a multipart/alternative only when mail-parser listed
/// it with the HTML ones, and an HTML part that mail-parser filed as plain text
/// (a `text/html` part without a charset) with its tags. A model trained with it
/// is scanned with the texts it was trained on (`classify::features`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V1Read {
    /// The same text.
    Same,
    /// Not read.
    Skipped,
    /// Read without reducing HTML to visible text: this text.
    Raw(String),
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
    /// The body read whole, when tokeniser version 1 found no text in the parts
    /// it read (but the current one does): version 1 read this instead of
    /// [`Decoded::texts`].
    pub v1_body: Option<DecodedText>,
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
            let raw = message.raw_message();
            let body = slice(raw, root.offset_body, u32::MAX);
            let body = if body.is_empty() && root.headers.is_empty() {
                raw
            } else {
                body
            };
            if out.texts.iter().all(|t| t.text.trim().is_empty()) {
                // No usable text part: boundaries missing or never closed (trec06c
                // strips them), a multipart without a boundary parameter, or a
                // body the parser did not classify. Read the body as it stands.
                out.texts.clear();
                budget = Budget {
                    left: MAX_TEXT_BYTES,
                    truncated: false,
                };
                read_whole_body(root, body, &mut out.texts, &mut budget);
            } else if out.texts.iter().all(|t| match &t.v1 {
                V1Read::Same => t.text.trim().is_empty(),
                V1Read::Skipped => true,
                V1Read::Raw(raw) => raw.trim().is_empty(),
            }) {
                // Version 1 read no text in the parts it read, and so read the
                // body as it stands (now another part has text).
                let mut whole = Vec::with_capacity(1);
                let mut budget = Budget {
                    left: MAX_TEXT_BYTES,
                    truncated: false,
                };
                read_whole_body(root, body, &mut whole, &mut budget);
                out.v1_body = whole.pop();
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
    push_text(texts, budget, body, charset, cte, html, false);
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

/// Decodes the text parts, in message order: every text and HTML part, each
/// alternative of a multipart/alternative included (marked, see [`Alternative`]);
/// text parts the parser files as attachments (a second text part of a
/// multipart/mixed) are read too. A part is HTML when it says `text/html`, whether
/// or not the parser noticed. Nested messages are bounded by the parser's own
/// depth limit on encapsulated messages.
fn decode_parts(
    message: &Message<'_>,
    texts: &mut Vec<DecodedText>,
    budget: &mut Budget,
    depth: usize,
) {
    let mut groups = Groups::default();
    decode_parts_in(
        message,
        message.raw_message(),
        texts,
        budget,
        depth,
        None,
        &mut groups,
    );
}

/// Numbers the multipart/alternative groups of a message and what it encloses.
#[derive(Default)]
struct Groups {
    /// `(message number, part id)` of each group met, in order.
    seen: Vec<(usize, u32)>,
    messages: usize,
}

impl Groups {
    fn number(&mut self, message: usize, part: u32) -> u32 {
        let key = (message, part);
        match self.seen.iter().position(|&k| k == key) {
            Some(i) => i as u32,
            None => {
                self.seen.push(key);
                (self.seen.len() - 1) as u32
            }
        }
    }
}

/// [`decode_parts`] for a message inside `outer`, the outermost message's bytes;
/// `enclosing` is the alternative the message itself is part of, if any.
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
    enclosing: Option<Alternative>,
    groups: &mut Groups,
) {
    let own = message.raw_message();
    let raw = if within(own, outer) { outer } else { own };
    let number = groups.messages;
    groups.messages += 1;
    // Each part's parent, from the multiparts' child lists (a child always comes
    // after its parent, which also rules out cycles in a damaged tree).
    let mut parent = vec![None; message.parts.len()];
    for (id, part) in message.parts.iter().enumerate() {
        if let PartType::Multipart(children) = &part.body {
            for &c in children {
                if let Some(slot) = parent.get_mut(c as usize).filter(|_| c as usize > id) {
                    *slot = Some(id as u32);
                }
            }
        }
    }
    for (id, part) in message.parts.iter().enumerate() {
        let id = id as u32;
        match &part.body {
            PartType::Text(_) | PartType::Html(_) => {
                if texts.len() >= MAX_PARTS || budget.left == 0 {
                    budget.truncated = true;
                    return;
                }
                let alternative = enclosing.or_else(|| {
                    outermost_alternative(message, &parent, id).map(|(group, branch)| Alternative {
                        group: groups.number(number, group),
                        branch,
                    })
                });
                let parser_html = matches!(part.body, PartType::Html(_));
                let html = parser_html || is_html(part);
                // Version 1 skipped a plain text mail-parser did not also list
                // with the HTML versions (it does for an alternative whose HTML
                // it filed as plain text), and took HTML for what mail-parser said.
                let v1_skipped =
                    message.text_body.contains(&id) && !message.html_body.contains(&id);
                let body = slice(raw, part.offset_body, part.offset_end);
                let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
                let raw_text = push_text(
                    texts,
                    budget,
                    body,
                    charset,
                    transfer_encoding(part),
                    html,
                    html && !parser_html && !v1_skipped,
                );
                if let Some(t) = texts.last_mut() {
                    t.alternative = alternative;
                    t.v1 = match raw_text {
                        _ if v1_skipped => V1Read::Skipped,
                        Some(raw) => V1Read::Raw(raw),
                        None => V1Read::Same,
                    };
                }
            }
            PartType::Message(nested) if depth < 3 => {
                let inside = enclosing.or_else(|| {
                    outermost_alternative(message, &parent, id).map(|(group, branch)| Alternative {
                        group: groups.number(number, group),
                        branch,
                    })
                });
                decode_parts_in(nested, raw, texts, budget, depth + 1, inside, groups)
            }
            _ => {}
        }
    }
}

/// The outermost multipart/alternative `id` lies in: `(its part id, which of its
/// children leads to id)`.
fn outermost_alternative(
    message: &Message<'_>,
    parent: &[Option<u32>],
    id: u32,
) -> Option<(u32, u32)> {
    let mut found = None;
    let mut child = id;
    while let Some(p) = parent.get(child as usize).copied().flatten() {
        if let Some(PartType::Multipart(children)) = message.parts.get(p as usize).map(|m| &m.body)
            && message.parts[p as usize].content_type().is_some_and(|ct| {
                ct.c_type.eq_ignore_ascii_case("multipart")
                    && ct
                        .c_subtype
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("alternative"))
            })
            && let Some(branch) = children.iter().position(|&c| c == child)
        {
            found = Some((p, branch as u32));
        }
        child = p;
    }
    found
}

/// Does the part declare itself HTML (`text/html`)?
fn is_html(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case("text")
            && ct
                .c_subtype
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("html"))
    })
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

/// Decodes one text and appends it (within the budget). With `keep_raw`, an HTML
/// text's charset-decoded source (before reduction to visible text) is returned
/// too, for [`V1Read::Raw`].
fn push_text(
    texts: &mut Vec<DecodedText>,
    budget: &mut Budget,
    body: &[u8],
    charset_label: Option<&str>,
    cte: TransferEncoding,
    html: bool,
    keep_raw: bool,
) -> Option<String> {
    // The raw bytes are bounded by the message size limit; the budget counts the
    // text that is scanned.
    let bytes = transfer::decode(body, cte);
    let text = charset::decode(&bytes, charset_label);
    let raw = keep_raw.then(|| text.clone().into_owned());
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
        alternative: None,
        v1: V1Read::Same,
    });
    raw
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

    /// Issue 13: every alternative of a multipart/alternative is read and marked
    /// as one group; tokeniser version 1 read only the HTML.
    #[test]
    fn every_alternative_is_read_and_marked() {
        let d = texts(
            b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
              Content-Type: text/plain\r\n\r\nplain only\r\n--b\r\nContent-Type: text/html\r\n\r\n\
              <p>rich <b>text</b></p>\r\n--b--\r\n",
        );
        assert_eq!(d.texts.len(), 2, "{d:?}");
        assert_eq!(d.texts[0].source, TextSource::Text);
        assert!(d.texts[0].text.contains("plain only"));
        assert_eq!(d.texts[1].source, TextSource::Html);
        assert!(d.texts[1].text.contains("rich text"));
        let group = |i: usize| d.texts[i].alternative.map(|a| (a.group, a.branch));
        assert_eq!((group(0), group(1)), (Some((0, 0)), Some((0, 1))));
        assert_eq!(
            (&d.texts[0].v1, &d.texts[1].v1),
            (&V1Read::Skipped, &V1Read::Same)
        );
        assert_eq!(d.v1_body, None);
    }

    /// An HTML alternative that mail-parser files as plain text (here: the
    /// message ends without the closing boundary; trec07p inmail.37 is another
    /// case) is still reduced to its visible text. Version 1 read it with its tags,
    /// and skipped the plain text.
    #[test]
    fn an_html_part_filed_as_text_is_still_html() {
        let d = texts(
            b"Content-Type: multipart/alternative; boundary=b\n\n--b\n\
              Content-Type: text/plain\n\nViagra and Cialis\n--b\nContent-Type: text/html\n\
              Content-Transfer-Encoding: quoted-printable\n\n\
              <p><font color=3D\"red\">Viagra</font> and Cialis</p>\n",
        );
        assert_eq!(d.texts.len(), 2, "{d:?}");
        assert_eq!(d.texts[1].source, TextSource::Html);
        assert_eq!(d.texts[1].text.trim(), "Viagra and Cialis");
        assert_eq!(d.texts[1].alternative.map(|a| a.branch), Some(1));
        assert_eq!(d.texts[0].v1, V1Read::Skipped);
        match &d.texts[1].v1 {
            V1Read::Raw(raw) => assert!(raw.contains("<font color=\"red\">"), "{raw}"),
            other => panic!("{other:?}"),
        }
    }

    /// Version 1 fell back to reading the body whole when the parts it read held
    /// no text (trec07p inmail.1779: the HTML is all style sheet, the plain text
    /// holds it as text); the current reading does not, and records that.
    #[test]
    fn version_1_fallback_to_the_whole_body_is_recorded() {
        let d = texts(
            b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
              Content-Type: text/plain\r\n\r\nBODY { margin: 0px }\r\n--b\r\nContent-Type: text/html\r\n\r\n\
              <style>BODY { margin: 0px }</style>\r\n--b--\r\n",
        );
        assert!(d.texts[0].text.contains("BODY"), "{d:?}");
        let v1 = d.v1_body.expect("version 1 read the body whole");
        assert!(v1.text.contains("Content-Type: text/html"), "{v1:?}");
    }

    #[test]
    fn garbage_is_not_lost() {
        let d = texts(b"\xff\xfe\x00\x01 junk");
        assert_eq!(d.texts.len(), 1);
        let d = texts(b"");
        assert!(d.texts.iter().all(|t| t.text.is_empty()));
    }
}
