//! Criterion benchmarks of the classifier, per message: feature extraction alone,
//! scoring alone, and the whole scan with and without a model (the difference is
//! what the classifier costs a scanner), plus one training pass.
//!
//! Input: the project's own corpus (`corpus/`), and when it is present beside the
//! project, the first 2,000 messages of `../shared/corpus/trec06c-dev` (the
//! throughput target is measured on that corpus). The model is trained on the same
//! messages: a benchmark of speed, not accuracy.

use chaff::classify::{ClassifierConfig, Field, with_extractor};
use chaff::normalise::{Normalised, normalise_into};
use chaff::{Config, Engine, Envelope};
use chaff_train::{Example, Trainer, prepare};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod common;
use common::sets;

fn classify(c: &mut Criterion) {
    let plain = Engine::new(&Config::default()).expect("engine");
    let cfg = ClassifierConfig::default();
    let features = cfg.feature_config();
    let env = Envelope::default();
    for (name, msgs) in sets() {
        if msgs.is_empty() {
            continue;
        }
        let examples: Vec<Example> = msgs
            .iter()
            .map(|(spam, raw)| prepare(&plain, &features, raw, *spam))
            .collect();
        let mut trainer = Trainer::new(&cfg);
        examples.iter().cloned().for_each(|e| trainer.add(e));
        let (model, _) = trainer.finish(plain.keywords());
        let with_model = Engine::builder()
            .model(model.clone())
            .build()
            .expect("engine");
        // The normalised texts of every message, as the engine hands them over.
        let mut norm = Normalised::default();
        let texts: Vec<Vec<(Field, String)>> = msgs
            .iter()
            .map(|(_, raw)| {
                let d = plain.decode(raw);
                d.all_texts()
                    .map(|(src, t)| {
                        normalise_into(t, &mut norm);
                        let field = if src == chaff::TextSource::Subject {
                            Field::Subject
                        } else {
                            Field::Body
                        };
                        (field, norm.text.clone())
                    })
                    .collect()
            })
            .collect();

        // Warm up both engines (the jieba dictionary loads in the background).
        for (_, raw) in &msgs {
            black_box(plain.scan(raw, &env));
            black_box(with_model.scan(raw, &env));
        }
        let mut g = c.benchmark_group(format!("classify/{name}"));
        g.sample_size(20);
        g.throughput(Throughput::Elements(msgs.len() as u64));
        // Extracts every message's features, then hands the extractor to `then`.
        let each = |then: &dyn Fn(&mut chaff::classify::features::Extractor)| {
            for ((_, raw), t) in msgs.iter().zip(&texts) {
                with_extractor(&features, |ex| {
                    for (field, text) in t {
                        ex.add_text(*field, text);
                    }
                    chaff::classify::add_headers(ex, raw, None);
                    then(ex);
                });
            }
        };
        g.bench_function("features", |b| {
            b.iter(|| {
                each(&|ex| {
                    black_box(ex.features().len());
                })
            })
        });
        g.bench_function("features+classify", |b| {
            b.iter(|| {
                each(&|ex| {
                    black_box(model.classify(ex, true).points);
                })
            })
        });
        g.bench_function("score-only", |b| {
            b.iter(|| {
                for e in &examples {
                    black_box(model.logit_buckets(&e.feats));
                }
            })
        });
        g.bench_function("scan-without-model", |b| {
            b.iter(|| {
                for (_, raw) in &msgs {
                    black_box(plain.scan(raw, &env).score);
                }
            })
        });
        g.bench_function("scan-with-model", |b| {
            b.iter(|| {
                for (_, raw) in &msgs {
                    black_box(with_model.scan(raw, &env).score);
                }
            })
        });
        g.bench_function("train-pass", |b| {
            b.iter(|| {
                let mut m = chaff::classify::Model::new(features.clone(), cfg.learn_params());
                for e in &examples {
                    m.update(&e.feats, e.spam);
                }
                black_box(m.meta.bias)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, classify);
criterion_main!(benches);
