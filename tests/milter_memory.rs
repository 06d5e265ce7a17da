//! The `chaff milter` binary's memory under many open connections: its resident
//! set stays within `max_buffered_bytes`, plus at most 64 KiB per open connection,
//! plus a fixed base (the engine, the runtimes, the scan threads) measured here
//! after one message of each kind has passed. Run on the real binary so the RSS
//! read from /proc is the service's own.

mod milter_support;

use chaff_milter::client::{Client, Submission};
use milter_support::*;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

/// Connections held open at once.
const N: usize = 150;
/// What the README promises per open connection.
const PER_CONNECTION: u64 = 64 * 1024;
/// `max_buffered_bytes` in these tests.
const BUDGET: u64 = 4 << 20;
/// Slack over the measured base for allocator bookkeeping and the growth of the
/// runtimes' own tables.
const SLACK: u64 = 8 << 20;

struct Service {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Service {
    let f = fixture();
    let config = f.dir.path().join("chaff.toml");
    let t = &f.config.engine.thresholds;
    let text = format!(
        "[thresholds]\nquarantine = {:?}\nreject = {:?}\n\n[limits]\nmax_message_size = \"2M\"\n\n\
         [milter]\nmax_buffered_bytes = \"4M\"\nmax_connections = 1024\n\n\
         [accounts]\ndb = {:?}\n\n[state]\npath = {:?}\n",
        t.quarantine,
        t.reject,
        f.dir.path().join("accounts.redb").display().to_string(),
        f.dir.path().join("state.redb").display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let child = Process::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("milter")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(f.dir.path().join("milter.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Service {
        child,
        addr: format!("inet:127.0.0.1:{port}"),
        _dir: f.dir,
    }
}

/// The resident set of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// RSS after the service has had a moment to return freed memory.
fn settled_rss(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(500));
    rss(pid)
}

/// A message of about `size` bytes of plain text.
fn big_message(size: usize) -> String {
    let mut m = String::from(
        "From: a@example.com\r\nTo: b@example.org\r\nSubject: report\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    let line = "the quarterly figures are attached for review by the team\r\n";
    while m.len() < size {
        m.push_str(line);
    }
    m
}

fn submission() -> Submission<'static> {
    Submission {
        sender: "a@example.com",
        recipients: vec!["b@example.org"],
        auth_user: None,
        queue_id: Some("QMEM"),
    }
}

fn bound(base: u64) -> u64 {
    base + BUDGET + PER_CONNECTION * N as u64 + SLACK
}

#[test]
fn connections_that_passed_a_large_message_keep_little_memory() {
    let svc = start();
    let pid = svc.child.id();
    let msg = big_message(1 << 20);
    // The base: one large message scanned, its connection closed.
    {
        let mut c = Client::connect(&svc.addr).unwrap();
        assert_eq!(
            c.message(&submission(), msg.as_bytes()).unwrap().action(),
            "deliver"
        );
    }
    let base = settled_rss(pid);
    let mut open = Vec::new();
    for _ in 0..N {
        let mut c = Client::connect(&svc.addr).unwrap();
        assert_eq!(
            c.message(&submission(), msg.as_bytes()).unwrap().action(),
            "deliver"
        );
        open.push(c);
    }
    let after = settled_rss(pid);
    eprintln!(
        "base {} KiB, after {N} connections with a 1 MB message each: {} KiB",
        base / 1024,
        after / 1024
    );
    assert!(
        after <= bound(base),
        "RSS {after} over base {base} + budget + 64 KiB × {N}"
    );
    drop(open);
}

#[test]
fn connections_holding_an_unfinished_large_packet_stay_within_the_budget() {
    let svc = start();
    let pid = svc.child.id();
    let msg = big_message(1 << 20);
    {
        let mut c = Client::connect(&svc.addr).unwrap();
        assert_eq!(
            c.message(&submission(), msg.as_bytes()).unwrap().action(),
            "deliver"
        );
    }
    let base = settled_rss(pid);
    // A body packet announcing 250 KiB (under the 256 KiB `max_packet_size`), of
    // which 240 KiB are sent.
    let len: u32 = 250 * 1024;
    let mut packet = (len + 1).to_be_bytes().to_vec();
    packet.push(b'B');
    packet.extend(std::iter::repeat_n(b'x', 240 * 1024));
    let mut open = Vec::new();
    for _ in 0..N {
        let Ok(mut c) = Client::connect(&svc.addr) else {
            continue;
        };
        // The service may close a connection whose packet does not fit the budget.
        let _ = c.send_raw(&packet);
        open.push(c);
    }
    let after = settled_rss(pid);
    eprintln!(
        "base {} KiB, after {N} connections with an unfinished 250 KiB packet each: {} KiB",
        base / 1024,
        after / 1024
    );
    assert!(
        after <= bound(base),
        "RSS {after} over base {base} + budget + 64 KiB × {N}"
    );
    // The service still answers.
    drop(open);
    let mut c = Client::connect(&svc.addr).unwrap();
    assert_eq!(
        c.message(&submission(), HAM.as_bytes()).unwrap().action(),
        "deliver"
    );
}
