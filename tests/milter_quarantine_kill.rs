//! kill -9 of the service while it keeps quarantined mail under load (issue 10).
//!
//! The `chaff milter` binary runs in `store` mode; eight client threads send
//! spam (each copy with its own queue id) and ham over chaff's MTA-side client,
//! as Postfix does, retrying a message whose connection died as Postfix would
//! (it tempfails and the sender retries). Meanwhile another thread kills the
//! service with SIGKILL several times and restarts it on the same port. At the
//! end the store opens, every message the client was answered DISCARD for is in
//! it, and every entry is whole (summary, detail, message, indexes, totals). A
//! message killed after its commit but before its answer is offered again and
//! kept twice: counted, never a loss.

mod milter_support;

use chaff_milter::client::{Client, Submission};
use chaff_milter::config::QuarantineMode;
use chaff_milter::quarantine::{Filter, StateStore};
use milter_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MESSAGES: usize = 600;
const KILLS: usize = 6;
const SENDERS: usize = 8;

struct Svc {
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl Svc {
    fn start(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chaff"))
            .arg("milter")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{}", self.port))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chaff did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        if let Some(mut c) = self
            .child
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One attempt: the answer's action, or an error when the connection died.
fn attempt(port: u16, qid: &str, raw: &[u8]) -> std::io::Result<&'static str> {
    let mut c = Client::connect_with(
        &format!("inet:127.0.0.1:{port}"),
        chaff_milter::client::POSTFIX_OFFER,
        Duration::from_secs(10),
    )?;
    c.smtp_connect("client.test", "192.0.2.20")?;
    let env = Submission {
        sender: "shop@example.com",
        recipients: vec!["you@example.org"],
        auth_user: None,
        queue_id: Some(qid),
    };
    let a = c.message(&env, raw)?;
    let _ = c.quit();
    Ok(a.action())
}

fn with_id(raw: &str, qid: &str) -> Vec<u8> {
    format!("X-Kill-Id: {qid}\r\n{raw}").into_bytes()
}

#[test]
fn kill_9_while_keeping_mail_loses_nothing_and_leaves_nothing_half_written() {
    let mut f = fixture();
    f.config.quarantine.mode = QuarantineMode::Store;
    let config = f.dir.path().join("chaff.toml");
    write_toml(&config, &f.config, "");
    let svc = Svc {
        config,
        log: f.dir.path().join("chaff.log"),
        port: free_port(),
        child: Mutex::new(None),
    };
    svc.start();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let answers: Mutex<BTreeMap<String, &'static str>> = Mutex::new(BTreeMap::new());
    let retries = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|s| {
        for _ in 0..SENDERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= MESSAGES {
                        return;
                    }
                    // Mostly spam, some ham.
                    let (qid, raw) = if i % 5 == 4 {
                        (format!("KH{i:04}"), with_id(HAM, &format!("KH{i:04}")))
                    } else {
                        (format!("KS{i:04}"), with_id(MEDIUM, &format!("KS{i:04}")))
                    };
                    loop {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            stop.store(true, Ordering::SeqCst);
                            return;
                        }
                        match attempt(svc.port, &qid, &raw) {
                            Ok(action) => {
                                answers.lock().unwrap().insert(qid.clone(), action);
                                break;
                            }
                            Err(_) => {
                                retries.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for k in 0..KILLS {
            let at = (k + 1) * MESSAGES / (KILLS + 2);
            while done.load(Ordering::SeqCst) < at && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rnd(30)));
            svc.kill();
            std::thread::sleep(Duration::from_millis(20 + rnd(100)));
            svc.start();
        }
    });
    assert!(
        !stop.load(Ordering::SeqCst),
        "the load did not finish in time:\n{}",
        svc.log_text()
    );
    svc.kill();

    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), MESSAGES);
    let store =
        StateStore::open_existing(&f.config.state.path).expect("the store opens after kill -9");
    let problems = store.verify().unwrap();
    assert!(problems.is_empty(), "half-written entries: {problems:?}");
    let mut kept: BTreeMap<String, usize> = BTreeMap::new();
    let mut before = None;
    loop {
        let page = store.list(&Filter::default(), 1000, before, 0).unwrap();
        for s in &page.entries {
            *kept
                .entry(s.queue_id.clone().unwrap_or_default())
                .or_insert(0) += 1;
            // The message itself is whole and is the one sent.
            let m = store.message(s.id).unwrap().expect("message");
            let qid = s.queue_id.as_deref().unwrap_or_default();
            assert!(String::from_utf8_lossy(&m).contains(&format!("X-Kill-Id: {qid}")));
        }
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let discarded: BTreeSet<&String> = answers
        .iter()
        .filter(|(_, a)| **a == "discard")
        .map(|(q, _)| q)
        .collect();
    let mut lost = Vec::new();
    for qid in &discarded {
        if !kept.contains_key(*qid) {
            lost.push(qid.as_str());
        }
    }
    for (qid, action) in &answers {
        let want = if qid.starts_with("KS") {
            "discard"
        } else {
            "deliver"
        };
        assert_eq!(*action, want, "{qid}");
    }
    assert!(
        kept.keys().all(|q| q.starts_with("KS")),
        "ham kept: {kept:?}"
    );
    let twice = kept.values().filter(|&&n| n > 1).count();
    println!(
        "milter_quarantine_kill: {MESSAGES} messages, {KILLS} kills, {} discarded and kept, \
         {twice} kept twice (killed between commit and answer), {} retried attempts",
        discarded.len(),
        retries.load(Ordering::SeqCst)
    );
    assert!(
        lost.is_empty(),
        "answered DISCARD but not kept: {lost:?}\n{}",
        svc.log_text()
    );
    assert!(
        retries.load(Ordering::SeqCst) > 0,
        "the kills went unnoticed"
    );
}
