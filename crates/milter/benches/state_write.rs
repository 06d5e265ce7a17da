//! What the state store's writes cost in CPU and wall time (a benchmark, not a
//! timed assertion): the per-scan history rows, a durable redb commit of 1, 4
//! and 64 kept messages with and without history riding along, an append and
//! `fdatasync` of a 3 KB record (what the keep log does per group), compressing a
//! message with a new and a reused zstd context, and the read the keeper makes
//! after a commit. Printed as medians of repeated runs, CPU time of the calling
//! thread.
//!
//! Run: `cargo bench -p chaff-milter --bench state_write`. `CHAFF_BENCH_DIR`
//! puts the store on another disk.

use chaff::{Action, Hit, Reason, Verdict};
use chaff_milter::quarantine::{NewEntry, ScanRecord, StateStore, StoredEnvelope, Told};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn thread_cpu() -> Duration {
    // SAFETY: `clock_gettime` only writes the struct it is given.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn record(i: u64, time: u64) -> ScanRecord {
    ScanRecord {
        time,
        queue_id: Some(format!("4Q{i:08X}")),
        sender: format!("sender{}@example.com", i % 5000),
        recipients: vec![format!("user{}@corp.example", i % 1000)],
        recipient_count: 1,
        client_addr: Some("192.0.2.17".into()),
        helo: Some("mail.example.net".into()),
        auth_user: None,
        action: if i.is_multiple_of(9) {
            "quarantine"
        } else {
            "deliver"
        }
        .into(),
        score: Some(3.25),
        hits: (0..(i % 4)).map(|k| (format!("关键词{k}"), 2)).collect(),
        size: 2100,
        entry: None,
    }
}

fn entry(i: u64, time_ms: u64) -> NewEntry {
    let body: String = (0..40)
        .map(|k| {
            format!(
                "line {k} of message {i}: 优惠 free offer 发票 {}\n",
                i * 31 + k
            )
        })
        .collect();
    let raw = format!(
        "From: sender{i}@bulk.test\r\nTo: user{i}@corp.test\r\nSubject: offer {i}\r\n\r\n{body}"
    );
    let verdict = Verdict {
        action: Action::Quarantine,
        score: 9.5,
        reply: None,
        reason: Reason::Score {
            quarantine: 9.0,
            reject: 15.0,
        },
        hits: vec![Hit {
            keyword: "发票".into(),
            category: "money".into(),
            weight: 2.0,
            count: 2,
            contribution: 3.0,
            locations: vec![],
        }],
        tokens: Vec::new(),
        truncated: false,
    };
    NewEntry::new(
        time_ms,
        "mx.bench",
        StoredEnvelope {
            sender: format!("sender{i}@bulk.test"),
            recipients: vec![format!("user{i}@corp.test")],
            client_addr: Some("192.0.2.1".into()),
            queue_id: Some(format!("Q{i:08}")),
            ..StoredEnvelope::default()
        },
        &verdict,
        Told::Hold,
        raw.as_bytes(),
    )
    .expect("entry")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = match std::env::var("CHAFF_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d),
        Err(_) => tempfile::tempdir(),
    }
    .expect("tempdir");
    let store = StateStore::open(&dir.path().join("state.redb")).expect("open");
    let now = chaff_milter::quarantine::now_ms() / 1000;
    let bound = 10_000u64;
    let mut next = 0u64;
    let mut batch = |n: u64| -> Vec<ScanRecord> {
        let v = (next..next + n).map(|i| record(i, now)).collect();
        next += n;
        v
    };
    let counts = |recs: &[ScanRecord]| {
        let mut c: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
        for r in recs {
            *c.entry(r.time / 3600)
                .or_default()
                .entry(r.action.clone())
                .or_insert(0) += 1;
        }
        c
    };
    // Fill the history to its bound, so every later row also drops one.
    for _ in 0..10 {
        let recs = batch(1000);
        store
            .record_scans(&recs, &counts(&recs), bound, now)
            .expect("fill");
    }
    for size in [1000u64, 10_000] {
        let mut cpu = Vec::new();
        let mut wall = Vec::new();
        for _ in 0..7 {
            let recs = batch(size);
            let c = counts(&recs);
            let (t, c0) = (Instant::now(), thread_cpu());
            store.record_scans(&recs, &c, bound, now).expect("write");
            cpu.push((thread_cpu() - c0).as_secs_f64() * 1e6 / size as f64);
            wall.push(t.elapsed().as_secs_f64() * 1e6 / size as f64);
        }
        println!(
            "history: {size} records in one write, bound {bound}: CPU {:.2} µs a record, wall {:.2} µs",
            median(cpu),
            median(wall)
        );
    }
    let json: Vec<f64> = (0..7)
        .map(|_| {
            let recs = batch(10_000);
            let c0 = thread_cpu();
            let mut n = 0;
            for r in &recs {
                n += serde_json::to_vec(r).expect("json").len();
            }
            std::hint::black_box(n);
            (thread_cpu() - c0).as_secs_f64() * 1e6 / 10_000.0
        })
        .collect();
    println!("  of which JSON encoding: {:.2} µs a record", median(json));
    for (entries, records) in [(1usize, 0u64), (4, 0), (64, 0), (1, 100), (1, 256)] {
        let mut cpu = Vec::new();
        let mut wall = Vec::new();
        for k in 0..(if entries > 8 { 40 } else { 200 }) {
            let es: Vec<NewEntry> = (0..entries as u64)
                .map(|j| entry(k * 10 + j, now * 1000))
                .collect();
            let recs = batch(records);
            let c = counts(&recs);
            let (t, c0) = (Instant::now(), thread_cpu());
            store.commit(&es, &recs, &c, bound, now).expect("commit");
            cpu.push((thread_cpu() - c0).as_secs_f64() * 1e3);
            wall.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let p99 = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() * 99 / 100]
        };
        println!(
            "commit of {entries} kept message(s) of ~2.5 KB with {records} history records: \
             CPU p50 {:.3} ms, wall p50 {:.3} ms, p99 {:.3} ms",
            median(cpu.clone()),
            median(wall.clone()),
            p99(wall)
        );
    }
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(dir.path().join("append.probe")).expect("probe");
        let record = vec![0x5au8; 3000];
        let (mut cpu, mut wall) = (Vec::new(), Vec::new());
        for k in 0..300u64 {
            let (t, c0) = (Instant::now(), thread_cpu());
            f.write_all_at(&record, k * 3000).expect("write");
            f.sync_data().expect("sync");
            cpu.push((thread_cpu() - c0).as_secs_f64() * 1e3);
            wall.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "append 3 KB + fdatasync (the keep log): CPU p50 {:.3} ms, wall p50 {:.3} ms",
            median(cpu),
            median(wall)
        );
    }
    // Mail-like text to compress: the project's README (prose, tables, Chinese).
    let corpus_msg =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
            .expect("README");
    for size in [3000usize, 50_000] {
        let raw = &corpus_msg.as_bytes()[..size.min(corpus_msg.len())];
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut ctx = zstd::bulk::Compressor::new(3).unwrap();
        for _ in 0..200 {
            let c0 = thread_cpu();
            std::hint::black_box(zstd::bulk::compress(raw, 3).unwrap());
            a.push((thread_cpu() - c0).as_secs_f64() * 1e6);
            let c0 = thread_cpu();
            std::hint::black_box(ctx.compress(raw).unwrap());
            b.push((thread_cpu() - c0).as_secs_f64() * 1e6);
        }
        println!(
            "compress {} bytes: new context {:.1} µs, reused context {:.1} µs",
            raw.len(),
            median(a),
            median(b)
        );
    }
    let mut cpu = Vec::new();
    for _ in 0..1000 {
        let c0 = thread_cpu();
        std::hint::black_box(store.totals().expect("totals"));
        cpu.push((thread_cpu() - c0).as_secs_f64() * 1e6);
    }
    println!(
        "totals() (a read transaction): CPU p50 {:.1} µs",
        median(cpu)
    );
}
