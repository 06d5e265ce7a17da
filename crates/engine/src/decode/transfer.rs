//! Content-Transfer-Encoding, decoded leniently.
//!
//! Real mail lies about its transfer encoding: trec06c has thousands of bodies that
//! say `base64` but were already decoded. A body that is not base64 (or not
//! quoted-printable) is read as it stands rather than turned into garbage.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::borrow::Cow;

/// A transfer encoding, as declared in `Content-Transfer-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// 7bit, 8bit, binary, or anything unknown: the bytes are the content.
    Identity,
    /// base64.
    Base64,
    /// quoted-printable.
    QuotedPrintable,
}

impl TransferEncoding {
    /// Reads a header value (case-insensitive, surrounding space ignored).
    pub fn from_header(value: &str) -> TransferEncoding {
        let v = value.trim();
        if v.eq_ignore_ascii_case("base64") {
            TransferEncoding::Base64
        } else if v.eq_ignore_ascii_case("quoted-printable") {
            TransferEncoding::QuotedPrintable
        } else {
            TransferEncoding::Identity
        }
    }
}

/// base64 that accepts missing or extra padding and non-zero trailing bits.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes a body. When the body is not in the declared encoding, returns it as is.
pub fn decode(body: &[u8], encoding: TransferEncoding) -> Cow<'_, [u8]> {
    match encoding {
        TransferEncoding::Identity => Cow::Borrowed(body),
        TransferEncoding::Base64 => match decode_base64(body) {
            Some(bytes) => Cow::Owned(bytes),
            None => Cow::Borrowed(body),
        },
        TransferEncoding::QuotedPrintable => {
            if !body.contains(&b'=') {
                return Cow::Borrowed(body);
            }
            match quoted_printable::decode(body, quoted_printable::ParseMode::Robust) {
                Ok(bytes) => Cow::Owned(bytes),
                Err(_) => Cow::Borrowed(body),
            }
        }
    }
}

/// base64 with line breaks and spaces removed; `None` when the body holds bytes
/// that are not base64 at all (it was not encoded).
pub(crate) fn decode_base64(body: &[u8]) -> Option<Vec<u8>> {
    let mut clean = Vec::with_capacity(body.len());
    for &b in body {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => clean.push(b),
            b'\r' | b'\n' | b' ' | b'\t' => {}
            // Padding ends the data; anything after it (a signature, a trailer) is
            // not part of the encoded content.
            b'=' => break,
            _ => return None,
        }
    }
    // A length of 4k+1 cannot be base64: drop the stray last symbol.
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    LENIENT.decode(&clean).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_with_and_without_padding() {
        assert_eq!(
            &*decode(b"5YWN6LS5\r\n", TransferEncoding::Base64),
            "免费".as_bytes()
        );
        // "ab" is YWI= ; without padding the last character must not be lost.
        assert_eq!(&*decode(b"YWI", TransferEncoding::Base64), b"ab");
        assert_eq!(&*decode(b"YW\r\nI=\r\n", TransferEncoding::Base64), b"ab");
    }

    #[test]
    fn base64_label_on_plain_text_reads_as_is() {
        let gbk = b"\xc3\xe2\xb7\xd1 free text\r\n";
        assert_eq!(&*decode(gbk, TransferEncoding::Base64), gbk);
        let text = b"Hello, this is not base64!";
        assert_eq!(&*decode(text, TransferEncoding::Base64), text);
    }

    #[test]
    fn quoted_printable() {
        assert_eq!(
            &*decode(b"=C3=E2=B7=D1=\r\nabc", TransferEncoding::QuotedPrintable),
            b"\xc3\xe2\xb7\xd1abc"
        );
        assert_eq!(
            &*decode(b"a=ZZb", TransferEncoding::QuotedPrintable),
            b"a=ZZb"
        );
    }

    #[test]
    fn header_values() {
        assert_eq!(
            TransferEncoding::from_header(" BASE64 "),
            TransferEncoding::Base64
        );
        assert_eq!(
            TransferEncoding::from_header("Quoted-Printable"),
            TransferEncoding::QuotedPrintable
        );
        assert_eq!(
            TransferEncoding::from_header("8bit"),
            TransferEncoding::Identity
        );
    }
}
