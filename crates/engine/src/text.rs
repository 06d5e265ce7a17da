//! Small facts about text that several stages need, each decided in one place.

/// Is this a Chinese (Han) ideograph? CJK Unified Ideographs and extension A, the
/// compatibility ideographs, and the supplementary planes' extensions B to H and
/// compatibility supplement (U+20000–U+323AF).
///
/// The one definition for every stage: the keyword matcher (Han characters are not
/// word characters, so `看sex电影` matches `sex`), segmentation (the run of Han text
/// around a hit), normalisation (separators between ideographs dropped) and charset
/// detection.
#[inline]
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x323AF)
}

/// Where a message's header block ends: `(headers, body)`, where `raw[..headers]`
/// is the header lines without the blank line that ends them and `raw[body..]` is
/// the body. A message with no blank line is all headers (`headers == body ==
/// raw.len()`); one that starts with a blank line has no headers. Lines end in LF
/// or CRLF.
pub fn header_end(raw: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    loop {
        match raw.get(pos..) {
            Some([b'\n', ..]) => return (pos, pos + 1),
            Some([b'\r', b'\n', ..]) => return (pos, pos + 2),
            _ => {}
        }
        match memchr::memchr(b'\n', &raw[pos..]) {
            Some(i) => pos += i + 1,
            None => return (raw.len(), raw.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn han_covers_the_blocks_and_nothing_else() {
        for c in [
            '一',
            '龥',
            '㐀',
            '豈',
            '\u{20000}',
            '\u{2A700}',
            '\u{31350}',
        ] {
            assert!(is_han(c), "{c:?}");
        }
        for c in ['a', '。', '，', 'ア', '한', '\u{3000}', '\u{FF01}'] {
            assert!(!is_han(c), "{c:?}");
        }
    }

    #[test]
    fn header_end_finds_the_blank_line() {
        assert_eq!(header_end(b"A: 1\r\nB: 2\r\n\r\nbody"), (12, 14));
        assert_eq!(header_end(b"A: 1\n\nbody\n\nmore"), (5, 6));
        assert_eq!(header_end(b"no body"), (7, 7));
        assert_eq!(header_end(b"A: 1\n"), (5, 5));
        assert_eq!(header_end(b"\r\nbody"), (0, 2));
        assert_eq!(header_end(b"\nbody"), (0, 1));
        assert_eq!(header_end(b""), (0, 0));
    }
}
