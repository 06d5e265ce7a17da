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
//! not a header) are counted and reported.
//!
//! The comparison is `chaff score --jobs 2` on the same messages as files, after one
//! untimed run that warms the page cache. The machine this was written on drifts by
//! ±15 % within minutes, so `chaff score` and the service run in alternation, five
//! rounds by default (each round a fresh service), and the figures are medians:
//! messages/s of each and their ratio, the client-side round trip at end of message
//! and the server's scan time (p50/p99 over all rounds, also for the 50 KB
//! messages), CPU per message of the service and of the load client, the service's
//! resident memory, and `Engine::scan` on 2 threads in this process.
//!
//! The load client shares the two cores with the service, so it does as little as
//! it can: it sends pre-encoded packets (what `Client::message` would send) and
//! drives all its connections from one thread (a blocking thread per connection
//! took 16–20 µs of CPU a message against 12–15, and its wake-ups preempted the
//! service's scans: the 50 KB p99 scan wall time was 3.8–4.9 ms against 2.1–2.3).
//!
//! Run: `cargo bench --bench milter_load`. Environment: `CHAFF_LOAD_MESSAGES`,
//! `CHAFF_LOAD_CONNECTIONS`, `CHAFF_LOAD_ROUNDS` and `CHAFF_CORPUS` change the
//! defaults; `CHAFF_LOAD_BIN` runs another build of `chaff`, for comparisons;
//! `CHAFF_LOAD_CLIENT=threads` drives each connection from a blocking thread of its
//! own instead of all from one thread; `CHAFF_LOAD_MILTER` holds extra lines for
//! the service's `[milter]` section, e.g. `network_threads = 1`;
//! `CHAFF_LOAD_CONFIG` holds extra tables, e.g. `[quarantine]\nmode = "store"`
//! (quarantined mail is then answered DISCARD, which counts as the engine's
//! quarantine). Every quarantined message is kept in the state store before it
//! is answered; `CHAFF_LOAD_POLICY` holds `;`-separated `chaff policy set`
//! arguments stored before the service starts (e.g. `domain:example.org block
//! nobody.test`), to measure what stored policies cost a message (they must not
//! change a verdict). The time keeping takes (compressing, then the group commit) is read
//! from the log's `store_us` and printed as p50/p99, also for the 50 KB messages.
//! `CHAFF_LOAD_ACCOUNTS=N` sends every message as SMTP-authenticated, from N
//! accounts in turn (account locking off, so answers stay comparable), so every
//! message consults the state backend; `CHAFF_LOAD_STATE` holds extra lines for
//! `[state]`, e.g. `backend = "redis://127.0.0.1:6379/"`, and rate limits go in
//! `CHAFF_LOAD_CONFIG` (`[ratelimit]\naccount = [{ window = "1h", messages = 100000 }]`).
//! `CHAFF_LOAD_POLL_DASHBOARD=1` also starts the service's HTTP listener with a
//! console user and has a client load the console's dashboard (`GET /`, signed
//! in) once a second while the messages are sent, as an operator's browser
//! would (issue 11: throughput and p99 within 5 % of a run without it); the
//! dashboard's answer times are printed.

use chaff::{Action, Config, Engine, Envelope};
use chaff_milter::client::{self, Answer, CHUNK, Client};
use chaff_milter::protocol::{Command as Packet, cmd, proto};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::{
    KillOnDrop, children_cpu_seconds, cpu_seconds, env_or, free_port, memory, percentile,
};

struct Sent {
    action: &'static str,
    score: Option<String>,
    rtt: Duration,
}

/// One message as the pre-encoded milter packets Postfix would send: macros, MAIL,
/// RCPT, DATA, headers, end of headers, body chunks, end of message, then ABORT (the
/// end of the transaction). chaff asks for no answer before end of message, so
/// Postfix streams all of it and waits once.
fn prepare(raw: &[u8], qid: &str, user: Option<&str>) -> Vec<u8> {
    let mut wire = Vec::with_capacity(raw.len() + 512);
    let mut pairs: Vec<(&[u8], &[u8])> = vec![(b"i", qid.as_bytes())];
    if let Some(u) = user {
        pairs.push((b"{auth_type}", b"PLAIN"));
        pairs.push((b"{auth_authen}", u.as_bytes()));
    }
    Packet::Macro {
        stage: cmd::MAIL,
        pairs,
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

/// [`exchange`] on a non-blocking connection.
async fn exchange_async(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    wire: &[u8],
) -> std::io::Result<(Answer, Duration)> {
    let t = Instant::now();
    stream.write_all(wire).await?;
    let mut responses = Vec::new();
    loop {
        match client::take_response(buf)? {
            Some(r) => {
                let fin = r.is_final();
                responses.push(r);
                if fin {
                    let stage = "BODYEOB";
                    return Ok((Answer { responses, stage }, t.elapsed()));
                }
            }
            None => {
                if stream.read_buf(buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
}

fn main() {
    let n = env_or("CHAFF_LOAD_MESSAGES", 20_000);
    let accounts = env_or("CHAFF_LOAD_ACCOUNTS", 0);
    let rounds = env_or("CHAFF_LOAD_ROUNDS", 5).max(1);
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
            "[accounts]\ndb = {:?}\n{}[state]\npath = {:?}\n{}\n[milter]\n{}\n{}\n",
            dir.path().join("accounts.redb").display().to_string(),
            if accounts > 0 { "lock_after = 0\n" } else { "" },
            dir.path().join("state.redb").display().to_string(),
            std::env::var("CHAFF_LOAD_STATE").unwrap_or_default(),
            std::env::var("CHAFF_LOAD_MILTER").unwrap_or_default(),
            std::env::var("CHAFF_LOAD_CONFIG").unwrap_or_default()
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
        let v = engine.scan(m, &Envelope::default());
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
        .map(|(i, m)| {
            let user = (accounts > 0).then(|| format!("load{}", i % accounts));
            prepare(m, &format!("L{i:06}"), user.as_deref())
        })
        .collect();

    // `chaff score --jobs 2` on the same messages, as files. Both it and the service
    // run a copy of the binary, so that another build in the same target directory
    // cannot swap it under the benchmark.
    let exe = dir.path().join("chaff");
    let bin =
        std::env::var("CHAFF_LOAD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_chaff").into());
    std::fs::copy(&bin, &exe).expect("copy the chaff binary");
    // Stored policies for the service to apply to every message (`;`-separated
    // `chaff policy set` arguments), for measuring their cost; they must not
    // change a verdict, which is compared with `Engine::scan`'s.
    for args in std::env::var("CHAFF_LOAD_POLICY")
        .unwrap_or_default()
        .split(';')
    {
        let args: Vec<&str> = args.split_whitespace().collect();
        if args.is_empty() {
            continue;
        }
        let ok = Command::new(&exe)
            .args(["policy", "--config"])
            .arg(&config_path)
            .arg("set")
            .args(&args)
            .stdout(Stdio::null())
            .status()
            .expect("chaff policy")
            .success();
        assert!(ok, "chaff policy set {args:?} failed");
    }
    let files = dir.path().join("messages");
    std::fs::create_dir(&files).unwrap();
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(files.join(format!("{i:06}.eml")), m).unwrap();
    }
    // Messages/s, and CPU seconds (user + system) the run took.
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
    let is_big: Vec<bool> = messages.iter().map(|m| m.len() >= 50_000).collect();
    // One run to warm the page cache and settle the files just written, untimed.
    let _ = score();

    // Rounds of `chaff score` then the service, alternating, so that a slow phase
    // of a shared machine does not fall on one side only.
    let mut score_rates = Vec::with_capacity(rounds);
    let mut runs = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let (score_rate, score_cpu) = score();
        let run = milter_round(&exe, &config_path, dir.path(), &prepared, &is_big, conns);
        println!(
            "round {round}: chaff score --jobs 2 {score_rate:.0} messages/s ({:.0} µs of CPU a message); \
             milter {:.0} messages/s ({:.0} %); CPU per message: service {:.0} µs, load client {:.0} µs",
            score_cpu / n as f64 * 1e6,
            run.rate,
            100.0 * run.rate / score_rate,
            run.server_cpu / n as f64 * 1e6,
            run.client_cpu / n as f64 * 1e6,
        );
        check_round(&run, &messages, &names, &expected);
        score_rates.push(score_rate);
        runs.push(run);
    }

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let score_rate = median(score_rates);
    let rate = median(runs.iter().map(|r| r.rate).collect());
    let pooled = |f: fn(&Run) -> &Vec<f64>| {
        let mut v: Vec<f64> = runs.iter().flat_map(|r| f(r).iter().copied()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (rtts, rtts_50k) = (pooled(|r| &r.rtts), pooled(|r| &r.rtts_50k));
    let (scan_us, scan_us_50k) = (pooled(|r| &r.scan_us), pooled(|r| &r.scan_us_50k));
    let (cpu_us, cpu_us_50k) = (pooled(|r| &r.cpu_us), pooled(|r| &r.cpu_us_50k));
    let (store_us, store_us_50k) = (pooled(|r| &r.store_us), pooled(|r| &r.store_us_50k));
    println!(
        "medians of {rounds} rounds: chaff score --jobs 2 {score_rate:.0} messages/s; \
         milter {rate:.0} messages/s = {:.0} % of chaff score --jobs 2 ({:.0} % of Engine::scan on 2 threads)",
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
        (
            "scan CPU time of the scanning thread (messages >= 16 KiB)",
            &cpu_us,
            &cpu_us_50k,
        ),
        (
            "keeping a quarantined message in the state store (compress + durable group commit)",
            &store_us,
            &store_us_50k,
        ),
    ] {
        if all.is_empty() {
            continue;
        }
        println!(
            "{what} (server log, {} messages): p50 {:.3} ms, p99 {:.3} ms; messages >= 50 KB ({}): \
             p50 {:.3} ms, p99 {:.3} ms",
            all.len(),
            percentile(all, 0.5) / 1e3,
            percentile(all, 0.99) / 1e3,
            big.len(),
            percentile(big, 0.5) / 1e3,
            percentile(big, 0.99) / 1e3
        );
    }
    println!(
        "CPU per message (medians): service {:.0} µs, of which scanning (wall time) {:.0} µs \
         (Engine::scan alone: {:.0} µs of CPU), load client {:.0} µs",
        median(runs.iter().map(|r| r.server_cpu).collect()) / n as f64 * 1e6,
        scan_us.iter().sum::<f64>() / scan_us.len().max(1) as f64,
        direct_cpu * 1e6,
        median(runs.iter().map(|r| r.client_cpu).collect()) / n as f64 * 1e6
    );
    println!(
        "service memory: {:.0} MiB idle, peak (VmHWM) {:.0} MiB (highest of the rounds)",
        runs.iter().map(|r| r.idle_rss).fold(0.0, f64::max),
        runs.iter().map(|r| r.peak_rss).fold(0.0, f64::max)
    );
    let differs_as_file = (0..n)
        .filter(|&i| {
            as_files[i].0 != expected[i].0
                || format!("{:.2}", as_files[i].1) != format!("{:.2}", expected[i].1)
        })
        .count();
    println!(
        "every round: every message answered once, logged once and counted once, and every verdict equal to \
         Engine::scan of what Postfix hands the milter"
    );
    println!(
        "(messages whose verdict as the milter receives them differs from scanning the file as it stands, \
         because Postfix ends the header block at a non-header line: {differs_as_file})"
    );
}

/// What one run of the service under load measured.
struct Run {
    rate: f64,
    /// Answers by message index (`None`: lost).
    answers: Vec<Option<Sent>>,
    doubles: usize,
    /// Log lines per message index.
    logged: Vec<u32>,
    counted: f64,
    rtts: Vec<f64>,
    rtts_50k: Vec<f64>,
    scan_us: Vec<f64>,
    scan_us_50k: Vec<f64>,
    cpu_us: Vec<f64>,
    cpu_us_50k: Vec<f64>,
    store_us: Vec<f64>,
    store_us_50k: Vec<f64>,
    server_cpu: f64,
    client_cpu: f64,
    idle_rss: f64,
    peak_rss: f64,
}

/// A client loading the console's dashboard once a second
/// (`CHAFF_LOAD_POLL_DASHBOARD=1`).
struct DashboardPoll {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DashboardPoll {
    const PASSWORD: &str = "load benchmark password";

    /// A copy of `config` with a users file of one admin, and the HTTP port.
    fn config(config: &Path, dir: &Path) -> (PathBuf, u16) {
        use chaff_milter::users::{Role, UserEntry, UsersFile, hash_password};
        let users = dir.join("poll-users.toml");
        let mut f = UsersFile::default();
        f.add(
            "admin",
            UserEntry {
                role: Role::Admin,
                password: Some(hash_password(Self::PASSWORD).expect("hash")),
                token: None,
            },
        )
        .expect("user");
        f.save(&users).expect("users file");
        let text = std::fs::read_to_string(config).expect("config");
        let path = dir.join("chaff-poll.toml");
        let users_table = format!("\n[users]\nfile = {:?}\n", users.display().to_string());
        std::fs::write(&path, format!("{text}{users_table}")).expect("config copy");
        (path, free_port())
    }

    fn request(port: u16, req: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http");
        s.write_all(req.as_bytes()).expect("request");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Signs in and loads `/` every second until stopped: the answer times, ms.
    fn start(&self) -> std::thread::JoinHandle<Vec<f64>> {
        let (port, stop) = (self.port, std::sync::Arc::clone(&self.stop));
        std::thread::spawn(move || {
            let body = format!(
                "csrf=t&name=admin&password={}",
                Self::PASSWORD.replace(' ', "+")
            );
            let answer = Self::request(
                port,
                &format!(
                    "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: chaff_login=t\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            );
            let cookie = answer
                .lines()
                .find_map(|l| l.strip_prefix("set-cookie: chaff_session="))
                .and_then(|v| v.split(';').next())
                .map(|v| format!("chaff_session={v}"))
                .expect("a console session");
            let mut times = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let page = Self::request(
                    port,
                    &format!(
                        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n"
                    ),
                );
                assert!(page.starts_with("HTTP/1.1 200"), "dashboard: {page}");
                times.push(t.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(Duration::from_secs(1));
            }
            times
        })
    }
}

/// Starts the service, sends every prepared message over `conns` connections,
/// stops it, and reads its metrics and log.
fn milter_round(
    exe: &Path,
    config_path: &Path,
    dir: &Path,
    prepared: &[Vec<u8>],
    is_big: &[bool],
    conns: usize,
) -> Run {
    let n = prepared.len();
    let metrics_port = free_port();
    let addr = format!("inet:127.0.0.1:{}", free_port());
    let log_path = dir.join("milter.log");
    let poll = std::env::var("CHAFF_LOAD_POLL_DASHBOARD").is_ok_and(|v| v == "1");
    let (config_path, poll) = if poll {
        let (path, port) = DashboardPoll::config(config_path, dir);
        let stop = std::sync::Arc::default();
        (path, Some(DashboardPoll { port, stop }))
    } else {
        (config_path.to_path_buf(), None)
    };
    let mut command = Command::new(exe);
    command
        .arg("milter")
        .arg("--config")
        .arg(&config_path)
        .arg("--listen")
        .arg(&addr)
        .arg("--metrics")
        .arg(format!("127.0.0.1:{metrics_port}"));
    if let Some(p) = &poll {
        command.arg("--http").arg(format!("127.0.0.1:{}", p.port));
    }
    let mut child = KillOnDrop(
        command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("start chaff milter"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, idle_rss) = memory(child.0.id());
    let server_pid = child.0.id().to_string();

    // The connections, negotiated and past the SMTP connect as Postfix has them,
    // before the clock starts.
    let clients: Vec<Client> = (0..conns)
        .map(|c| {
            let mut client = Client::connect(&addr).expect("connect");
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
            client
        })
        .collect();

    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Sent>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let doubles = AtomicUsize::new(0);
    let record = |i: usize, a: Answer, rtt: Duration| {
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
    };
    let take = || Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < n);
    let threads = std::env::var("CHAFF_LOAD_CLIENT").is_ok_and(|v| v == "threads");
    if let Some(p) = &poll {
        while std::net::TcpStream::connect(("127.0.0.1", p.port)).is_err() {
            assert!(Instant::now() < deadline, "the HTTP listener did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let poller = poll.as_ref().map(DashboardPoll::start);
    let server_cpu0 = cpu_seconds(&server_pid);
    let client_cpu0 = cpu_seconds("self");
    let t = Instant::now();
    if threads {
        // A blocking thread per connection, as Postfix has a process per session.
        std::thread::scope(|s| {
            for mut client in clients {
                let (take, record) = (&take, &record);
                s.spawn(move || {
                    while let Some(i) = take() {
                        let (a, rtt) = exchange(&mut client, &prepared[i]).expect("answer");
                        record(i, a, rtt);
                    }
                    let _ = client.quit();
                });
            }
        });
    } else {
        // Every connection from one thread: the load generator leaves the most of
        // the two cores to the service.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async {
            let mut tasks = FuturesUnordered::new();
            for client in clients {
                let Ok(stream) = client.into_tcp() else {
                    panic!("the load client needs TCP connections");
                };
                stream.set_nonblocking(true).expect("non-blocking");
                let mut stream = tokio::net::TcpStream::from_std(stream).expect("register");
                let (take, record) = (&take, &record);
                tasks.push(async move {
                    let mut buf = Vec::with_capacity(4096);
                    while let Some(i) = take() {
                        let (a, rtt) = exchange_async(&mut stream, &mut buf, &prepared[i])
                            .await
                            .expect("answer");
                        record(i, a, rtt);
                    }
                    let mut quit = Vec::new();
                    Packet::Quit.encode(&mut quit);
                    let _ = stream.write_all(&quit).await;
                });
            }
            while tasks.next().await.is_some() {}
        });
    }
    let elapsed = t.elapsed();
    if let (Some(p), Some(h)) = (&poll, poller) {
        p.stop.store(true, Ordering::Relaxed);
        let mut times = h.join().expect("dashboard poller");
        times.sort_by(f64::total_cmp);
        if !times.is_empty() {
            println!(
                "  dashboard loaded {} times during the round: p50 {:.1} ms, max {:.1} ms",
                times.len(),
                percentile(&times, 0.5),
                times[times.len() - 1]
            );
        }
    }
    let server_cpu = cpu_seconds(&server_pid) - server_cpu0;
    let client_cpu = cpu_seconds("self") - client_cpu0;
    let (peak_rss, _) = memory(child.0.id());

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
        .arg(child.0.id().to_string())
        .status();
    let _ = child.0.wait();
    let counted: f64 = page
        .lines()
        .filter(|l| l.starts_with("chaff_milter_messages_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let answers: Vec<Option<Sent>> = results
        .into_iter()
        .map(|m| m.into_inner().unwrap())
        .collect();

    // One log line per message, with its queue id and scan time.
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut run = Run {
        rate: n as f64 / elapsed.as_secs_f64(),
        doubles: doubles.load(Ordering::Relaxed),
        logged: vec![0; n],
        counted,
        rtts: Vec::with_capacity(n),
        rtts_50k: Vec::new(),
        scan_us: Vec::with_capacity(n),
        scan_us_50k: Vec::new(),
        cpu_us: Vec::with_capacity(n),
        cpu_us_50k: Vec::new(),
        store_us: Vec::new(),
        store_us_50k: Vec::new(),
        server_cpu,
        client_cpu,
        idle_rss,
        peak_rss,
        answers,
    };
    let big = |i: usize| is_big[i];
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
            run.logged[i] += 1;
            if let Some(us) = field("scan_us=").and_then(|v| v.parse::<f64>().ok()) {
                run.scan_us.push(us);
                if big(i) {
                    run.scan_us_50k.push(us);
                }
            }
            if let Some(us) = field("scan_cpu_us=").and_then(|v| v.parse::<f64>().ok()) {
                run.cpu_us.push(us);
                if big(i) {
                    run.cpu_us_50k.push(us);
                }
            }
            if let Some(us) = field("store_us=").and_then(|v| v.parse::<f64>().ok()) {
                run.store_us.push(us);
                if big(i) {
                    run.store_us_50k.push(us);
                }
            }
        }
    }
    for (i, sent) in run.answers.iter().enumerate() {
        if let Some(sent) = sent {
            let ms = sent.rtt.as_secs_f64() * 1e3;
            run.rtts.push(ms);
            if big(i) {
                run.rtts_50k.push(ms);
            }
        }
    }
    run
}

/// Asserts that a round lost nothing, answered and logged each message once, and
/// gave every message the verdict `Engine::scan` gives it.
fn check_round(run: &Run, messages: &[Vec<u8>], names: &[String], expected: &[(Action, f64)]) {
    let n = messages.len();
    let lost = run.answers.iter().filter(|a| a.is_none()).count();
    let mismatched: Vec<String> = run
        .answers
        .iter()
        .enumerate()
        .filter_map(|(i, sent)| {
            let sent = sent.as_ref()?;
            let (action, score) = expected[i];
            let want_score = format!("{score:.2}");
            // In store mode quarantined mail is kept by chaff and discarded.
            let ok = (sent.action == action.as_str()
                || (sent.action == "discard" && action == Action::Quarantine))
                && sent.score.as_deref().is_none_or(|s| s == want_score);
            (!ok).then(|| {
                format!(
                    "{}: milter {} {:?}, engine {} {want_score}",
                    names[i], sent.action, sent.score, action
                )
            })
        })
        .collect();
    for m in mismatched.iter().take(10) {
        println!("  {m}");
    }
    let logged_once = run.logged.iter().filter(|&&c| c == 1).count();
    assert_eq!(lost, 0, "messages lost");
    assert_eq!(run.doubles, 0, "messages answered twice");
    assert_eq!(logged_once, n, "messages not logged exactly once");
    assert_eq!(run.counted as usize, n, "service count differs");
    assert!(mismatched.is_empty(), "verdicts differ from Engine::scan");
}
