//! Load benchmark of the HTTP listener's `/checkv2` (a benchmark, not a timed
//! assertion).
//!
//! Starts the release `chaff milter` binary with its HTTP listener, opens 64
//! kept-alive HTTP/1.1 connections and posts the first 20,000 messages of
//! `../shared/corpus/trec06c-dev` to `/checkv2` as an Rspamd client does, then
//! checks that every message got exactly one answer whose action and score equal
//! `Engine::scan` of the same bytes (HTTP hands the message over as it stands,
//! unlike Postfix), and that the service counted each once.
//!
//! The comparison is `chaff score --jobs 2` on the same messages as files, after
//! one untimed run that warms the page cache. The machine is shared and drifts, so
//! `chaff score` and the service run in alternation, five rounds by default (a
//! fresh service each round), and the figures are medians: messages/s of each and
//! their ratio, the client's round trip (p50, p99), and CPU per message of the
//! service and of the load client. The load client drives all its connections
//! from one thread, with pre-encoded requests, to leave the two cores to the
//! service (as `milter_load` does).
//!
//! Run: `cargo bench --bench http_load`. Environment: `CHAFF_LOAD_MESSAGES`,
//! `CHAFF_LOAD_CONNECTIONS`, `CHAFF_LOAD_ROUNDS`, `CHAFF_CORPUS`, `CHAFF_LOAD_BIN`
//! (another build of `chaff`), `CHAFF_LOAD_MILTER` (extra lines for `[milter]`,
//! e.g. `network_threads = 1`).

use chaff::{Action, Config, Engine, Envelope};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::{KillOnDrop, children_cpu_seconds, cpu_seconds, env_or, free_port, percentile};

/// One message as the request an Rspamd client sends.
fn prepare(raw: &[u8], i: usize) -> Vec<u8> {
    let mut req = format!(
        "POST /checkv2 HTTP/1.1\r\nHost: chaff\r\nContent-Length: {}\r\nFrom: <sender@example.com>\r\n\
         Rcpt: <rcpt@example.org>\r\nIP: 192.0.2.{}\r\nQueue-Id: H{i:06}\r\n\r\n",
        raw.len(),
        i % 250 + 1
    )
    .into_bytes();
    req.extend_from_slice(raw);
    req
}

/// Reads one response from a kept-alive connection: (status, body).
async fn read_response(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                if stream.read_buf(buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Ok((status, body));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

struct Sent {
    action: String,
    score: f64,
    rtt: Duration,
}

struct Run {
    rate: f64,
    answers: Vec<Option<Sent>>,
    doubles: usize,
    counted: f64,
    server_cpu: f64,
    client_cpu: f64,
}

fn http_round(exe: &Path, config: &Path, dir: &Path, prepared: &[Vec<u8>], conns: usize) -> Run {
    let n = prepared.len();
    let http_port = free_port();
    let metrics_port = free_port();
    let mut child = KillOnDrop(
        Command::new(exe)
            .arg("milter")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{}", free_port()))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("milter.log")).unwrap())
            .spawn()
            .expect("start chaff milter"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let server_pid = child.0.id().to_string();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Sent>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let doubles = AtomicUsize::new(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    // Connections open before the clock starts.
    let streams: Vec<tokio::net::TcpStream> = rt.block_on(async {
        let mut v = Vec::with_capacity(conns);
        for _ in 0..conns {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", http_port))
                .await
                .expect("connect");
            s.set_nodelay(true).unwrap();
            v.push(s);
        }
        v
    });
    let server_cpu0 = cpu_seconds(&server_pid);
    let client_cpu0 = cpu_seconds("self");
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = FuturesUnordered::new();
        for mut stream in streams {
            let (next, results, doubles) = (&next, &results, &doubles);
            tasks.push(async move {
                let mut buf = Vec::with_capacity(8192);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let sent = Instant::now();
                    stream.write_all(&prepared[i]).await.expect("send");
                    let (status, body) =
                        read_response(&mut stream, &mut buf).await.expect("answer");
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                    let s = Sent {
                        action: v["action"].as_str().unwrap_or("?").to_string(),
                        score: v["score"].as_f64().unwrap_or(f64::NAN),
                        rtt: sent.elapsed(),
                    };
                    let mut slot = results[i].lock().unwrap();
                    if slot.is_some() {
                        doubles.fetch_add(1, Ordering::Relaxed);
                    }
                    *slot = Some(s);
                }
            });
        }
        while tasks.next().await.is_some() {}
    });
    let elapsed = t.elapsed();
    let server_cpu = cpu_seconds(&server_pid) - server_cpu0;
    let client_cpu = cpu_seconds("self") - client_cpu0;
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
        .arg(child.0.id().to_string())
        .status();
    let _ = child.0.wait();
    let counted = page
        .lines()
        .filter(|l| l.starts_with("chaff_milter_messages_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Run {
        rate: n as f64 / elapsed.as_secs_f64(),
        answers: results
            .into_iter()
            .map(|m| m.into_inner().unwrap())
            .collect(),
        doubles: doubles.load(Ordering::Relaxed),
        counted,
        server_cpu,
        client_cpu,
    }
}

fn rspamd_action(a: Action) -> &'static str {
    match a {
        Action::Deliver => "no action",
        Action::Quarantine => "add header",
        Action::Reject => "reject",
    }
}

fn main() {
    let n = env_or("CHAFF_LOAD_MESSAGES", 20_000);
    let rounds = env_or("CHAFF_LOAD_ROUNDS", 5).max(1);
    let conns = env_or("CHAFF_LOAD_CONNECTIONS", 64);
    let corpus = std::env::var("CHAFF_CORPUS").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/trec06c-dev"),
        PathBuf::from,
    );
    let index = match std::fs::read_to_string(corpus.join("index")) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED http_load: {}: {e}", corpus.join("index").display());
            return;
        }
    };
    let messages: Vec<Vec<u8>> = index
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .take(n)
        .map(|p| std::fs::read(corpus.join(p)).expect("read corpus message"))
        .collect();
    let n = messages.len();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    println!(
        "http load: {n} messages ({:.1} MB) from {}, {conns} connections to /checkv2",
        bytes as f64 / 1e6,
        corpus.display()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("chaff.toml");
    std::fs::write(
        &config_path,
        format!(
            "[accounts]\ndb = {:?}\n[milter]\n{}\n",
            dir.path().join("accounts.redb").display().to_string(),
            std::env::var("CHAFF_LOAD_MILTER").unwrap_or_default()
        ),
    )
    .unwrap();
    let config = Config::load(&config_path).expect("config");
    let engine = Engine::new(&config).expect("engine");
    let expected: Vec<(Action, f64)> = messages
        .iter()
        .map(|m| {
            let v = engine.scan(m, &Envelope::default());
            (v.action, v.score)
        })
        .collect();
    drop(engine);
    let prepared: Vec<Vec<u8>> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| prepare(m, i))
        .collect();

    let exe = dir.path().join("chaff");
    let bin =
        std::env::var("CHAFF_LOAD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_chaff").into());
    std::fs::copy(&bin, &exe).expect("copy the chaff binary");
    let files = dir.path().join("messages");
    std::fs::create_dir(&files).unwrap();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(files.join(format!("{i:06}.eml")), m).unwrap();
    }
    // Messages/s, and CPU seconds the run took.
    let score = || {
        let cpu0 = children_cpu_seconds();
        let t = Instant::now();
        let status = Command::new(&exe)
            .args(["score", "--jobs", "2", "--format", "json", "--config"])
            .arg(&config_path)
            .arg(&files)
            .stdout(Stdio::null())
            .status()
            .expect("chaff score");
        assert!(status.success(), "chaff score failed");
        (
            n as f64 / t.elapsed().as_secs_f64(),
            children_cpu_seconds() - cpu0,
        )
    };
    let _ = score();

    let mut score_rates = Vec::new();
    let mut score_cpus = Vec::new();
    let mut runs = Vec::new();
    for round in 1..=rounds {
        let (score_rate, score_cpu) = score();
        let run = http_round(&exe, &config_path, dir.path(), &prepared, conns);
        println!(
            "round {round}: chaff score --jobs 2 {score_rate:.0} messages/s ({:.0} µs of CPU a message); \
             /checkv2 {:.0} messages/s ({:.0} %); CPU per message: service {:.0} µs, load client {:.0} µs",
            score_cpu / n as f64 * 1e6,
            run.rate,
            100.0 * run.rate / score_rate,
            run.server_cpu / n as f64 * 1e6,
            run.client_cpu / n as f64 * 1e6,
        );
        let lost = run.answers.iter().filter(|a| a.is_none()).count();
        let mismatched: Vec<String> = run
            .answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let a = a.as_ref()?;
                let (action, score) = expected[i];
                let ok = a.action == rspamd_action(action)
                    && format!("{:.2}", a.score) == format!("{score:.2}");
                (!ok).then(|| {
                    format!(
                        "{i}: http {} {}, engine {action} {score:.2}",
                        a.action, a.score
                    )
                })
            })
            .collect();
        for m in mismatched.iter().take(10) {
            println!("  {m}");
        }
        assert_eq!(lost, 0, "messages lost");
        assert_eq!(run.doubles, 0, "messages answered twice");
        assert_eq!(run.counted as usize, n, "service count differs");
        assert!(mismatched.is_empty(), "verdicts differ from Engine::scan");
        score_rates.push(score_rate);
        score_cpus.push(score_cpu);
        runs.push(run);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(
        runs.iter()
            .zip(&score_rates)
            .map(|(r, s)| r.rate / s)
            .collect(),
    );
    let score_rate = median(score_rates);
    let rate = median(runs.iter().map(|r| r.rate).collect());
    let mut rtts: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            r.answers
                .iter()
                .flatten()
                .map(|s| s.rtt.as_secs_f64() * 1e3)
        })
        .collect();
    rtts.sort_by(f64::total_cmp);
    println!(
        "medians of {rounds} rounds: chaff score --jobs 2 {score_rate:.0} messages/s; \
         /checkv2 {rate:.0} messages/s = {:.0} % of chaff score --jobs 2 (median of the rounds' ratios: {:.0} %)",
        100.0 * rate / score_rate,
        100.0 * ratio
    );
    println!(
        "round trip, request to answer (client): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99)
    );
    println!(
        "CPU per message (medians): chaff score --jobs 2 {:.0} µs; service {:.0} µs, load client {:.0} µs",
        median(score_cpus) / n as f64 * 1e6,
        median(runs.iter().map(|r| r.server_cpu).collect()) / n as f64 * 1e6,
        median(runs.iter().map(|r| r.client_cpu).collect()) / n as f64 * 1e6
    );
    println!(
        "every round: every message answered once and counted once, every action and score equal to Engine::scan"
    );
}
