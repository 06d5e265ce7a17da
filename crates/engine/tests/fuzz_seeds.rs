//! Replays the fuzz targets' committed seeds (`fuzz/seeds/TARGET/`) and every
//! crash a fuzzer found (`fuzz/regressions/TARGET/`) through the checks the
//! targets run (`chaff::fuzzing`), so CI catches a regression without a fuzzer.

use chaff::classify::features::FeatureConfig;
use chaff::classify::format;
use chaff::classify::model::{LearnParams, Model};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The seeds replayed for `target` (see `chaff::fuzzing::replay`).
fn replay(target: &str, check: fn(&[u8])) -> usize {
    chaff::fuzzing::replay(&fuzz_dir(), target, check)
}

#[test]
fn scan() {
    assert!(replay("scan", chaff::fuzzing::scan) > 0);
}

#[test]
fn decode() {
    assert!(replay("decode", chaff::fuzzing::decode) > 0);
}

#[test]
fn config() {
    assert!(replay("config", chaff::fuzzing::config) > 0);
}

#[test]
fn auth_results() {
    assert!(replay("auth_results", chaff::fuzzing::auth_results) > 0);
}

#[test]
fn bounce() {
    assert!(replay("bounce", chaff::fuzzing::bounce) > 0);
}

#[test]
fn keywords() {
    assert!(replay("keywords", chaff::fuzzing::keywords) > 0);
}

#[test]
fn model() {
    assert!(replay("model", chaff::fuzzing::model) > 0);
}

/// The model seed: a small model (2^8 weights, below what `chaff train` makes, so
/// that the fuzzer can afford to mutate it; the loader accepts any power of two)
/// with a little of everything in its metadata.
fn seed_model() -> Model {
    let mut m = Model::new(FeatureConfig::default(), LearnParams::default());
    m.meta.features.bits = 8;
    m.weights = (0..256).map(|i| (i as f32 - 128.0) / 64.0).collect();
    m.meta.bias = -0.25;
    m.meta.keywords.push(chaff::classify::model::KeywordWeight {
        keyword: "免费".into(),
        category: "free".into(),
        weight: 2.5,
    });
    m.meta.stats.chaff_version = "0.1.0".into();
    m
}

/// The committed model seeds are what `seed_model` makes, whole, truncated and
/// damaged. `CHAFF_WRITE_SEEDS=1 cargo test -p chaff --test fuzz_seeds` rewrites them.
#[test]
fn model_seeds_are_current() {
    let whole = format::to_bytes(&seed_model()).expect("encode");
    let mut flipped = whole.clone();
    flipped[40] ^= 0x20;
    let mut wrong_len = whole.clone();
    wrong_len[16] = wrong_len[16].wrapping_add(4);
    let seeds: [(&str, Vec<u8>); 5] = [
        ("small.model", whole.clone()),
        ("truncated-header.model", whole[..20].to_vec()),
        (
            "truncated-weights.model",
            whole[..whole.len() - 100].to_vec(),
        ),
        ("flipped-bit.model", flipped),
        ("wrong-length.model", wrong_len),
    ];
    let dir = fuzz_dir().join("seeds/model");
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if std::env::var_os("CHAFF_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).expect("create the seed folder");
            std::fs::write(&path, &bytes).expect("write a seed");
        }
        let committed = std::fs::read(&path).expect("read a seed");
        assert!(committed == bytes, "{} is stale", path.display());
    }
    assert_eq!(format::from_bytes(&whole).expect("loads"), seed_model());
}
