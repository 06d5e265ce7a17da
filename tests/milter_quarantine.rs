//! The quarantine store with the real `chaff milter` binary and chaff's
//! MTA-side client (issue 10): in `store` mode spam is answered DISCARD and kept
//! with its envelope; in `hold` mode QUARANTINE and kept; `keep_rejected` keeps
//! refused mail; a store that cannot be written gets TEMPFAIL, never DISCARD; the
//! `chaff quarantine` and `chaff senders` commands work on the running service's
//! store; every scan is in the history.

mod milter_support;

use chaff_milter::client::{Answer, Client, Submission};
use chaff_milter::config::QuarantineMode;
use chaff_milter::protocol::Response;
use chaff_milter::quarantine::{EntryId, EntryState, Filter, StateStore, Told};
use milter_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

struct Service {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start(dir: &Path, config: &Path) -> Service {
    let port = free_port();
    let log = dir.join("milter.log");
    let child = Process::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("milter")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chaff milter did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Service {
        child,
        addr: format!("inet:127.0.0.1:{port}"),
        log,
    }
}

fn send(addr: &str, sender: &str, rcpts: &[&str], qid: &str, raw: &str) -> Answer {
    let mut c = Client::connect(addr).expect("connect");
    c.smtp_connect("client.test", "192.0.2.10")
        .expect("connect info");
    let env = Submission {
        sender,
        recipients: rcpts.to_vec(),
        auth_user: None,
        queue_id: Some(qid),
    };
    let a = c.message(&env, raw.as_bytes()).expect("message");
    let _ = c.quit();
    a
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_chaff"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The fixture with its quarantine settings, written as chaff.toml.
fn setup(mode: QuarantineMode, keep_rejected: bool) -> (Fixture, PathBuf) {
    let mut f = fixture();
    f.config.quarantine.mode = mode;
    f.config.quarantine.keep_rejected = keep_rejected;
    let path = f.dir.path().join("chaff.toml");
    write_toml(&path, &f.config, "");
    (f, path)
}

/// The one entry of `qid`, read from the store by this process (a second handle
/// on the running service's file).
fn entry_of(store: &StateStore, qid: &str) -> Option<chaff_milter::quarantine::Entry> {
    let page = store
        .list(&Filter::default(), 1000, None, u64::MAX / 2)
        .unwrap();
    let found: Vec<_> = page
        .entries
        .iter()
        .filter(|s| s.queue_id.as_deref() == Some(qid))
        .collect();
    assert!(found.len() <= 1, "{qid} kept {} times", found.len());
    found.first().map(|s| store.get(s.id).unwrap().unwrap())
}

#[test]
fn store_mode_discards_spam_and_keeps_it_with_its_envelope() {
    let (f, config) = setup(QuarantineMode::Store, false);
    let svc = start(f.dir.path(), &config);
    let a = send(
        &svc.addr,
        "shop@example.com",
        &["you@example.org", "Boss@Example.org"],
        "QSTORE1",
        MEDIUM,
    );
    assert_eq!(a.action(), "discard", "{a:?}");
    assert_eq!(a.responses, vec![Response::Discard]);
    // Ham is delivered with headers, rejected spam refused and not kept.
    assert_eq!(
        send(
            &svc.addr,
            "li@example.com",
            &["team@example.org"],
            "QHAM",
            HAM
        )
        .action(),
        "deliver"
    );
    assert_eq!(
        send(
            &svc.addr,
            "boss@example.com",
            &["you@example.org"],
            "QREJ",
            SPAM
        )
        .action(),
        "reject"
    );

    let store = StateStore::open_existing(&f.config.state.path).unwrap();
    let e = entry_of(&store, "QSTORE1").expect("the discarded message is kept");
    assert!(entry_of(&store, "QREJ").is_none());
    assert!(entry_of(&store, "QHAM").is_none());
    let env = &e.detail.envelope;
    assert_eq!(env.sender, "shop@example.com");
    assert_eq!(env.recipients, ["you@example.org", "Boss@Example.org"]);
    assert_eq!(env.client_addr.as_deref(), Some("192.0.2.10"));
    assert_eq!(env.helo.as_deref(), Some("client.test"));
    assert_eq!(env.client_name.as_deref(), Some("client.test"));
    assert_eq!(e.summary.told, Told::Discard);
    assert_eq!(e.summary.state, EntryState::Held);
    assert_eq!(e.summary.subject, "优惠活动");
    assert_eq!(e.detail.verdict.action, "quarantine");
    assert!((e.summary.score - f.scores[1]).abs() < 1e-9);
    assert!(!e.detail.verdict.hits.is_empty());
    // The message as the MTA handed it over (what `as_milter_sees` rebuilds).
    let kept = store.message(e.summary.id).unwrap().unwrap();
    assert_eq!(
        kept,
        chaff_milter::client::as_milter_sees(MEDIUM.as_bytes())
    );
    // Found by recipient, any case, and by domain.
    for rcpt in ["boss@example.org", "example.org"] {
        let f = Filter {
            rcpt: Some(rcpt.into()),
            ..Filter::default()
        };
        assert_eq!(
            store.list(&f, 10, None, 0).unwrap().entries.len(),
            1,
            "{rcpt}"
        );
    }
    // Every scan is in the history (written within a second or two).
    let deadline = Instant::now() + Duration::from_secs(10);
    let history = loop {
        let h = store.history(10, None).unwrap();
        if h.len() >= 3 || Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let actions: Vec<(&str, Option<&str>)> = history
        .iter()
        .map(|r| (r.action.as_str(), r.queue_id.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("reject", Some("QREJ")),
            ("deliver", Some("QHAM")),
            ("quarantine", Some("QSTORE1"))
        ]
    );
    assert_eq!(history[2].entry, Some(e.summary.id));
    assert_eq!(history[2].helo.as_deref(), Some("client.test"));
    let log = svc.log();
    assert!(
        log.contains("told=\"discard\"") || log.contains("told=discard"),
        "{log}"
    );
}

#[test]
fn hold_mode_quarantines_and_keeps_a_copy_and_keep_rejected_keeps_refused_mail() {
    let (f, config) = setup(QuarantineMode::Hold, true);
    let svc = start(f.dir.path(), &config);
    let a = send(
        &svc.addr,
        "shop@example.com",
        &["you@example.org"],
        "QHOLD1",
        MEDIUM,
    );
    assert_eq!(a.action(), "quarantine", "{a:?}");
    let r = send(
        &svc.addr,
        "boss@example.com",
        &["you@example.org"],
        "QREJ1",
        SPAM,
    );
    assert_eq!(
        r.reply().as_deref(),
        Some("557 5.7.1 forbid to send spam mail")
    );
    let store = StateStore::open_existing(&f.config.state.path).unwrap();
    let held = entry_of(&store, "QHOLD1").expect("held mail is kept too");
    assert_eq!(held.summary.told, Told::Hold);
    let rejected = entry_of(&store, "QREJ1").expect("keep_rejected keeps refused mail");
    assert_eq!(rejected.summary.told, Told::Reject);
    assert_eq!(rejected.detail.verdict.action, "reject");
    assert_eq!(
        rejected.detail.verdict.reply.as_deref(),
        Some("557 5.7.1 forbid to send spam mail")
    );
    let f2 = Filter {
        action: Some("reject".into()),
        ..Filter::default()
    };
    assert_eq!(store.list(&f2, 10, None, 0).unwrap().entries.len(), 1);
    drop(svc);
}

#[test]
fn a_store_path_that_cannot_be_opened_stops_the_service_from_starting() {
    let (mut f, _) = setup(QuarantineMode::Store, false);
    // A path below a regular file can never be created.
    let blocker = f.dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    f.config.state.path = blocker.join("state.redb");
    let config = f.dir.path().join("bad.toml");
    write_toml(&config, &f.config, "");
    let out = Process::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("milter")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("state store") && err.contains("not-a-dir"),
        "{err}"
    );
}

#[test]
fn the_commands_list_show_delete_and_purge_the_running_services_store() {
    let (f, config) = setup(QuarantineMode::Store, false);
    let svc = start(f.dir.path(), &config);
    for (i, rcpt) in ["a@corp.test", "b@corp.test", "a@corp.test"]
        .iter()
        .enumerate()
    {
        let a = send(
            &svc.addr,
            "shop@example.com",
            &[rcpt],
            &format!("QCLI{i}"),
            MEDIUM,
        );
        assert_eq!(a.action(), "discard");
    }
    let list = cli(
        &config,
        &[
            "quarantine",
            "list",
            "--rcpt",
            "a@corp.test",
            "--format",
            "json",
        ],
    );
    assert!(list.status.success(), "{}", text(&list));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{}", text(&list));
    // Newest first.
    assert_eq!(rows[0]["queue_id"], "QCLI2");
    assert_eq!(rows[0]["state_name"], "held");
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let table = cli(&config, &["quarantine", "list", "--limit", "2"]);
    let t = text(&table);
    assert!(
        t.contains("shop@example.com") && t.contains("(more: --before "),
        "{t}"
    );
    // Show: envelope, verdict, headers, and the text with the hits marked.
    let show = cli(&config, &["quarantine", "show", &id]);
    let s = text(&show);
    assert!(show.status.success(), "{s}");
    for want in [
        "from:      shop@example.com",
        "told MTA:  discard",
        "helo client.test",
        "--- headers",
        "Subject: =?utf-8?B?5LyY5oOg5rS75Yqo?=",
        // 优惠活动 is one dictionary word of two (优惠|活动): the keyword counts.
        "Subject: [[优惠]]活动",
        "本周[[优惠]]活动，[[免费]]送货，[[特价]]商品",
    ] {
        assert!(s.contains(want), "{want}: {s}");
    }
    let raw = cli(&config, &["quarantine", "show", &id, "--raw"]);
    assert_eq!(
        raw.stdout,
        chaff_milter::client::as_milter_sees(MEDIUM.as_bytes())
    );
    // Bad input: a clear error, nothing changed.
    let bad = cli(&config, &["quarantine", "show", "nope"]);
    assert!(
        !bad.status.success() && text(&bad).contains("not a quarantine id"),
        "{}",
        text(&bad)
    );
    let missing = cli(
        &config,
        &["quarantine", "show", &EntryId::new(1, 1).to_string()],
    );
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    // Delete, then delete again: refused with who and when.
    let del = cli(&config, &["quarantine", "delete", &id]);
    assert!(del.status.success(), "{}", text(&del));
    let again = cli(&config, &["quarantine", "delete", &id]);
    assert!(
        !again.status.success() && text(&again).contains("was deleted by"),
        "{}",
        text(&again)
    );
    assert!(text(&cli(&config, &["quarantine", "show", &id])).contains("the message was deleted"));
    let deleted = cli(
        &config,
        &[
            "quarantine",
            "list",
            "--state",
            "deleted",
            "--format",
            "json",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&deleted.stdout).lines().count(), 1);
    // Purge what is older than a second. The cut-off is in whole seconds
    // (now, rounded down, less one), so an entry is surely older than it only
    // two seconds on.
    std::thread::sleep(Duration::from_millis(2100));
    let purge = cli(&config, &["quarantine", "purge", "--older-than", "1s"]);
    assert!(
        text(&purge).contains("purged 3 entries"),
        "{}",
        text(&purge)
    );
    let empty = cli(&config, &["quarantine", "list"]);
    assert!(text(&empty).contains("no entries"), "{}", text(&empty));
    // Every change is in the action log.
    let store = StateStore::open_existing(&f.config.state.path).unwrap();
    let whats: Vec<String> = store
        .actions(10)
        .unwrap()
        .into_iter()
        .map(|a| a.what)
        .collect();
    assert_eq!(whats, ["purge", "delete"]);
    // A mistyped store path is an error, not a new store.
    let typo = Process::new(env!("CARGO_BIN_EXE_chaff"))
        .args(["quarantine", "--db"])
        .arg(f.dir.path().join("typo/state.redb"))
        .arg("list")
        .output()
        .unwrap();
    assert!(
        !typo.status.success() && text(&typo).contains("no state store"),
        "{}",
        text(&typo)
    );
    assert!(!f.dir.path().join("typo").exists());
    drop(svc);
}

#[test]
fn a_stored_block_entry_is_applied_by_the_running_service() {
    let (f, config) = setup(QuarantineMode::Hold, false);
    let svc = start(f.dir.path(), &config);
    assert_eq!(
        send(
            &svc.addr,
            "pest@nuisance.test",
            &["you@example.org"],
            "QB0",
            HAM
        )
        .action(),
        "deliver"
    );
    let add = cli(
        &config,
        &[
            "senders",
            "block",
            "*@nuisance.test",
            "--comment",
            "complaints",
        ],
    );
    assert!(add.status.success(), "{}", text(&add));
    let bad = cli(
        &config,
        &["senders", "allow", "ceo@example.com", "via", "192.0.2.1"],
    );
    assert!(
        !bad.status.success() && text(&bad).contains("allow entry refused"),
        "{}",
        text(&bad)
    );
    let unproven = cli(&config, &["senders", "allow", "ceo@example.com"]);
    assert!(
        text(&unproven).contains("never applies"),
        "{}",
        text(&unproven)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = send(
            &svc.addr,
            "pest@nuisance.test",
            &["you@example.org"],
            "QB1",
            HAM,
        );
        if a.action() == "reject" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the block entry was not applied: {}",
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        svc.log().contains("stored sender lists changed"),
        "{}",
        svc.log()
    );
    let list = cli(&config, &["senders", "list"]);
    let t = text(&list);
    assert!(
        t.contains("*@nuisance.test") && t.contains("store (by ") && t.contains("complaints"),
        "{t}"
    );
    let remove = cli(
        &config,
        &["senders", "block", "*@nuisance.test", "--remove"],
    );
    assert!(remove.status.success(), "{}", text(&remove));
    let deadline = Instant::now() + Duration::from_secs(20);
    while send(
        &svc.addr,
        "pest@nuisance.test",
        &["you@example.org"],
        "QB2",
        HAM,
    )
    .action()
        != "deliver"
    {
        assert!(Instant::now() < deadline, "the block entry was not removed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let out = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("mount: {}", String::from_utf8_lossy(&out.stderr).trim_end());
            return None;
        }
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_store_that_cannot_be_written_gets_tempfail_never_discard_and_recovers() {
    let (mut f, _) = setup(QuarantineMode::Store, false);
    let Some(fs) = Tmpfs::mount(&f.dir.path().join("mnt"), "2m") else {
        eprintln!("skipped: cannot mount tmpfs (not root?)");
        return;
    };
    f.config.state.path = fs.dir.join("state.redb");
    let h = milter_support::start(&f.config);
    // Fill the disk, then send spam until a message cannot be kept.
    let filler = fs.dir.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x55u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
    }
    let (mut discarded, mut deferred) = (Vec::new(), 0);
    for i in 0..2000 {
        let qid = format!("QFULL{i}");
        let a = send(
            h.addr(),
            "shop@example.com",
            &["you@example.org"],
            &qid,
            MEDIUM,
        );
        match a.action() {
            "discard" => discarded.push(qid),
            "tempfail" => {
                assert_eq!(
                    a.reply().as_deref(),
                    Some("451 4.3.0 chaff: quarantine store unavailable, try again later")
                );
                deferred += 1;
                if deferred >= 3 {
                    break;
                }
            }
            other => panic!("{qid}: {other}: {a:?}"),
        }
    }
    assert!(deferred >= 3, "no message was deferred on a full disk");
    let page = scrape(&h);
    assert!(
        metric(&page, "chaff_milter_quarantine_store_failures_total").unwrap() >= 3.0,
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "chaff_milter_messages_total{action=\"quarantine_tempfail\"}"
        ),
        Some(deferred as f64)
    );
    // Free the space: the store reopens by itself and keeps mail again.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let qid = format!("QBACK{}", discarded.len());
        let a = send(
            h.addr(),
            "shop@example.com",
            &["you@example.org"],
            &qid,
            MEDIUM,
        );
        if a.action() == "discard" {
            discarded.push(qid);
            break;
        }
        assert_eq!(a.action(), "tempfail");
        assert!(Instant::now() < deadline, "the store did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    h.shutdown();
    // Every message answered DISCARD is in the store, whole.
    let store = StateStore::open_existing(&f.config.state.path).unwrap();
    let kept: std::collections::BTreeSet<String> = store
        .list(&Filter::default(), 1000, None, 0)
        .unwrap()
        .entries
        .into_iter()
        .filter_map(|s| s.queue_id)
        .collect();
    for qid in &discarded {
        assert!(kept.contains(qid), "{qid} was discarded but is not kept");
    }
    assert!(store.verify().unwrap().is_empty());
}
