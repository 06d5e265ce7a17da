//! Header text: RFC 2047 encoded-words and raw 8-bit bytes, decoded robustly.
//!
//! mail-parser decodes each encoded-word on its own, so a character split across
//! two words is lost, and raw GBK bytes in a header become U+FFFD. Here adjacent
//! encoded-words in the same charset are joined *before* the charset is decoded,
//! and raw 8-bit runs go through charset detection.

use super::charset;
use super::transfer::decode_base64;

enum Segment<'a> {
    Raw(&'a [u8]),
    Encoded { charset: &'a str, bytes: Vec<u8> },
}

/// Decodes a raw header value (the bytes after `Name:`, possibly folded).
pub fn decode(raw: &[u8]) -> String {
    let unfolded: Vec<u8> = unfold(raw);
    let mut segments: Vec<Segment<'_>> = Vec::new();
    let mut i = 0;
    let mut raw_start = 0;
    while i + 1 < unfolded.len() {
        if unfolded[i] == b'='
            && unfolded[i + 1] == b'?'
            && let Some((charset, bytes, end)) = encoded_word(&unfolded, i)
        {
            let between = &unfolded[raw_start..i];
            let after_word = matches!(segments.last(), Some(Segment::Encoded { .. }));
            // Whitespace between two encoded-words is not part of the text.
            if !(between.is_empty() || after_word && between.iter().all(u8::is_ascii_whitespace)) {
                segments.push(Segment::Raw(between));
            }
            match segments.last_mut() {
                Some(Segment::Encoded {
                    charset: c,
                    bytes: b,
                }) if c.eq_ignore_ascii_case(charset) => b.extend_from_slice(&bytes),
                _ => segments.push(Segment::Encoded { charset, bytes }),
            }
            i = end;
            raw_start = end;
        } else {
            i += 1;
        }
    }
    if raw_start < unfolded.len() {
        segments.push(Segment::Raw(&unfolded[raw_start..]));
    }
    let mut out = String::new();
    for seg in &segments {
        match seg {
            Segment::Raw(bytes) => out.push_str(&charset::decode(bytes, None)),
            Segment::Encoded { charset: c, bytes } => {
                out.push_str(&charset::decode(bytes, Some(c)))
            }
        }
    }
    out.trim().to_string()
}

/// Removes line folding (CRLF or LF followed by white space).
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if b != b'\r' && b != b'\n' {
            out.push(b);
        }
    }
    out
}

/// Parses `=?charset?enc?text?=` at `start`; returns the charset (language suffix
/// removed), the decoded bytes and the end offset.
fn encoded_word(s: &[u8], start: usize) -> Option<(&str, Vec<u8>, usize)> {
    let rest = &s[start + 2..];
    let q1 = rest.iter().position(|&b| b == b'?')?;
    let charset = std::str::from_utf8(&rest[..q1]).ok()?;
    let charset = charset.split('*').next().unwrap_or(charset);
    if charset.is_empty() || charset.len() > 40 || charset.contains(char::is_whitespace) {
        return None;
    }
    let enc = *rest.get(q1 + 1)?;
    if rest.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let text_start = q1 + 3;
    let len = rest[text_start..].windows(2).position(|w| w == b"?=")?;
    let text = &rest[text_start..text_start + len];
    let bytes = match enc {
        b'B' | b'b' => decode_base64(text)?,
        b'Q' | b'q' => decode_q(text),
        _ => return None,
    };
    Some((charset, bytes, start + 2 + text_start + len + 2))
}

fn decode_q(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < text.len() => match (hex(text[i + 1]), hex(text[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'='),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words() {
        assert_eq!(decode(b" =?gb2312?B?w+K30Q==?="), "免费");
        assert_eq!(decode(b"=?GBK?Q?=C3=E2=B7=D1_ok?="), "免费 ok");
        assert_eq!(
            decode(b"=?utf-8?B?5YWN6LS5?= and =?utf-8?q?x?="),
            "免费 and x"
        );
        assert_eq!(decode(b"plain subject"), "plain subject");
    }

    #[test]
    fn adjacent_words_join_before_charset_decoding() {
        // 免费 in GBK is C3 E2 B7 D1; split after the third byte.
        assert_eq!(decode(b"=?gbk?Q?=C3=E2=B7?=\r\n =?gbk?Q?=D1?="), "免费");
        // The same in base64: w+K3 = C3 E2 B7, 0Q== = D1.
        assert_eq!(decode(b"=?gb2312?B?w+K3?= =?gb2312?B?0Q==?="), "免费");
    }

    #[test]
    fn raw_eight_bit_is_detected() {
        let (gbk, _, _) = encoding_rs::GBK.encode("代开发票，优惠多多，欢迎来电咨询");
        assert_eq!(decode(&gbk), "代开发票，优惠多多，欢迎来电咨询");
    }

    #[test]
    fn broken_words_stay_text() {
        assert_eq!(decode(b"=?gb2312?B?"), "=?gb2312?B?");
        assert_eq!(decode(b"=?x?Z?abc?="), "=?x?Z?abc?=");
        assert_eq!(decode(b"a=?"), "a=?");
        assert_eq!(decode(b"=?utf-8?q?a=E?="), "a=E");
    }
}
