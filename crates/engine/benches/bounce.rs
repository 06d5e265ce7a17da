//! Bounces explained per second over the hand-written and Postfix-written samples
//! of crates/engine/tests/bounces/ (every format, one not-a-bounce), one thread.

use std::hint::black_box;

use chaff::bounce::{Explainer, KnowledgeBase, Lang};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn samples() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bounces");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/bounces")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("sample"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let samples = samples();
    let kb = KnowledgeBase::embedded();
    let mut group = c.benchmark_group("bounce");
    // One iteration explains every sample once: elements/s is bounces/s.
    group.throughput(Throughput::Elements(samples.len() as u64));
    for lang in [Lang::En, Lang::Zh] {
        let explainer = Explainer::new(&kb, lang);
        group.bench_function(format!("explain_all_samples_{lang:?}"), |b| {
            b.iter(|| {
                for raw in &samples {
                    black_box(explainer.explain(black_box(raw)));
                }
            })
        });
    }
    group.bench_function("knowledge_base_embedded", |b| {
        b.iter(|| black_box(KnowledgeBase::embedded().causes.len()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
