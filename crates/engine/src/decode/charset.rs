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

/// How many bytes chardetng looks at, from the first non-ASCII byte: a couple of
/// thousand CJK characters tell GBK from Big5 with certainty, and chardetng's cost
/// grows with its input (it was half of all scanning time when fed whole bodies).
const DETECT_PREFIX: usize = 1024;

/// Decodes `bytes` declared as `label` (the `charset` parameter, if any).
pub fn decode<'a>(bytes: &'a [u8], label: Option<&str>) -> Cow<'a, str> {
    let declared = label.and_then(lookup);
    if let Some(label) = label
        && is_hz(label)
    {
        return Cow::Owned(decode_hz(bytes));
    }
    // Non-ASCII bytes that are valid UTF-8 are UTF-8 whatever the label says:
    // legacy Chinese text is almost never valid UTF-8 by accident, while UTF-8
    // labelled gb2312 also "decodes" as GBK, into nonsense.
    if declared.is_none_or(|e| e.is_ascii_compatible())
        && let Ok(s) = std::str::from_utf8(bytes)
    {
        return Cow::Borrowed(s);
    }
    if let Some(enc) = declared {
        let (text, had_errors) = enc.decode_without_bom_handling(bytes);
        // A few bad bytes (a truncated line, a stray byte) do not make the label
        // wrong; many do.
        if !had_errors || mostly_clean(&text) {
            return text;
        }
    }
    // Undeclared, unknown, or the bytes do not fit the declared charset.
    let guess = detect(bytes);
    guess.decode_without_bom_handling(bytes).0
}

/// Guesses the encoding of non-UTF-8 bytes.
///
/// Undeclared Chinese mail is by far the common case, so GBK and Big5 are tried
/// first with a cheap test (does the text decode cleanly, and is it full of the
/// most frequent Chinese characters?). chardetng, thorough but about ten times
/// slower, decides everything else.
pub fn detect(bytes: &[u8]) -> &'static Encoding {
    let start = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(0);
    let start = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let end = bytes.len().min(start + DETECT_PREFIX);
    let sample = &bytes[start..end];
    if let Some(enc) = detect_chinese(sample) {
        return enc;
    }
    // chardetng costs some 350 instructions a byte: a kilobyte decides.
    let sample = &sample[..sample.len().min(CHINESE_SAMPLE)];
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Allow);
    detector.feed(sample, start + sample.len() == bytes.len());
    widest(detector.guess(None, chardetng::Utf8Detection::Deny))
}

/// GBK and gb18030 decode identically, but gb18030 also covers four-byte forms:
/// always decode with it.
fn widest(enc: &'static Encoding) -> &'static Encoding {
    if enc == GBK { GB18030 } else { enc }
}

/// The most frequent characters of simplified and of traditional Chinese text.
const COMMON_SIMPLIFIED: &str = "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心";
const COMMON_TRADITIONAL: &str = "的一是不了在人有我他這個們中來上大為和國地到以說時要就出會可也你對生能而子那得於著下自之年過發後作裡用道行所然家種事成方多經麼去法學如都同現當沒動面起看定天分還進好小部其些主樣理心";

/// Bytes of the sample decoded for the GBK/Big5 test: some 500 characters.
const CHINESE_SAMPLE: usize = 1024;

/// A share of common characters that only real Chinese text reaches (typical
/// text: 0.3 to 0.4; Big5 bytes read as GBK: below 0.05).
const CLEAR_FIT: f64 = 0.15;

/// GBK or Big5, when the sample clearly is one of them.
fn detect_chinese(sample: &[u8]) -> Option<&'static Encoding> {
    let sample = &sample[..sample.len().min(CHINESE_SAMPLE)];
    let (simplified, traditional) = common_sets();
    let gb = chinese_fit(GB18030, sample, simplified);
    // Big5 read as GBK gives rare characters, not common simplified ones: a clear
    // GBK fit needs no Big5 test.
    if gb.is_some_and(|share| share >= CLEAR_FIT) {
        return Some(GB18030);
    }
    let big5 = chinese_fit(BIG5, sample, traditional);
    match (gb, big5) {
        (Some(g), Some(b)) if b > g => Some(BIG5),
        (Some(_), _) => Some(GB18030),
        (None, Some(_)) => Some(BIG5),
        (None, None) => None,
    }
}

/// A set of characters of the basic CJK block, one bit each.
struct HanSet([u64; 0x5200 / 64]);

impl HanSet {
    fn new(chars: &str) -> HanSet {
        let mut bits = [0u64; 0x5200 / 64];
        for c in chars.chars() {
            let k = (c as usize).wrapping_sub(0x4E00);
            if k < 0x5200 {
                bits[k / 64] |= 1 << (k % 64);
            }
        }
        HanSet(bits)
    }

    fn contains(&self, c: char) -> bool {
        let k = (c as usize).wrapping_sub(0x4E00);
        k < 0x5200 && self.0[k / 64] >> (k % 64) & 1 == 1
    }
}

fn common_sets() -> &'static (HanSet, HanSet) {
    static SETS: std::sync::OnceLock<(HanSet, HanSet)> = std::sync::OnceLock::new();
    SETS.get_or_init(|| {
        (
            HanSet::new(COMMON_SIMPLIFIED),
            HanSet::new(COMMON_TRADITIONAL),
        )
    })
}

/// How well `sample` reads as Chinese in `enc`: the share of common characters
/// among the Han characters, or `None` when it decodes with errors or has too
/// few common characters to be Chinese text.
fn chinese_fit(enc: &'static Encoding, sample: &[u8], common: &HanSet) -> Option<f64> {
    let (text, _) = enc.decode_without_bom_handling(sample);
    let (mut han, mut frequent, mut bad) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        if c == char::REPLACEMENT_CHARACTER {
            bad += 1;
        } else if crate::text::is_han(c) {
            han += 1;
            frequent += usize::from(common.contains(c));
        }
    }
    // One bad character is allowed: the sample may cut the last one in two.
    let share = frequent as f64 / han.max(1) as f64;
    (bad <= 1 + han / 20 && han >= 4 && share >= 0.08).then_some(share)
}

/// At most one character in a hundred is a decoding error.
fn mostly_clean(text: &str) -> bool {
    // U+FFFD is the only char encoded EF BF BD: a substring search counts the bad
    // chars, and `chars().count()` (which counts lead bytes a word at a time) the
    // rest, both far faster than decoding every char.
    let bad = memchr::memmem::find_iter(text.as_bytes(), "\u{FFFD}".as_bytes()).count();
    bad == 0 || bad * 100 <= text.chars().count()
}

/// Maps a charset label to an encoding, tolerating the odd labels real mail uses.
pub fn lookup(label: &str) -> Option<&'static Encoding> {
    let label = label.trim().trim_matches(['"', '\'']);
    if let Some(enc) = Encoding::for_label_no_replacement(label.as_bytes()) {
        return Some(widest(enc));
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
        // A gb18030 four-byte character: U+20087 𠂇 is 0x95 0x32 0x90 0x31.
        assert_eq!(decode(b"\x95\x32\x90\x31", Some("gb18030")), "\u{20087}");
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
    fn undeclared_big5_and_latin() {
        let text = "本公司長期代開各地發票，優惠價格，歡迎來電諮詢，我們的服務是最好的。";
        let (big5, _, _) = BIG5.encode(text);
        assert_eq!(decode(&big5, None), text);
        let latin = "Grüße aus München, schöne Müller-Straße. Ça coûte très cher, señor.";
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(latin);
        assert_eq!(decode(&bytes, None), latin);
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
