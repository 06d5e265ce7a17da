//! What an admin reads of a kept message: its header block, and its decoded
//! text (subject and every text part, HTML reduced to its visible text) with
//! each keyword hit located where it stands, evasions included (`免 费`).
//!
//! The same for `chaff quarantine show` (hits marked `[[like this]]` by
//! [`mark`]) and the admin API's `GET /api/quarantine/{id}` (hits as byte and
//! character offsets, for the console to highlight). The text is decoded and
//! searched again by the engine in force, with the engine's own decoder and
//! matcher (`Engine::decode`, `Engine::find`), so the positions are those a
//! scan sees; the engine bounds the decoded text (1 MiB) and the header block
//! shown is cut at [`MAX_HEADER_BYTES`].
//!
//! Everything here is text an attacker wrote: a viewer escapes it (the console)
//! or strips control characters (the command line).

use chaff::{Engine, TextSource};
use serde::Serialize;

/// Most bytes of the header block shown.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One hit in a text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    /// The keyword as written in its list.
    pub keyword: String,
    /// Its category.
    pub category: String,
    /// Byte offset in the text (UTF-8).
    pub offset: usize,
    /// Byte length.
    pub len: usize,
    /// Offset in characters (Unicode scalar values), for viewers that count so.
    pub char_offset: usize,
    /// Length in characters.
    pub char_len: usize,
}

/// One decoded text and its hits, in order of position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviewText {
    /// `subject`, `text` or `html` (HTML reduced to its visible text).
    pub source: String,
    /// The text.
    pub text: String,
    /// The hits in it, by position, not overlapping.
    pub hits: Vec<Mark>,
}

/// A message as an admin reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// The header block as received (not decoded; lines ending in `\n`), at most
    /// [`MAX_HEADER_BYTES`].
    pub headers: String,
    /// The header block was longer than shown.
    pub headers_truncated: bool,
    /// The decoded subject.
    pub subject: PreviewText,
    /// The text parts, in message order.
    pub parts: Vec<PreviewText>,
    /// Some text was not decoded (over the engine's decoding limits).
    pub truncated: bool,
}

fn source_name(s: TextSource) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The spans of `hits` (offset, len) that lie on character boundaries of
/// `text`, sorted, without overlaps (the first of two overlapping ones kept).
fn clean_spans<T>(text: &str, mut hits: Vec<(usize, usize, T)>) -> Vec<(usize, usize, T)> {
    hits.sort_by_key(|h| (h.0, h.1));
    let mut out: Vec<(usize, usize, T)> = Vec::with_capacity(hits.len());
    let mut at = 0;
    for (start, len, t) in hits {
        let Some(end) = start.checked_add(len) else {
            continue;
        };
        if start < at
            || len == 0
            || end > text.len()
            || !text.is_char_boundary(start)
            || !text.is_char_boundary(end)
        {
            continue;
        }
        out.push((start, len, t));
        at = end;
    }
    out
}

impl Preview {
    /// Reads `raw` with `engine`.
    pub fn of(raw: &[u8], engine: &Engine) -> Preview {
        let (end, _) = chaff::text::header_end(raw);
        let head = &raw[..end.min(raw.len())];
        let shown = &head[..head.len().min(MAX_HEADER_BYTES)];
        let headers = String::from_utf8_lossy(shown).replace("\r\n", "\n");
        let decoded = engine.decode(raw);
        let found = engine.find(&decoded);
        let keywords = engine.keywords();
        let text_of = |source: TextSource, part: Option<usize>, text: &str| {
            let spans: Vec<(usize, usize, u32)> = found
                .iter()
                .filter(|f| match part {
                    None => f.location.source == TextSource::Subject,
                    Some(i) => f.location.source != TextSource::Subject && f.location.part == i,
                })
                .map(|f| (f.location.offset, f.location.len, f.keyword))
                .collect();
            let mut hits = Vec::new();
            // Character offsets counted in one pass over the text.
            let (mut byte, mut chars) = (0usize, 0usize);
            let mut count_to = |to: usize| {
                chars += text[byte..to].chars().count();
                byte = to;
                chars
            };
            for (offset, len, k) in clean_spans(text, spans) {
                let char_offset = count_to(offset);
                let char_end = count_to(offset + len);
                let kw = keywords.keywords.get(k as usize);
                hits.push(Mark {
                    keyword: kw.map(|k| k.text.clone()).unwrap_or_default(),
                    category: kw
                        .and_then(|k| keywords.categories.get(k.category))
                        .cloned()
                        .unwrap_or_default(),
                    offset,
                    len,
                    char_offset,
                    char_len: char_end - char_offset,
                });
            }
            PreviewText {
                source: source_name(source),
                text: text.to_string(),
                hits,
            }
        };
        let subject = text_of(TextSource::Subject, None, &decoded.subject);
        let parts = decoded
            .texts
            .iter()
            .enumerate()
            .map(|(i, t)| text_of(t.source, Some(i), &t.text))
            .collect();
        Preview {
            headers,
            headers_truncated: head.len() > shown.len(),
            subject,
            parts,
            truncated: decoded.truncated,
        }
    }
}

/// `text` with every span (byte offset, length) marked `[[like this]]`; spans
/// that overlap an earlier one, or do not lie on character boundaries, are left
/// unmarked.
pub fn mark(text: &str, spans: Vec<(usize, usize)>) -> String {
    let spans = clean_spans(text, spans.into_iter().map(|(o, l)| (o, l, ())).collect());
    let mut out = String::with_capacity(text.len() + spans.len() * 4);
    let mut at = 0;
    for (start, len, ()) in spans {
        out.push_str(&text[at..start]);
        out.push_str("[[");
        out.push_str(&text[start..start + len]);
        out.push_str("]]");
        at = start + len;
    }
    out.push_str(&text[at..]);
    out
}

impl PreviewText {
    /// The text with its hits marked `[[like this]]`.
    pub fn marked(&self) -> String {
        mark(
            &self.text,
            self.hits.iter().map(|h| (h.offset, h.len)).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hits_are_marked_on_character_boundaries() {
        assert_eq!(mark("买免 费的东西", vec![(3, 7)]), "买[[免 费]]的东西");
        assert_eq!(mark("free free", vec![(5, 4), (0, 4)]), "[[free]] [[free]]");
        // Overlapping, out of range or off a boundary: left unmarked, no panic.
        assert_eq!(mark("免费", vec![(1, 2), (0, 100), (0, 3)]), "[[免]]费");
        assert_eq!(mark("免费", vec![(1, 3)]), "免费");
        assert_eq!(mark("abc", vec![(10, 1), (usize::MAX, 2)]), "abc");
    }

    #[test]
    fn a_preview_locates_hits_where_they_stand() {
        let engine = Engine::new(&chaff::Config::default()).unwrap();
        let raw = "From: a@b.example\r\nSubject: =?utf-8?B?5Luj5byA5Y+R56Wo?=\r\n\
                   Content-Type: text/plain; charset=utf-8\r\n\r\n\
                   你好，代开发票，免 费咨询。\r\n"
            .as_bytes();
        let p = Preview::of(raw, &engine);
        assert!(
            p.headers.starts_with("From: a@b.example\nSubject:"),
            "{p:?}"
        );
        assert!(!p.headers_truncated);
        assert_eq!(p.subject.text, "代开发票");
        assert_eq!(p.subject.source, "subject");
        assert!(!p.subject.hits.is_empty(), "{p:?}");
        assert_eq!(p.parts.len(), 1);
        let body = &p.parts[0];
        assert_eq!(body.source, "text");
        let free = body
            .hits
            .iter()
            .find(|h| &body.text[h.offset..h.offset + h.len] == "免 费")
            .unwrap_or_else(|| panic!("no 免 费 in {body:?}"));
        let chars: Vec<char> = body.text.chars().collect();
        let by_chars: String = chars[free.char_offset..free.char_offset + free.char_len]
            .iter()
            .collect();
        assert_eq!(by_chars, "免 费");
        assert!(!free.keyword.is_empty() && !free.category.is_empty());
        assert!(body.marked().contains("[[免 费]]"), "{}", body.marked());
    }

    #[test]
    fn a_long_header_block_is_cut() {
        let engine = Engine::new(&chaff::Config::default()).unwrap();
        let mut raw = Vec::new();
        for i in 0..5000 {
            raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "x".repeat(20)).as_bytes());
        }
        raw.extend_from_slice(b"\r\nbody\r\n");
        let p = Preview::of(&raw, &engine);
        assert!(p.headers_truncated);
        assert!(p.headers.len() <= MAX_HEADER_BYTES);
    }

    proptest! {
        #[test]
        fn any_spans_mark_without_panic(
            text in "[a-z免费 ]{0,30}",
            spans in proptest::collection::vec((0usize..100, 0usize..100), 0..8),
        ) {
            let marked = mark(&text, spans);
            prop_assert_eq!(marked.replace("[[", "").replace("]]", ""), text);
        }
    }
}
