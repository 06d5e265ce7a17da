//! The account-lock store on a filesystem that fills up and is freed again (issue
//! 14): a small tmpfs is mounted (root only; elsewhere the test says it is skipped),
//! the store is put on it, and the disk is filled until a write fails. Locked
//! accounts must stay refused, new locks must be held in memory, and the store must
//! recover by itself once space is freed, writing what it held.

mod milter_support;

use chaff_milter::client::{Answer, Client, Submission};
use milter_support::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let out = Command::new("mount")
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
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0x55u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

fn send(addr: &str, auth: Option<&str>, raw: &str) -> Answer {
    let mut c = Client::connect(addr).expect("connect");
    c.smtp_connect("client.test", "192.0.2.10")
        .expect("connect info");
    let env = Submission {
        sender: "sender@example.com",
        recipients: vec!["rcpt@example.org"],
        auth_user: auth,
        queue_id: Some("QFULL"),
    };
    let a = c.message(&env, raw.as_bytes()).expect("message");
    let _ = c.quit();
    a
}

/// Fills the tmpfs, then sends spam from new accounts until a reject cannot be
/// written: redb reuses its free pages first, so that takes some 180 accounts on
/// 1 MiB. Returns the filler file.
fn fill_until_a_write_fails(h: &chaff_milter::server::ServerHandle, fs: &Tmpfs) -> PathBuf {
    let filler = fs.dir.join("filler");
    fill(&filler);
    for i in 0..1000 {
        assert_eq!(
            send(h.addr(), Some(&format!("user{i}")), SPAM).action(),
            "reject"
        );
        if !h.service().store().expect("store").is_healthy() {
            return filler;
        }
    }
    panic!("no write failed on a full disk: {}", scrape(h));
}

const REFUSED: Option<&str> = Some("557 5.7.1 forbid to send spam mail");

fn wait_for(
    h: &chaff_milter::server::ServerHandle,
    name: &str,
    ok: impl Fn(f64) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = scrape(h);
        if metric(&page, name).is_some_and(&ok) || Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_keeps_known_locks_and_the_store_recovers_when_space_is_freed() {
    let f = fixture();
    let Some(fs) = Tmpfs::mount(&f.dir.path().join("mnt"), "1m") else {
        eprintln!("skipped: cannot mount tmpfs (not root?)");
        return;
    };
    let mut config = f.config.clone();
    config.accounts.db = fs.dir.join("accounts.redb");
    let h = start(&config);

    for _ in 0..3 {
        assert_eq!(send(h.addr(), Some("mallory"), SPAM).action(), "reject");
    }
    assert_eq!(
        send(h.addr(), Some("mallory"), HAM).reply().as_deref(),
        REFUSED
    );
    let m = scrape(&h);
    assert_eq!(metric(&m, "chaff_milter_lock_store_healthy"), Some(1.0));

    let filler = fill_until_a_write_fails(&h, &fs);
    let m = scrape(&h);
    assert_eq!(
        metric(&m, "chaff_milter_lock_store_healthy"),
        Some(0.0),
        "{m}"
    );
    assert!(metric(&m, "chaff_milter_lock_store_errors_total").unwrap_or(0.0) >= 1.0);

    // The known lock is still enforced, other accounts still get their verdicts.
    assert_eq!(
        send(h.addr(), Some("mallory"), HAM).reply().as_deref(),
        REFUSED
    );
    assert_eq!(send(h.addr(), Some("alice"), HAM).action(), "deliver");
    // An account locked during the outage is locked in memory.
    for _ in 0..3 {
        assert_eq!(send(h.addr(), Some("trudy"), SPAM).action(), "reject");
    }
    assert_eq!(
        send(h.addr(), Some("trudy"), HAM).reply().as_deref(),
        REFUSED
    );

    // Space comes back: the store reopens without a restart and writes what it held.
    std::fs::remove_file(&filler).expect("remove filler");
    let m = wait_for(&h, "chaff_milter_lock_store_healthy", |v| v == 1.0);
    assert_eq!(
        metric(&m, "chaff_milter_lock_store_healthy"),
        Some(1.0),
        "{m}"
    );
    assert!(metric(&m, "chaff_milter_lock_store_reopens_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        send(h.addr(), Some("mallory"), HAM).reply().as_deref(),
        REFUSED
    );
    assert_eq!(
        send(h.addr(), Some("trudy"), HAM).reply().as_deref(),
        REFUSED
    );
    h.shutdown();

    // What the service held is on disk: a fresh handle and the admin command see it.
    let store = chaff_milter::accounts::AccountStore::open(&config.accounts.db).unwrap();
    let users: Vec<String> = store.list().unwrap().into_iter().map(|(u, _)| u).collect();
    assert_eq!(users, ["mallory", "trudy"]);
    drop(store);
    let out = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .args(["accounts", "list", "--db"])
        .arg(&config.accounts.db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("mallory") && text.contains("trudy"), "{text}");
    drop(fs);
}

#[test]
fn with_tempfail_authenticated_mail_is_deferred_until_a_reload_reopens_the_store() {
    let f = fixture();
    let Some(fs) = Tmpfs::mount(&f.dir.path().join("mnt"), "1m") else {
        eprintln!("skipped: cannot mount tmpfs (not root?)");
        return;
    };
    let mut config = f.config.clone();
    config.accounts.db = fs.dir.join("accounts.redb");
    config.accounts.on_store_error = chaff_milter::config::OnStoreError::Tempfail;
    let h = start(&config);
    for _ in 0..3 {
        assert_eq!(send(h.addr(), Some("mallory"), SPAM).action(), "reject");
    }
    let filler = fill_until_a_write_fails(&h, &fs);

    // Known locks still refuse; other authenticated mail is deferred; mail from
    // senders who did not authenticate is scanned as usual.
    assert_eq!(
        send(h.addr(), Some("mallory"), HAM).reply().as_deref(),
        REFUSED
    );
    assert_eq!(
        send(h.addr(), Some("alice"), HAM).reply().as_deref(),
        Some("451 4.3.0 chaff: account store unavailable, try again later")
    );
    assert_eq!(send(h.addr(), None, HAM).action(), "deliver");
    let m = scrape(&h);
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"store_tempfail\"}"),
        Some(1.0),
        "{m}"
    );

    // A reload (SIGHUP) reopens at once, whatever the backoff.
    std::fs::remove_file(&filler).expect("remove filler");
    let store = h.service().store().expect("store");
    assert!(!store.is_healthy());
    h.reload().expect("reload");
    assert!(store.is_healthy());
    assert!(store.stats().reopens >= 1);
    assert_eq!(send(h.addr(), Some("alice"), HAM).action(), "deliver");
    assert_eq!(
        send(h.addr(), Some("mallory"), HAM).reply().as_deref(),
        REFUSED
    );
    h.shutdown();
    drop(fs);
}
