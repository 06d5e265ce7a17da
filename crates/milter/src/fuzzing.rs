//! The checks of the milter's fuzz targets, shared with the tests that replay
//! their seeds and the crashes they found (`tests/fuzz_seeds.rs`).
//!
//! Each function runs part of the service on arbitrary bytes and panics when an
//! invariant breaks, which is what a fuzzer reports as a crash. The fuzz targets in
//! `fuzz/fuzz_targets/` are one call each. Not part of the supported API.

use crate::ServiceConfig;
use crate::protocol::{Command, Response, split_frame};
use crate::session::{Session, Step};
use crate::settings::Settings;
use chaff::config::ConfigFile;
use std::path::Path;
use std::sync::Arc;

/// The packet codec: framing and decoding of arbitrary bytes, in both directions,
/// never panic and respect the packet limit (picked by the first byte, so small
/// limits get exercised too), and whatever decodes encodes back to a packet that
/// decodes to the same thing.
pub fn codec(data: &[u8]) {
    let Some((&k, mut rest)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(k) * 8;
    while let Ok(Some((frame, used))) = split_frame(rest, max) {
        assert!(used >= 5 && used <= rest.len() && used - 4 <= max);
        if let Ok(cmd) = Command::parse(frame) {
            let mut wire = Vec::new();
            cmd.encode(&mut wire);
            let (again, n) = split_frame(&wire, usize::MAX)
                .expect("re-encoded command frames")
                .expect("re-encoded command is complete");
            assert_eq!(n, wire.len());
            // NULs inside strings are dropped on encoding, so compare only when
            // the original had none where strings are.
            if let Ok(back) = Command::parse(again)
                && !frame.payload.contains(&0)
            {
                assert_eq!(back.code(), cmd.code());
            }
        }
        if let Ok(resp) = Response::parse(frame) {
            let mut wire = Vec::new();
            resp.encode(&mut wire);
            let (again, _) = split_frame(&wire, usize::MAX)
                .expect("re-encoded response frames")
                .expect("complete");
            assert_eq!(Response::parse(again).map(|r| r.code()), Ok(resp.code()));
        }
        rest = &rest[used..];
    }
}

/// The per-connection state machine, fed whatever commands decode from the bytes:
/// never a panic, never a message buffered past the size limit, and always an
/// answer at the end of a message.
pub fn session(data: &[u8]) {
    let settings = Settings {
        max_message_size: 300,
        ..Settings::default()
    };
    let mut session = Session::new(Arc::new(settings));
    let mut rest = data;
    while let Ok(Some((frame, used))) = split_frame(rest, 4096) {
        rest = &rest[used..];
        let Ok(cmd) = Command::parse(frame) else {
            continue;
        };
        match session.handle(cmd) {
            Ok(Step::Scan(job)) => {
                assert!(job.raw.len() <= 300, "buffered past the limit");
                let d = crate::policy::Decision::fallback(session.settings(), "fuzz".into());
                assert!(!session.finish(&d).is_empty());
            }
            Ok(Step::Close) => return,
            Ok(_) | Err(_) => {}
        }
    }
}

/// The service's configuration pipeline (the engine's tables, checked by
/// `chaff::fuzzing::config`, then `[milter]` and `[accounts]`): any text is read
/// or refused with an error naming the file and a line within the text, never a
/// panic.
pub fn config(data: &[u8]) {
    chaff::fuzzing::config(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match ConfigFile::from_toml(text, path).and_then(|f| ServiceConfig::from_file(&f)) {
        Ok(c) => assert!(c.engine.thresholds.quarantine <= c.engine.thresholds.reject),
        Err(e) => {
            assert_eq!(e.file, path);
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{e}");
            }
        }
    }
}

/// The release token reader: any header value, against any body, never panics
/// and never verifies (nobody without the key can make a token); and a token made
/// for the body verifies against it as the MTA hands it back (CRLF, an extra
/// blank line at the end), not against another body or at its expiry.
///
/// The bytes are split at the first NUL into header value and body.
pub fn release_token(data: &[u8]) {
    use crate::release::ReleaseKey;
    use crate::release::token::{self, TokenError};
    const NOW: u64 = 1_700_000_000;
    let key = ReleaseKey::from_bytes([0x5a; 32]);
    let (value, body) = match memchr::memchr(0, data) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let value = String::from_utf8_lossy(value);
    assert!(
        token::verify(&key, &value, body, NOW).is_err(),
        "a token verified without being made with the key: {value:?}"
    );
    let made = token::issue(&key, "fuzz-1", body, NOW, token::DEFAULT_TTL)
        .expect("a token for a valid id");
    let mark = token::verify(&key, &made, body, NOW).expect("the token verifies");
    assert_eq!(mark.id, "fuzz-1");
    // As the relay hands it to the milter: CRLF line endings, a blank line more.
    let mut relayed = Vec::with_capacity(body.len() + 8);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            relayed.push(b'\r');
        }
        relayed.push(b);
    }
    relayed.extend_from_slice(b"\r\n\r\n");
    assert!(token::verify(&key, &made, &relayed, NOW).is_ok());
    assert!(matches!(
        token::verify(&key, &made, body, NOW + token::DEFAULT_TTL),
        Err(TokenError::Expired { .. })
    ));
    let mut other = body.to_vec();
    other.extend_from_slice(b"\r\nP.S. added\r\n");
    assert_eq!(
        token::verify(&key, &made, &other, NOW),
        Err(TokenError::BodyChanged)
    );
}
