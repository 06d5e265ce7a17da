//! Fuzzes the configuration pipeline: any text must be read or refused with an
//! error naming the file (and a line, when it has one), never a panic; an SMTP
//! reply that parses must stay one well-formed reply.
#![no_main]

use chaff::Reply;
use chaff::config::ConfigFile;
use chaff_milter::ServiceConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match ConfigFile::from_toml(text, path).and_then(|f| ServiceConfig::from_file(&f)) {
        Ok(c) => assert!(c.engine.thresholds.quarantine <= c.engine.thresholds.reject),
        Err(e) => {
            assert_eq!(e.file, path);
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
            }
        }
    }
    if let Ok(r) = Reply::parse(text) {
        assert!(r.as_str().starts_with(['4', '5']));
        assert!(!r.as_str().contains('\0'));
        assert_eq!(Reply::parse(r.as_str()).ok().as_ref(), Some(&r));
    }
});
