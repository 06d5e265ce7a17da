//! Bytes to text: the declared charset when it is right, detection when it is
//! missing, unknown or wrong.
//!
//! A quarter of the Chinese corpus declares no charset while holding GBK bytes;
//! some mail labels UTF-8 as gb2312, or uses labels no registry knows
//! (`eucGB2312_cn`). encoding_rs decodes, chardetng guesses, and a few rules in
//! between decide which to believe. HZ-GB-2312, which encoding_rs deliberately does
//! not decode, is decoded here.

use encoding_rs::{BIG5, Encoding, GB18030, GBK, UTF_8};
use std::borrow::Cow;

/// How many bytes chardetng looks at: enough to be sure, cheap on huge bodies.
const DETECT_PREFIX: usize = 16 * 1024;

/// Decodes `bytes` declared as `label` (the `charset` parameter, if any).
pub fn decode<'a>(bytes: &'a [u8], label: Option<&str>) -> Cow<'a, str> {
    let declared = label.and_then(lookup);
    if let Some(label) = label
        && is_hz(label)
    {
        return Cow::Owned(decode_hz(bytes));
    }
    if bytes.is_ascii() {
        // ASCII is ASCII in every charset a mail part uses (UTF-16 aside).
        if declared.is_none_or(|e| e.is_ascii_compatible())
            && let Ok(s) = std::str::from_utf8(bytes)
        {
            return Cow::Borrowed(s);
        }
    }
    if let Some(enc) = declared
        && let Some(text) = enc.decode_without_bom_handling_and_without_replacement(bytes)
    {
        return text;
    }
    // Undeclared, unknown, or the bytes do not fit the declared charset.
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(s);
    }
    let guess = detect(bytes);
    guess.decode_without_bom_handling(bytes).0
}

/// Guesses the encoding of non-UTF-8 bytes.
pub fn detect(bytes: &[u8]) -> &'static Encoding {
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    let prefix = &bytes[..bytes.len().min(DETECT_PREFIX)];
    detector.feed(prefix, prefix.len() == bytes.len());
    let guess = detector.guess(None, chardetng::Utf8Detection::Deny);
    // GBK and gb18030 decode identically; gb18030 also covers four-byte forms.
    if guess == GBK { GB18030 } else { guess }
}

/// Maps a charset label to an encoding, tolerating the odd labels real mail uses.
pub fn lookup(label: &str) -> Option<&'static Encoding> {
    let label = label.trim().trim_matches(['"', '\'']);
    if let Some(enc) = Encoding::for_label_no_replacement(label.as_bytes()) {
        return Some(match enc {
            e if e == GBK => GB18030,
            e => e,
        });
    }
    let lower = label.to_ascii_lowercase();
    if lower.contains("gb2312")
        || lower.contains("gbk")
        || lower.contains("gb18030")
        || lower == "cp936"
        || lower == "936"
    {
        Some(GB18030)
    } else if lower.contains("big5") || lower.contains("big-5") || lower == "cp950" {
        Some(BIG5)
    } else if lower.contains("utf8") || lower.contains("utf-8") {
        Some(UTF_8)
    } else {
        None
    }
}

fn is_hz(label: &str) -> bool {
    let l = label.trim().trim_matches(['"', '\'']);
    l.eq_ignore_ascii_case("hz-gb-2312") || l.eq_ignore_ascii_case("hz")
}

/// HZ (RFC 1843): ASCII, with GB2312 text between `~{` and `~}` written as pairs of
/// 7-bit bytes. `~~` is a tilde and `~` + newline is a line continuation.
fn decode_hz(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut gb = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'~' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'{' => {
                    gb = true;
                    i += 2;
                    continue;
                }
                b'}' => {
                    gb = false;
                    i += 2;
                    continue;
                }
                b'~' if !gb => {
                    out.push('~');
                    i += 2;
                    continue;
                }
                b'\n' if !gb => {
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        if gb
            && b > 0x20
            && b < 0x7f
            && i + 1 < bytes.len()
            && bytes[i + 1] > 0x20
            && bytes[i + 1] < 0x7f
        {
            let pair = [b | 0x80, bytes[i + 1] | 0x80];
            let (text, _) = GB18030.decode_without_bom_handling(&pair);
            out.push_str(&text);
            i += 2;
        } else {
            if b == b'\n' {
                gb = false;
            }
            out.push(if b.is_ascii() {
                b as char
            } else {
                char::REPLACEMENT_CHARACTER
            });
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIANFEI_GBK: &[u8] = b"\xc3\xe2\xb7\xd1"; // 免费

    #[test]
    fn declared_charsets() {
        assert_eq!(decode(MIANFEI_GBK, Some("gb2312")), "免费");
        assert_eq!(decode(MIANFEI_GBK, Some("\"GBK\"")), "免费");
        assert_eq!(decode(b"\xa7K\xb6O", Some("big5")), "免費");
        assert_eq!(decode("免费".as_bytes(), Some("utf-8")), "免费");
        // GBK-only character 镕 (0xE946) under a gb2312 label.
        assert_eq!(decode(b"\xe9\x46", Some("gb2312")), "镕");
        // A gb18030 four-byte character: U+20087 𠂇 is 0x95 0x32 0x82 0x36.
        assert_eq!(decode(b"\x95\x32\x82\x36", Some("gb18030")), "\u{20087}");
    }

    #[test]
    fn odd_and_wrong_labels() {
        assert_eq!(decode(MIANFEI_GBK, Some("eucGB2312_cn")), "免费");
        assert_eq!(
            decode("免费代开发票".as_bytes(), Some("gb2312")),
            "免费代开发票"
        );
        assert_eq!(decode(b"plain", Some("x-unknown")), "plain");
    }

    #[test]
    fn undeclared_chinese_is_detected() {
        let text = "本公司长期代开各地发票，优惠价格，欢迎来电咨询，免费送货上门。";
        let (gbk, _, _) = GBK.encode(text);
        assert_eq!(decode(&gbk, None), text);
        assert_eq!(decode(text.as_bytes(), None), text);
    }

    #[test]
    fn hz() {
        assert_eq!(
            decode(b"~{Cb7Q~} ok ~~", Some("HZ-GB-2312")),
            "\u{514d}\u{8d39} ok ~"
        );
        assert!(!decode(b"~{Cb7Q", Some("hz-gb-2312")).is_empty());
    }
}
