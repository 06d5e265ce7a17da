//! Criterion benchmarks: each pipeline stage and the whole scan, per message.
//!
//! Input: the project's own corpus (`corpus/`), and when it is present beside the
//! project, a sample of the real Chinese corpus (`../shared/corpus/trec06c-dev`),
//! which is what throughput targets are measured on.

use chaff::decode::decode;
use chaff::keywords::KeywordSet;
use chaff::matching::Matcher;
use chaff::normalise::{Normalised, normalise_into};
use chaff::parse::Parser;
use chaff::{Config, Engine, Envelope};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod common;

/// The benchmark sets, messages only.
fn messages() -> Vec<(String, Vec<Vec<u8>>)> {
    common::sets()
        .into_iter()
        .map(|(name, msgs)| (name, msgs.into_iter().map(|(_, raw)| raw).collect()))
        .collect()
}

fn stages(c: &mut Criterion) {
    let engine = Engine::new(&Config::default()).expect("engine");
    let parser = Parser::default();
    let keywords = KeywordSet::embedded();
    let matcher = Matcher::new(&keywords).expect("matcher");
    let env = Envelope::default();
    for (name, msgs) in messages() {
        let bytes: u64 = msgs.iter().map(|m| m.len() as u64).sum();
        let decoded: Vec<_> = msgs.iter().map(|m| decode(&parser.parse(m))).collect();
        let mut normalised_texts = Vec::new();
        let mut norm = Normalised::default();
        for d in &decoded {
            for (_, t) in d.all_texts() {
                normalise_into(t, &mut norm);
                normalised_texts.push(norm.text.clone());
            }
        }
        let text_bytes: u64 = decoded
            .iter()
            .flat_map(|d| d.all_texts())
            .map(|(_, t)| t.len() as u64)
            .sum();

        let mut g = c.benchmark_group(format!("stages/{name}"));
        g.sample_size(20);
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("1-parse", |b| {
            b.iter(|| {
                msgs.iter()
                    .map(|m| parser.parse(black_box(m)).message.is_some() as usize)
                    .sum::<usize>()
            })
        });
        g.bench_function("1+2-parse-decode", |b| {
            b.iter(|| {
                msgs.iter()
                    .map(|m| decode(&parser.parse(black_box(m))).texts.len())
                    .sum::<usize>()
            })
        });
        g.throughput(Throughput::Bytes(text_bytes));
        g.bench_function("3-normalise", |b| {
            let mut out = Normalised::default();
            b.iter(|| {
                for d in &decoded {
                    for (_, t) in d.all_texts() {
                        normalise_into(black_box(t), &mut out);
                    }
                }
            })
        });
        g.bench_function("4-match", |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                for t in &normalised_texts {
                    matcher.find_into(black_box(t), &mut out);
                }
                out.len()
            })
        });
        g.bench_function("3-5-normalise-match-segment", |b| {
            b.iter(|| {
                decoded
                    .iter()
                    .map(|d| engine.find(black_box(d)).len())
                    .sum::<usize>()
            })
        });
        g.throughput(Throughput::Elements(msgs.len() as u64));
        g.bench_function("end-to-end-scan", |b| {
            b.iter(|| {
                msgs.iter()
                    .map(|m| engine.scan(black_box(m), &env).score)
                    .sum::<f64>()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, stages);
criterion_main!(benches);
