//! The checks of the fuzz targets, shared with the tests that replay their seeds
//! and the crashes they found (`tests/fuzz_seeds.rs`).
//!
//! Each function runs one part of the engine on arbitrary bytes and asserts what
//! must hold whatever the bytes: it panics on a violation, which is what a fuzzer
//! reports as a crash. The fuzz targets in `fuzz/fuzz_targets/` are one call each.
//! Not part of the supported API.

use crate::classify::format;
use crate::config::{Config, ConfigFile};
use crate::decode::decode as decode_parsed;
use crate::error::Error;
use crate::keywords::KeywordSet;
use crate::normalise::{Normalised, normalise_into};
use crate::parse::parse;
use crate::{Engine, Envelope, Reply};
use std::path::Path;
use std::sync::OnceLock;

/// The whole scan (parse → decode → normalise → match → segment → score → route)
/// on the embedded defaults: it never panics, the score is finite and no excerpt
/// spans lines.
pub fn scan(data: &[u8]) {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| Engine::new(&Config::default()).expect("default engine"));
    let verdict = engine.scan(data, &Envelope::default());
    assert!(verdict.score.is_finite());
    for hit in &verdict.hits {
        for loc in &hit.locations {
            assert!(!loc.excerpt.contains('\n'), "{:?}", loc.excerpt);
        }
    }
}

/// The parse and decode stages, and the offset map of normalisation: one origin
/// per normalised byte, each within the decoded text.
pub fn decode(data: &[u8]) {
    let decoded = decode_parsed(&parse(data));
    let mut out = Normalised::default();
    for (_, text) in decoded.all_texts() {
        normalise_into(text, &mut out);
        assert_eq!(out.origin.len(), out.text.len());
        assert!(out.origin.iter().all(|&o| (o as usize) < text.len().max(1)));
    }
}

/// The engine's configuration pipeline on any UTF-8 text: read or refused with an
/// error naming the file (and a line within the text, when it has one), never a
/// panic; an SMTP reply that parses stays one well-formed reply.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match ConfigFile::from_toml(text, path).and_then(|f| Config::from_file(&f)) {
        Ok(c) => {
            for outbound in [false, true] {
                let t = c.thresholds_for(outbound);
                assert!(t.quarantine <= t.reject, "{t:?}");
            }
        }
        Err(e) => {
            assert_eq!(e.file, path);
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{e}");
            }
        }
    }
    if let Ok(r) = Reply::parse(text) {
        assert!(r.as_str().starts_with(['4', '5']));
        assert!(!r.as_str().contains('\0'));
        assert_eq!(Reply::parse(r.as_str()).ok().as_ref(), Some(&r));
    }
}

/// The `Authentication-Results` parser, on the bytes as a header block and as one
/// header value: never a panic, and methods and results come back lowercase.
pub fn auth_results(data: &[u8]) {
    for a in crate::auth_results::from_headers(data) {
        for r in &a.results {
            assert_eq!(r.method, r.method.to_ascii_lowercase());
            assert_eq!(r.result, r.result.to_ascii_lowercase());
        }
    }
    let _ = crate::auth_results::parse(&String::from_utf8_lossy(data));
}

/// The bounce explainer (DSN fields, free-text reports, Chinese pages): never a
/// panic, recipients only for a bounce, and nothing taken from the bounce carries
/// a control character.
pub fn bounce(data: &[u8]) {
    use crate::bounce::{Explainer, KnowledgeBase, Lang};
    static KB: OnceLock<KnowledgeBase> = OnceLock::new();
    let kb = KB.get_or_init(KnowledgeBase::embedded);
    let e = Explainer::new(kb, Lang::Zh).explain(data);
    assert!(e.bounce || e.recipients.is_empty());
    for r in &e.recipients {
        for s in [
            r.address.as_deref(),
            Some(r.diagnostic.as_str()),
            r.remote_mta.as_deref(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
    }
}

/// The keyword-list parser ([`KeywordSet::add_list`]) on any UTF-8 text: never a
/// panic; a list that loads holds non-empty keywords with finite weights within
/// ±1000, and a refused one is refused with an error naming the file and a line
/// of the text.
pub fn keywords(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.txt");
    let mut set = KeywordSet::default();
    match set.add_list("fuzz", text, path) {
        Ok(()) => {
            assert_eq!(set.categories, ["fuzz"]);
            for k in &set.keywords {
                assert!(!k.normalised.is_empty(), "{k:?}");
                assert!(k.weight.is_finite() && k.weight.abs() <= 1000.0, "{k:?}");
                assert_eq!(k.category, 0);
            }
            // Keywords are deduplicated by normalised form.
            let mut seen = std::collections::HashSet::new();
            assert!(set.keywords.iter().all(|k| seen.insert(&k.normalised)));
        }
        Err(Error::Keywords { file, line, .. }) => {
            assert_eq!(file, path);
            assert!(line >= 1 && line <= text.lines().count(), "line {line}");
        }
        Err(e) => panic!("unexpected error from a keyword list: {e}"),
    }
}

/// The model loader ([`format::from_bytes`]) on arbitrary bytes: never a panic,
/// no allocation beyond what the bytes hold, and a model that loads re-encodes to
/// bytes that load to an equal model. The bytes are tried as they are and, so that
/// mutations get past the checksum to the metadata and weights, with the length
/// field and the checksum made right.
pub fn model(data: &[u8]) {
    model_roundtrip(data);
    if data.len() >= 32 {
        let mut fixed = data.to_vec();
        fixed[16..24].copy_from_slice(&(data.len() as u64).to_le_bytes());
        let end = fixed.len() - 4;
        let crc = crc32fast::hash(&fixed[..end]);
        fixed[end..].copy_from_slice(&crc.to_le_bytes());
        model_roundtrip(&fixed);
    }
}

fn model_roundtrip(data: &[u8]) {
    let Ok(m) = format::from_bytes(data) else {
        return;
    };
    // Weights are read from the bytes, four bytes each: nothing is sized by a
    // header field alone.
    assert!(4 * m.weights.len() < data.len());
    let bytes = format::to_bytes(&m).expect("a loaded model encodes");
    let again = format::from_bytes(&bytes).expect("a re-encoded model loads");
    assert_eq!(again, m);
}

/// For the seed-replay tests of every crate with fuzz targets: runs `check` on
/// every file of `fuzz_dir/seeds/TARGET/` and `fuzz_dir/regressions/TARGET/`
/// (hidden files skipped), failing on the first that fails its check. Returns how many seeds there were.
pub fn replay(fuzz_dir: &Path, target: &str, check: fn(&[u8])) -> usize {
    let mut seeds = 0;
    for kind in ["seeds", "regressions"] {
        let dir = fuzz_dir.join(kind).join(target);
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
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
