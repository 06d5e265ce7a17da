//! The quarantine store's speed (a benchmark, not a timed assertion).
//!
//! 1. Keeping a 50 KB message: compressing it, and its durable group commit
//!    through the keeper, alone (criterion) and with 16 threads keeping messages
//!    at once (p50/p99 printed), against what one fsync costs on this disk.
//! 2. The list with 100,000 entries in the store (filled once, in a temporary
//!    directory): the first page of 50 filtered by recipient (the issue asks for
//!    at most 50 ms), the next page, a whole domain, the newest 50 unfiltered, and
//!    a subject search that matches nothing (the worst case: every summary read).
//! 3. The admin API's dashboard top lists (`GET /api/stats`: top keywords over
//!    10,000 scan records, the default `[state] history`, and top senders over
//!    every entry of the last 7 days), computed once a minute by the service:
//!    printed, the best of three.
//!
//! Run: `cargo bench -p chaff-milter --bench quarantine`. `CHAFF_BENCH_ENTRIES`
//! changes the 100,000; `CHAFF_BENCH_DIR` puts the store on another disk.

use chaff::{Action, Hit, Reason, Verdict};
use chaff_milter::http::api::stats::{MAX_EXAMINED, compute_tops};
use chaff_milter::quarantine::{
    Filter, Keeper, KeeperLimits, NewEntry, ScanRecord, StateStore, StoredEnvelope, Told, compress,
};
use criterion::Criterion;
use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Recipients the entries are spread over: 100 entries each at 100,000.
const RECIPIENTS: u64 = 1000;

fn verdict(score: f64) -> Verdict {
    Verdict {
        action: Action::Quarantine,
        score,
        reply: None,
        reason: Reason::Score {
            quarantine: 9.0,
            reject: 15.0,
        },
        hits: (0..5)
            .map(|i| Hit {
                keyword: format!("关键词{i}"),
                category: "money".into(),
                weight: 2.0,
                count: 2,
                contribution: 3.0,
                locations: vec![],
            })
            .collect(),
        tokens: Vec::new(),
        truncated: false,
    }
}

/// Text of pseudo-random words (compresses as mail text does, not to nothing).
fn words(seed: u64, len: usize) -> String {
    const W: [&str; 16] = [
        "invoice", "发票", "meeting", "优惠", "free", "account", "报价", "project", "代开",
        "offer", "report", "会议", "shipping", "price", "联系", "today",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut x = seed | 1;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(W[(x % 16) as usize]);
        s.push(if x.is_multiple_of(11) { '\n' } else { ' ' });
    }
    s
}

fn message(i: u64, body: usize) -> Vec<u8> {
    format!(
        "From: sender{}@bulk{}.test\r\nTo: user{}@corp.test\r\nSubject: offer number {i}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{}",
        i % 5000,
        i % 50,
        i % RECIPIENTS,
        words(i, body)
    )
    .into_bytes()
}

fn entry(i: u64, time_ms: u64, body: usize) -> NewEntry {
    let raw = message(i, body);
    NewEntry::new(
        time_ms,
        "mx.bench",
        StoredEnvelope {
            sender: format!("sender{}@bulk{}.test", i % 5000, i % 50),
            recipients: vec![
                format!("user{}@corp.test", i % RECIPIENTS),
                format!("list{}@corp.test", i % 7),
            ],
            client_addr: Some("192.0.2.1".into()),
            queue_id: Some(format!("Q{i:08}")),
            ..StoredEnvelope::default()
        },
        &verdict(9.0 + (i % 600) as f64 / 100.0),
        Told::Discard,
        &raw,
    )
    .expect("entry")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What one `fdatasync` of a small write costs here: (p50, p99) in ms.
fn fsync_cost(dir: &std::path::Path) -> (f64, f64) {
    let mut f = std::fs::File::create(dir.join("fsync.probe")).unwrap();
    let block = vec![0x5au8; 4096];
    let mut t = Vec::new();
    for _ in 0..300 {
        f.write_all(&block).unwrap();
        let s = Instant::now();
        f.sync_data().unwrap();
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    (percentile(&t, 0.5), percentile(&t, 0.99))
}

fn main() {
    let n: u64 = std::env::var("CHAFF_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = match std::env::var("CHAFF_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    // What a sync costs before this benchmark writes anything (the disk is shared
    // with whatever else the machine runs: the figure varies with that).
    let (p50, p99) = fsync_cost(dir.path());
    println!(
        "fdatasync of a 4 KiB write on this disk, at the start: p50 {p50:.3} ms, p99 {p99:.3} ms"
    );
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    let start_ms = 1_700_000_000_000u64;
    // Keeping a 50 KB message, in a store of its own, before the list's store is
    // filled: on this VM a long burst of writes (the fill writes some 300 MB)
    // leaves the disk's syncs slow for minutes after.
    let big = message(7, 50_000);
    let kstore = Arc::new(StateStore::open(&dir.path().join("keep.redb")).unwrap());
    let keeper = Arc::new(
        Keeper::start(
            Arc::clone(&kstore),
            KeeperLimits {
                history: 10_000,
                max_age: Duration::from_secs(1 << 40),
                max_bytes: u64::MAX,
            },
        )
        .unwrap(),
    );
    {
        let mut g = c.benchmark_group("keep a 50 KB message");
        g.bench_function("compress (zstd level 3)", |b| {
            b.iter(|| compress(black_box(&big)).unwrap())
        });
        let mut i = 0u64;
        g.bench_function("durable commit through the keeper, alone", |b| {
            b.iter(|| {
                i += 1;
                keeper
                    .keep_blocking(entry(i, start_ms + i, 50_000))
                    .unwrap()
            })
        });
        g.finish();
    }
    // Under concurrency: 16 threads keep 50 KB messages as fast as the store
    // takes them; each latency is compressing plus waiting for the commit.
    let threads = 16;
    let per = 100;
    let t = Instant::now();
    let lat: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|th| {
                let keeper = Arc::clone(&keeper);
                s.spawn(move || {
                    (0..per)
                        .map(|k| {
                            let i = 1_000_000 + th * per + k;
                            let started = Instant::now();
                            let e = entry(i, start_ms + 2_000_000 + i, 50_000);
                            keeper.keep_blocking(e).unwrap();
                            started.elapsed().as_secs_f64() * 1e3
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let rate = lat.len() as f64 / t.elapsed().as_secs_f64();
    let mut lat = lat;
    lat.sort_by(f64::total_cmp);
    let stats = keeper.stats();
    println!(
        "keep a 50 KB message, {threads} threads at once: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         ({rate:.0} messages/s, {:.1} messages per commit)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        stats.kept as f64 / stats.commits.max(1) as f64
    );
    let (p50, p99) = fsync_cost(dir.path());
    println!(
        "fdatasync of a 4 KiB write on this disk, after keeping: p50 {p50:.3} ms, p99 {p99:.3} ms"
    );
    keeper.shutdown();
    drop(keeper);
    drop(kstore);
    let store = Arc::new(StateStore::open(&dir.path().join("state.redb")).unwrap());
    let t = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let batch: Vec<NewEntry> = (chunk * 1000..((chunk + 1) * 1000).min(n))
            .map(|i| entry(i, start_ms + i * 1000, 2000))
            .collect();
        store.put_batch(&batch).unwrap();
    }
    let totals = store.totals().unwrap();
    println!(
        "filled {} entries ({:.0} MB of compressed messages, file {:.0} MB) in {:.1} s",
        totals.entries,
        totals.bytes as f64 / 1e6,
        std::fs::metadata(store.path()).map_or(0, |m| m.len()) as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let now = start_ms / 1000 + n;
    let by_rcpt = Filter {
        rcpt: Some("user123@corp.test".into()),
        ..Filter::default()
    };
    let first = store.list(&by_rcpt, 50, None, now).unwrap();
    assert_eq!(
        first.entries.len(),
        50.min(n as usize / RECIPIENTS as usize)
    );
    {
        let mut g = c.benchmark_group(format!("list, {n} entries"));
        g.bench_function("first page (50) by recipient", |b| {
            b.iter(|| store.list(black_box(&by_rcpt), 50, None, now).unwrap())
        });
        g.bench_function("second page (50) by recipient", |b| {
            b.iter(|| {
                store
                    .list(black_box(&by_rcpt), 50, first.next, now)
                    .unwrap()
            })
        });
        let domain = Filter {
            rcpt: Some("corp.test".into()),
            ..Filter::default()
        };
        g.bench_function("first page (50) by recipient domain", |b| {
            b.iter(|| store.list(black_box(&domain), 50, None, now).unwrap())
        });
        g.bench_function("first page (50), no filter", |b| {
            b.iter(|| {
                store
                    .list(black_box(&Filter::default()), 50, None, now)
                    .unwrap()
            })
        });
        let nothing = Filter {
            subject: Some("no such subject".into()),
            ..Filter::default()
        };
        g.sample_size(10);
        g.bench_function(
            "subject search matching nothing (reads every summary)",
            |b| b.iter(|| store.list(black_box(&nothing), 50, None, now).unwrap()),
        );
        g.finish();
    }

    let records: Vec<ScanRecord> = (0..10_000u64)
        .map(|i| ScanRecord {
            time: now - 10_000 + i,
            queue_id: Some(format!("Q{i}")),
            sender: format!("s{}@spam.test", i % 500),
            recipients: vec![format!("user{}@corp.test", i % RECIPIENTS)],
            recipient_count: 1,
            client_addr: None,
            helo: None,
            auth_user: None,
            action: "quarantine".into(),
            score: Some(10.0),
            hits: (0..5)
                .map(|k| (format!("关键词{}", (i + k) % 40), 1))
                .collect(),
            size: 2000,
            entry: None,
        })
        .collect();
    store
        .record_scans(&records, &Default::default(), 10_000, now)
        .unwrap();
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            let tops =
                compute_tops(&store, now, now.saturating_sub(7 * 86_400), MAX_EXAMINED).unwrap();
            black_box(&tops);
            (t.elapsed(), tops.entries_examined, tops.history_examined)
        })
        .min()
        .unwrap();
    println!(
        "dashboard top lists: {:.0} ms ({} entries, {} scan records read)",
        best.0.as_secs_f64() * 1e3,
        best.1,
        best.2
    );

    c.final_summary();
}
