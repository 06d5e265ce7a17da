//! Fuzz the bounce explainer (DSN fields, free-text reports, Chinese pages) on
//! arbitrary bytes: it must never panic, and nothing it returns from the bounce
//! may carry a control character.
#![no_main]

use chaff::bounce::{Explainer, KnowledgeBase, Lang};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static KB: OnceLock<KnowledgeBase> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let kb = KB.get_or_init(KnowledgeBase::embedded);
    let e = Explainer::new(kb, Lang::Zh).explain(data);
    assert!(e.bounce || e.recipients.is_empty());
    for r in &e.recipients {
        for s in [r.address.as_deref(), Some(r.diagnostic.as_str()), r.remote_mta.as_deref()]
            .into_iter()
            .flatten()
        {
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
    }
});
