//! Replays the milter fuzz targets' committed seeds (`fuzz/seeds/TARGET/`) and
//! every crash a fuzzer found (`fuzz/regressions/TARGET/`) through the checks the
//! targets run (`chaff_milter::fuzzing`).

use std::path::{Path, PathBuf};

/// Runs `check` on every file of the target's seeds and regressions; returns how
/// many seeds there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut seeds = 0;
    for kind in ["seeds", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("read a seed");
            let run = std::panic::catch_unwind(|| check(&data));
            assert!(run.is_ok(), "{target}: {} fails its check", file.display());
            if kind == "seeds" {
                seeds += 1;
            }
        }
    }
    seeds
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
