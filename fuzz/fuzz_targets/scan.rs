//! Fuzz the whole scan (parse → decode → normalise → match → segment → score →
//! route) on arbitrary bytes: it must never panic, and the verdict must be sane.
#![no_main]

use chaff::{Config, Engine, Envelope};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&Config::default()).expect("default engine"))
}

fuzz_target!(|data: &[u8]| {
    let verdict = engine().scan(data, &Envelope::default());
    assert!(verdict.score.is_finite());
    for hit in &verdict.hits {
        for loc in &hit.locations {
            assert!(!loc.excerpt.contains('\n'));
        }
    }
});
