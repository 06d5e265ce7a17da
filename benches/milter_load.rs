//! Load benchmark of the milter service (a benchmark, not a timed assertion).
//!
//! Starts the release `chaff milter` binary, opens 64 concurrent milter connections
//! speaking as Postfix does, and sends 20,000 messages from
//! `../shared/corpus/trec06c-dev` (first entries of its `index`), plus one message of
//! about 50 KB (bodies of corpus messages joined) after every 100, to measure large
//! messages under load. Then checks that every message got exactly one answer and
//! one log line, that the service counted each once, and that every answer equals
//! `Engine::scan` on the same message as the milter receives it from Postfix (the
//! action, and the score for mail that gets headers); differences between that and
//! scanning the file as it stands (Postfix ends the header block at a line that is
//! not a header) are counted and reported. Prints messages/s, the client-side round
//! trip at end of message and the server's scan time (p50/p99, also for the 50 KB
//! messages), the service's resident memory, and `Engine::scan` on 2 threads for
//! comparison with `chaff score --jobs 2`.
//!
//! The client sends pre-encoded packets (what `Client::message` would send) so that
//! its own work takes as little of the two cores as possible.
//!
//! Run: `cargo bench --bench milter_load` (environment: `CHAFF_LOAD_MESSAGES`,
//! `CHAFF_LOAD_CONNECTIONS`, `CHAFF_CORPUS` to change the defaults).

use chaff::milter::client::{self, Answer, CHUNK, Client};
use chaff::milter::protocol::{Command as Packet, cmd, proto};
use chaff::{Action, Config, Engine, Envelope as ScanEnvelope};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `VmHWM` and `VmRSS` of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (get("VmHWM:"), get("VmRSS:"))
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name;
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

struct Sent {
    action: &'static str,
    score: Option<String>,
    rtt: Duration,
}

/// One message as the pre-encoded milter packets Postfix would send: macros, MAIL,
/// RCPT, DATA, headers, end of headers, body chunks, end of message, then ABORT (the
/// end of the transaction). chaff asks for no answer before end of message, so
/// Postfix streams all of it and waits once.
fn prepare(raw: &[u8], qid: &str) -> Vec<u8> {
    let mut wire = Vec::with_capacity(raw.len() + 512);
    Packet::Macro {
        stage: cmd::MAIL,
        pairs: vec![(b"i", qid.as_bytes())],
    }
    .encode(&mut wire);
    Packet::Mail(vec![b"<sender@example.com>"]).encode(&mut wire);
    Packet::Rcpt(vec![b"<rcpt@example.org>"]).encode(&mut wire);
    Packet::Data.encode(&mut wire);
    let (headers, body) = client::split_message(raw);
    for (name, value) in &headers {
        Packet::Header { name, value }.encode(&mut wire);
    }
    Packet::Eoh.encode(&mut wire);
    for chunk in body.chunks(CHUNK) {
        Packet::Body(chunk).encode(&mut wire);
    }
    Packet::Eob(b"").encode(&mut wire);
    Packet::Abort.encode(&mut wire);
    wire
}

/// Sends one prepared message; returns the answer and the time from its first
/// packet to the final answer.
fn exchange(c: &mut Client, wire: &[u8]) -> std::io::Result<(Answer, Duration)> {
    let t = Instant::now();
    c.send_raw(wire)?;
    let mut responses = Vec::new();
    loop {
        let r = c.read_response()?;
        let fin = r.is_final();
        responses.push(r);
        if fin {
            return Ok((
                Answer {
                    responses,
                    stage: "BODYEOB",
                },
                t.elapsed(),
            ));
        }
    }
}

fn main() {
    let n = env_or("CHAFF_LOAD_MESSAGES", 20_000);
    let conns = env_or("CHAFF_LOAD_CONNECTIONS", 64);
    let corpus = std::env::var("CHAFF_CORPUS").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/trec06c-dev"),
        PathBuf::from,
    );
    let index = match std::fs::read_to_string(corpus.join("index")) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "SKIPPED milter_load: {}: {e}",
                corpus.join("index").display()
            );
            return;
        }
    };
    let paths: Vec<PathBuf> = index
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .take(n)
        .map(|p| corpus.join(p))
        .collect();
    let corpus_messages: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("read corpus message"))
        .collect();
    // After every 100 corpus messages, one of about 50 KB: the headers of one
    // message and the bodies of the following ones.
    let mut messages = Vec::with_capacity(corpus_messages.len() * 101 / 100);
    let mut names = Vec::with_capacity(messages.capacity());
    for (i, m) in corpus_messages.iter().enumerate() {
        messages.push(m.clone());
        names.push(paths[i].display().to_string());
        if i % 100 == 99 {
            let mut big = m.clone();
            let mut j = i;
            while big.len() < 50_000 {
                j = (j + 1) % corpus_messages.len();
                let other = &corpus_messages[j];
                let body = other
                    .windows(2)
                    .position(|w| w == b"\n\n")
                    .map_or(&other[..], |k| &other[k + 2..]);
                big.extend_from_slice(body);
            }
            messages.push(big);
            names.push(format!("{} + bodies (50 KB)", paths[i].display()));
        }
    }
    let n = messages.len();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    println!(
        "milter load: {n} messages ({} from the corpus, {} of ~50 KB; {:.1} MB) from {}, {conns} connections",
        corpus_messages.len(),
        n - corpus_messages.len(),
        bytes as f64 / 1e6,
        corpus.display()
    );
    drop(corpus_messages);

    // What the engine says directly, and how fast it says it on 2 threads.
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("chaff.toml");
    std::fs::write(
        &config_path,
        format!(
            "[accounts]\ndb = {:?}\n",
            dir.path().join("accounts.redb").display().to_string()
        ),
    )
    .unwrap();
    let config = Config::load(&config_path).expect("config");
    let engine = Engine::new(&config).expect("engine");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let scan = |m: &[u8]| {
        let v = engine.scan(m, &ScanEnvelope::default());
        (v.action, v.score)
    };
    // Warm up, then time.
    pool.install(|| {
        messages.par_iter().take(2000).for_each(|m| {
            scan(m);
        })
    });
    let t = Instant::now();
    let cpu0 = cpu_seconds("self");
    let as_files: Vec<(Action, f64)> =
        pool.install(|| messages.par_iter().map(|m| scan(m)).collect());
    let direct_rate = n as f64 / t.elapsed().as_secs_f64();
    let direct_cpu = (cpu_seconds("self") - cpu0) / n as f64;
    println!("Engine::scan, 2 threads: {direct_rate:.0} messages/s");
    let expected: Vec<(Action, f64)> = pool.install(|| {
        messages
            .par_iter()
            .map(|m| scan(&client::as_milter_sees(m)))
            .collect()
    });
    let prepared: Vec<Vec<u8>> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| prepare(m, &format!("L{i:06}")))
        .collect();

    // `chaff score --jobs 2` on the same messages, as files. Both it and the service
    // run a copy of the binary, so that another build in the same target directory
    // cannot swap it under the benchmark.
    let exe = dir.path().join("chaff");
    std::fs::copy(env!("CARGO_BIN_EXE_chaff"), &exe).expect("copy the chaff binary");
    let files = dir.path().join("messages");
    std::fs::create_dir(&files).unwrap();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(files.join(format!("{i:06}.eml")), m).unwrap();
    }
    let t = Instant::now();
    let status = Command::new(&exe)
        .args(["score", "--jobs", "2", "--format", "json", "--config"])
        .arg(&config_path)
        .arg(&files)
        .stdout(Stdio::null())
        .status()
        .expect("chaff score");
    let score_rate = n as f64 / t.elapsed().as_secs_f64();
    assert!(status.success(), "chaff score failed");
    println!("chaff score --jobs 2: {score_rate:.0} messages/s");

    // The service, as its own process.
    let port = free_port();
    let metrics_port = free_port();
    let log_path = dir.path().join("milter.log");
    let mut child = Command::new(&exe)
        .arg("milter")
        .arg("--config")
        .arg(&config_path)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{port}"))
        .arg("--metrics")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start chaff milter");
    let addr = format!("inet:127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, idle_rss) = memory(child.id());
    let server_pid = child.id().to_string();
    let server_cpu0 = cpu_seconds(&server_pid);
    let client_cpu0 = cpu_seconds("self");

    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Sent>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let doubles = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for c in 0..conns {
            let (next, results, prepared, doubles, addr) =
                (&next, &results, &prepared, &doubles, &addr);
            s.spawn(move || {
                let mut client = Client::connect(addr).expect("connect");
                let flags = client.negotiated().protocol;
                let pipelined = proto::NR_MAIL
                    | proto::NR_RCPT
                    | proto::NR_DATA
                    | proto::NR_HDR
                    | proto::NR_EOH
                    | proto::NR_BODY;
                assert_eq!(
                    flags & pipelined,
                    pipelined,
                    "no-reply flags not negotiated"
                );
                assert!(flags & proto::HDR_LEADSPC != 0);
                client
                    .smtp_connect("client.test", &format!("192.0.2.{}", c % 250 + 1))
                    .expect("connect info");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= prepared.len() {
                        break;
                    }
                    let (a, rtt) = exchange(&mut client, &prepared[i]).expect("answer");
                    let sent = Sent {
                        action: a.action(),
                        score: a.header("X-Spam-Score").map(str::to_string),
                        rtt,
                    };
                    let mut slot = results[i].lock().unwrap();
                    if slot.is_some() {
                        doubles.fetch_add(1, Ordering::Relaxed);
                    }
                    *slot = Some(sent);
                }
                let _ = client.quit();
            });
        }
    });
    let elapsed = t.elapsed();
    let server_cpu = cpu_seconds(&server_pid) - server_cpu0;
    let client_cpu = cpu_seconds("self") - client_cpu0;
    let (peak_rss, rss) = memory(child.id());

    // Counted once each by the service?
    let page = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut p = String::new();
        s.read_to_string(&mut p).unwrap();
        p
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let counted: f64 = page
        .lines()
        .filter(|l| l.starts_with("chaff_milter_messages_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();

    // One log line per message, with its queue id and scan time.
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut seen = vec![0u32; n];
    let mut scan_us: Vec<f64> = Vec::with_capacity(n);
    let mut scan_us_50k: Vec<f64> = Vec::new();
    // The same, in CPU time of the scanning thread (wall time less waiting for a core).
    let mut cpu_us: Vec<f64> = Vec::with_capacity(n);
    let mut cpu_us_50k: Vec<f64> = Vec::new();
    for line in log.lines().filter(|l| l.contains(" message ")) {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(|v| v.trim_matches('"').to_string())
        };
        let Some(i) = field("queue_id=L").and_then(|q| q.parse::<usize>().ok()) else {
            continue;
        };
        if i < n {
            seen[i] += 1;
            if let Some(us) = field("scan_us=").and_then(|v| v.parse::<f64>().ok()) {
                scan_us.push(us);
                if messages[i].len() >= 50_000 {
                    scan_us_50k.push(us);
                }
            }
            if let Some(us) = field("scan_cpu_us=").and_then(|v| v.parse::<f64>().ok()) {
                cpu_us.push(us);
                if messages[i].len() >= 50_000 {
                    cpu_us_50k.push(us);
                }
            }
        }
    }

    let mut lost = 0;
    let mut mismatched = Vec::new();
    let differs_as_file = (0..n)
        .filter(|&i| {
            as_files[i].0 != expected[i].0
                || format!("{:.2}", as_files[i].1) != format!("{:.2}", expected[i].1)
        })
        .count();
    let mut rtts = Vec::with_capacity(n);
    let mut rtts_50k = Vec::new();
    for (i, slot) in results.iter().enumerate() {
        let slot = slot.lock().unwrap();
        let Some(sent) = slot.as_ref() else {
            lost += 1;
            continue;
        };
        rtts.push(sent.rtt.as_secs_f64() * 1e3);
        if messages[i].len() >= 50_000 {
            rtts_50k.push(sent.rtt.as_secs_f64() * 1e3);
        }
        let (action, score) = expected[i];
        let want_score = format!("{score:.2}");
        let ok =
            sent.action == action.as_str() && sent.score.as_deref().is_none_or(|s| s == want_score);
        if !ok {
            mismatched.push(format!(
                "{}: milter {} {:?}, engine {} {want_score}",
                names[i], sent.action, sent.score, action
            ));
        }
    }
    for v in [
        &mut rtts,
        &mut rtts_50k,
        &mut scan_us,
        &mut scan_us_50k,
        &mut cpu_us,
        &mut cpu_us_50k,
    ] {
        v.sort_by(f64::total_cmp);
    }
    let logged_once = seen.iter().filter(|&&c| c == 1).count();
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "milter: {n} messages in {:.2} s = {rate:.0} messages/s ({:.0} % of chaff score --jobs 2, {:.0} % of Engine::scan on 2 threads)",
        elapsed.as_secs_f64(),
        100.0 * rate / score_rate,
        100.0 * rate / direct_rate
    );
    println!(
        "message round trip, first packet to answer (client): p50 {:.2} ms, p99 {:.2} ms; messages >= 50 KB ({}): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
        rtts_50k.len(),
        percentile(&rtts_50k, 0.5),
        percentile(&rtts_50k, 0.99)
    );
    for (what, all, big) in [
        ("scan time", &scan_us, &scan_us_50k),
        ("scan CPU time of the scanning thread", &cpu_us, &cpu_us_50k),
    ] {
        println!(
            "{what} (server log): p50 {:.3} ms, p99 {:.3} ms; messages >= 50 KB: p50 {:.3} ms, p99 {:.3} ms",
            percentile(all, 0.5) / 1e3,
            percentile(all, 0.99) / 1e3,
            percentile(big, 0.5) / 1e3,
            percentile(big, 0.99) / 1e3
        );
    }
    println!(
        "CPU per message: service {:.0} µs (Engine::scan alone: {:.0} µs), load client {:.0} µs",
        server_cpu / n as f64 * 1e6,
        direct_cpu * 1e6,
        client_cpu / n as f64 * 1e6
    );
    println!(
        "service memory: {idle_rss:.0} MiB idle, {rss:.0} MiB after the run, peak (VmHWM) {peak_rss:.0} MiB"
    );
    println!(
        "answers: {} of {n}, lost {lost}, answered twice {}; logged once: {logged_once}; counted by the service: {counted}",
        n - lost,
        doubles.load(Ordering::Relaxed)
    );
    println!(
        "verdicts different from Engine::scan of what Postfix hands the milter: {}",
        mismatched.len()
    );
    println!(
        "(messages whose verdict as the milter receives them differs from scanning the file as it stands, \
         because Postfix ends the header block at a non-header line: {differs_as_file})"
    );
    for m in mismatched.iter().take(10) {
        println!("  {m}");
    }
    assert_eq!(lost, 0, "messages lost");
    assert_eq!(
        doubles.load(Ordering::Relaxed),
        0,
        "messages answered twice"
    );
    assert_eq!(logged_once, n, "messages not logged exactly once");
    assert_eq!(counted as usize, n, "service count differs");
    assert!(mismatched.is_empty(), "verdicts differ from Engine::scan");
}
