//! The message sets the benchmarks run on: the project's own corpus and, when it
//! is present beside the project, the first 2,000 messages of the real Chinese
//! corpus (`../shared/corpus/trec06c-dev`), where the throughput goals are set.

use chaff_train::index;
use std::path::Path;

/// Named sets of `(is_spam, raw message)`.
pub type Sets = Vec<(String, Vec<(bool, Vec<u8>)>)>;

/// The first `limit` readable messages of a TREC index (none if it is missing).
fn labelled(index: &Path, limit: usize) -> Vec<(bool, Vec<u8>)> {
    index::read(index)
        .unwrap_or_default()
        .into_iter()
        .take(limit)
        .filter_map(|l| Some((l.spam, std::fs::read(&l.path).ok()?)))
        .collect()
}

/// The sets, own corpus first.
pub fn sets() -> Sets {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let mut sets = vec![(
        "own-corpus".to_string(),
        labelled(&root.join("corpus/index"), usize::MAX),
    )];
    let trec = labelled(&root.join("../shared/corpus/trec06c-dev/index"), 2000);
    if !trec.is_empty() {
        sets.push(("trec06c-2000".to_string(), trec));
    }
    sets
}
