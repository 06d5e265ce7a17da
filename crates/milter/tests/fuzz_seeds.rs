//! Replays the milter fuzz targets' committed seeds (`fuzz/seeds/TARGET/`) and
//! every crash a fuzzer found (`fuzz/regressions/TARGET/`) through the checks the
//! targets run (`chaff_milter::fuzzing`).

use std::path::Path;

/// The seeds replayed for `target` (see `chaff::fuzzing::replay`).
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    chaff::fuzzing::replay(&fuzz, target, check)
}

#[test]
fn codec() {
    assert!(replay("milter_codec", chaff_milter::fuzzing::codec) > 0);
}

#[test]
fn session() {
    assert!(replay("milter_session", chaff_milter::fuzzing::session) > 0);
}

#[test]
fn config() {
    assert!(replay("config", chaff_milter::fuzzing::config) > 0);
}

#[test]
fn release_token() {
    assert!(replay("release_token", chaff_milter::fuzzing::release_token) > 0);
}
