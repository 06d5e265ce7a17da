//! Every trick in the project's corpus is seen through: `corpus/EXPECT` lists, per
//! message, the keywords a correct filter must find (`WORD`) or must not (`!WORD`).
//!
//! `EXPECT` is written against a fixed vocabulary (corpus/README.md), not against
//! chaff's lists: a word the embedded lists do not hold (English `sex`, which the
//! dev corpora show to be a ham word in Chinese mail) cannot be found and is not
//! checked, and a word found as part of a longer listed phrase (`free` in
//! `free shipping`, matched leftmost-longest) counts as found.

use chaff::normalise::normalise;
use chaff::{Action, Config, Engine, Envelope};
use std::path::Path;

#[test]
fn expected_keywords_are_found_and_lookalikes_are_not() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus");
    let engine = Engine::new(&Config::default()).unwrap();
    let expect = std::fs::read_to_string(root.join("EXPECT")).unwrap();
    let listed: std::collections::HashSet<&str> = engine
        .keywords()
        .keywords
        .iter()
        .map(|k| k.normalised.as_str())
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in expect
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut words = line.split_whitespace();
        let path = words.next().unwrap();
        let raw = std::fs::read(root.join(path)).unwrap();
        let verdict = engine.scan(&raw, &Envelope::default());
        let found: Vec<String> = verdict.hits.iter().map(|h| normalise(&h.keyword)).collect();
        let has = |word: &str| {
            found
                .iter()
                .any(|f| f == word || f.split(' ').any(|part| part == word))
        };
        for word in words {
            match word.strip_prefix('!') {
                Some(absent) => {
                    checked += 1;
                    if has(absent) {
                        failures.push(format!("{path}: found {absent}, which is not a word there"))
                    }
                }
                None if !listed.contains(word) => {}
                None => {
                    checked += 1;
                    if !has(word) {
                        failures.push(format!("{path}: missed {word} (found {found:?})"))
                    }
                }
            }
        }
    }
    assert!(checked > 50, "EXPECT has too few checks: {checked}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_corpus_message_is_scanned_without_panic_and_ham_is_delivered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus");
    let engine = Engine::new(&Config::default()).unwrap();
    let index = std::fs::read_to_string(root.join("index")).unwrap();
    let mut flagged_ham = Vec::new();
    for line in index.lines().filter(|l| !l.trim().is_empty()) {
        let (label, path) = line.split_once(' ').unwrap();
        let raw = std::fs::read(root.join(path)).unwrap();
        let v = engine.scan(&raw, &Envelope::default());
        if label == "ham" && v.action != Action::Deliver {
            flagged_ham.push(format!("{path}: {v:?}"));
        }
    }
    assert!(
        flagged_ham.is_empty(),
        "ham flagged:\n{}",
        flagged_ham.join("\n")
    );
}
