//! Releasing quarantined mail, with a real Postfix on loopback and the `chaff
//! milter` binary behind its `smtpd_milters` (crates/milter/src/release).
//!
//! - Store mode: a message chaff would reject, sent by `release::deliver` to the
//!   Postfix with a release token, is delivered unscanned to each original
//!   recipient exactly once, with the original envelope sender as Return-Path,
//!   without the token header; the milter logs it as released and counts it. The
//!   same message with a forged, expired or replayed token is scanned and
//!   rejected with chaff's 557, and of one token sent twice at once, one copy
//!   arrives.
//! - The relay's answers per recipient: a recipient refused with 5xx or 4xx by
//!   Postfix's `smtpd_recipient_restrictions` is reported as such, beside those
//!   accepted.
//! - Hold mode: a message the milter quarantined waits in Postfix's hold queue;
//!   `release::deliver` in hold mode (`postsuper -H`, `postqueue -i`) frees it
//!   and it is delivered; a second release finds it gone.
//!
//! Needs root and the Debian packages postfix and swaks (`.ci/run` installs
//! them); skipped with a message otherwise. Each test runs its own Postfix
//! (`scripts/postfix-testenv.sh`) and chaff on free ports under a temporary
//! directory.

mod milter_support;

use chaff_milter::release::{
    self, Delivery, HoldOutcome, Postfix, RelayOutcome, ReleaseConfig, ReleaseKey, ReleaseMode,
    ReleaseRequest, Settlement, Stage, token,
};
use milter_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chaff and Postfix, stopped however the test ends.
struct Env {
    _root: tempfile::TempDir,
    dir: PathBuf,
    milter_port: u16,
    metrics_port: u16,
    smtp_port: u16,
    chaff: Option<Child>,
    postfix_started: bool,
}

impl Env {
    /// Starts chaff (thresholds between the fixture's messages, a release key)
    /// and a Postfix with the `main.cf` lines `main_cf_extra` writes (given the
    /// test's directory); `None` when the tests cannot run here.
    fn start(name: &str, main_cf_extra: impl FnOnce(&Path) -> String) -> Option<Env> {
        if let Some(why) = missing_postfix_prerequisite(
            &["postfix", "postqueue", "postsuper", "swaks"],
            "postfix swaks",
        ) {
            eprintln!("SKIPPED {name}: {why}");
            return None;
        }
        let f = fixture();
        let root = tempfile::Builder::new()
            .prefix("chaff-release-")
            .tempdir_in("/tmp")
            .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // Postfix's daemons run as `postfix` and must reach the directory.
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = root.path().to_path_buf();
        let mut config = f.config.clone();
        config.accounts.db = dir.join("accounts.redb");
        config.state.path = dir.join("state.redb");
        config.quarantine.release_key = Some(dir.join("release.key"));
        let config_path = dir.join("chaff.toml");
        write_toml(&config_path, &config, "");
        let mut env = Env {
            _root: root,
            dir: dir.clone(),
            milter_port: free_port(),
            metrics_port: free_port(),
            smtp_port: free_port(),
            chaff: None,
            postfix_started: false,
        };
        let log = std::fs::File::create(dir.join("chaff.log")).unwrap();
        env.chaff = Some(
            Command::new(env!("CARGO_BIN_EXE_chaff"))
                .arg("milter")
                .arg("--config")
                .arg(&config_path)
                .arg("--listen")
                .arg(format!("inet:127.0.0.1:{}", env.milter_port))
                .arg("--metrics")
                .arg(format!("127.0.0.1:{}", env.metrics_port))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start chaff milter"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", env.metrics_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chaff did not start: {}",
                env.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = Command::new(testenv_script())
            .arg("start")
            .arg(dir.join("pf"))
            .arg(env.smtp_port.to_string())
            .arg(format!("inet:127.0.0.1:{}", env.milter_port))
            .env("PF_MAIN_CF_EXTRA", main_cf_extra(&dir))
            .status()
            .expect("run postfix-testenv.sh");
        env.postfix_started = true;
        assert!(
            status.success(),
            "postfix did not start:\n{}",
            env.maillog()
        );
        Some(env)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chaff.log")).unwrap_or_default()
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("pf/log/maillog")).unwrap_or_default()
    }

    /// The key the service made at start, read as the release command does.
    fn key(&self) -> ReleaseKey {
        ReleaseKey::load(&self.dir.join("release.key")).expect("the service made the key")
    }

    fn config(&self) -> ReleaseConfig {
        let mut c = ReleaseConfig {
            key: Some(self.key()),
            postfix: Postfix {
                config_dir: Some(self.dir.join("pf/etc")),
                ..Postfix::default()
            },
            ..ReleaseConfig::default()
        };
        c.relay.address = format!("127.0.0.1:{}", self.smtp_port);
        c
    }

    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut page = String::new();
        s.read_to_string(&mut page).unwrap();
        page
    }

    /// Queue files of every queue, as `postqueue -j` lists them.
    fn queue(&self) -> Vec<serde_json::Value> {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(self.dir.join("pf/etc"))
            .arg("-j")
            .output()
            .expect("postqueue");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The delivered messages containing `marker`, once `want` of them have
    /// arrived and the queue is empty (so none is still on its way), or after 20
    /// seconds.
    fn delivered(&self, marker: &str, want: usize) -> Vec<String> {
        let dir = self.dir.join("pf/mail/inbox/new");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found: Vec<String> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                        .filter(|t| t.contains(marker))
                        .collect()
                })
                .unwrap_or_default();
            if (found.len() >= want && self.queue().is_empty()) || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.chaff.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.postfix_started {
            let _ = Command::new(testenv_script())
                .arg("stop")
                .arg(self.dir.join("pf"))
                .status();
        }
    }
}

fn with_marker(raw: &str, marker: &str) -> String {
    raw.replacen(
        "Subject: ",
        &format!("X-Test-Marker: {marker}\r\nSubject: "),
        1,
    )
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .collect()
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn store_request<'a>(
    id: &'a str,
    sender: Option<&'a str>,
    to: &'a [String],
    raw: &'a [u8],
) -> ReleaseRequest<'a> {
    ReleaseRequest {
        id,
        sender,
        recipients: to,
        raw,
        queue_id: None,
        mode: ReleaseMode::Store,
    }
}

fn rejected_with_557(out: &RelayOutcome) -> bool {
    matches!(out, RelayOutcome::Rejected { stage: Stage::Message, reply, .. }
        if reply.to_string() == "557 5.7.1 forbid to send spam mail")
}

#[test]
fn store_release_delivers_once_unscanned_and_only_with_a_good_token() {
    let Some(env) = Env::start("store_release", |_| String::new()) else {
        return;
    };
    let config = env.config();
    let spam = with_marker(SPAM, "released-1");
    let to = rcpts(&["b@example.org", "c@example.org"]);

    // 0. Without a token this message is refused at the end of DATA.
    let plain = release::smtp::send(
        &config.relay,
        Some("boss@example.com"),
        &to,
        spam.as_bytes(),
    )
    .unwrap();
    assert!(rejected_with_557(&plain), "{plain:?}\n{}", env.maillog());

    // 1. Released: delivered, once per recipient, with the original envelope.
    let d = release::deliver(
        &store_request("STORE-1", Some("boss@example.com"), &to, spam.as_bytes()),
        &config,
    )
    .unwrap();
    assert_eq!(
        d.settlement(),
        Settlement::Released,
        "{d}\n{}",
        env.maillog()
    );
    let Delivery::Relayed(RelayOutcome::Delivered {
        queue_id,
        recipients,
        ..
    }) = &d
    else {
        panic!("{d:?}");
    };
    assert!(queue_id.is_some(), "{d:?}");
    assert!(recipients.iter().all(|r| r.accepted && r.reply.code == 250));
    let got = env.delivered("released-1", 2);
    assert_eq!(got.len(), 2, "one copy per recipient\n{}", env.maillog());
    let mut delivered_to: Vec<&str> = got.iter().flat_map(|m| header(m, "Delivered-To")).collect();
    delivered_to.sort();
    assert_eq!(delivered_to, ["b@example.org", "c@example.org"]);
    for m in &got {
        assert_eq!(header(m, "Return-Path"), ["<boss@example.com>"], "{m}");
        assert!(
            !m.contains("X-Chaff-Release"),
            "token header delivered:\n{m}"
        );
        // Not scanned: chaff adds its headers to every message it scans.
        assert!(!m.contains("X-Spam-Status"), "{m}");
        // The body arrived as it was sent (the token was made for it).
        assert!(m.contains("代开发票！代开各类发票"), "{m}");
    }
    let log = env.log();
    assert!(log.contains("released STORE-1"), "{log}");
    let page = env.metrics();
    assert_eq!(
        metric(&page, "chaff_milter_released_total"),
        Some(1.0),
        "{page}"
    );

    // 2. The null sender is kept: Return-Path <>.
    let bounce = with_marker(SPAM, "released-null");
    let one = rcpts(&["b@example.org"]);
    let d = release::deliver(
        &store_request("STORE-2", None, &one, bounce.as_bytes()),
        &config,
    )
    .unwrap();
    assert_eq!(d.settlement(), Settlement::Released, "{d}");
    let got = env.delivered("released-null", 1);
    assert_eq!(got.len(), 1);
    assert_eq!(header(&got[0], "Return-Path"), ["<>"], "{}", got[0]);

    // 3. Forged (another key), expired, or replayed: scanned, and refused.
    let body = token::body_of(spam.as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged_key = ReleaseKey::from_bytes([7; 32]);
    let forged = token::prefixed(
        spam.as_bytes(),
        &token::issue(&forged_key, "STORE-1", body, now, 3600).unwrap(),
    );
    let expired = token::prefixed(
        spam.as_bytes(),
        &token::issue(&env.key(), "STORE-1", body, now - 7200, 3600).unwrap(),
    );
    let once = token::prefixed(
        spam.as_bytes(),
        &token::issue(&env.key(), "STORE-3", body, now, 3600).unwrap(),
    );
    for (what, message) in [("forged", &forged), ("expired", &expired)] {
        let out =
            release::smtp::send(&config.relay, Some("boss@example.com"), &one, message).unwrap();
        assert!(rejected_with_557(&out), "{what}: {out:?}");
    }
    let first = release::smtp::send(&config.relay, Some("boss@example.com"), &one, &once).unwrap();
    assert!(matches!(first, RelayOutcome::Delivered { .. }), "{first:?}");
    let replay = release::smtp::send(&config.relay, Some("boss@example.com"), &one, &once).unwrap();
    assert!(rejected_with_557(&replay), "replayed: {replay:?}");
    // Of one token sent twice at once, one is delivered and the other scanned.
    let twice = token::prefixed(
        spam.as_bytes(),
        &token::issue(&env.key(), "STORE-4", body, now, 3600).unwrap(),
    );
    let outs: Vec<RelayOutcome> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    release::smtp::send(&config.relay, Some("boss@example.com"), &one, &twice)
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let delivered = outs
        .iter()
        .filter(|o| matches!(o, RelayOutcome::Delivered { .. }))
        .count();
    assert_eq!(delivered, 1, "{outs:?}");
    assert_eq!(
        outs.iter().filter(|o| rejected_with_557(o)).count(),
        1,
        "{outs:?}"
    );

    let page = env.metrics();
    for (reason, n) in [("bad_mac", 1.0), ("expired", 1.0), ("replayed", 2.0)] {
        assert_eq!(
            metric(
                &page,
                &format!("chaff_milter_release_tokens_refused_total{{reason=\"{reason}\"}}")
            ),
            Some(n),
            "{reason}\n{page}"
        );
    }
    assert_eq!(
        metric(&page, "chaff_milter_released_total"),
        Some(4.0),
        "{page}"
    );
    // Every release delivered once, never more: STORE-1 to two recipients,
    // STORE-3 and STORE-4 to one.
    let copies = env.delivered("released-1", 4);
    assert_eq!(copies.len(), 4, "{}", env.maillog());
    let log = env.log();
    assert!(
        log.contains("release token ignored, message scanned"),
        "the first refusal is logged with its reason:\n{log}"
    );
}

#[test]
fn relay_results_are_reported_per_recipient() {
    // Postfix refuses two recipients at RCPT, one for good and one for now.
    let Some(env) = Env::start("relay_results", |dir| {
        let access = dir.join("access");
        std::fs::write(
            &access,
            "nobody@example.org 550 5.1.1 <nobody@example.org>: no such user here\n\
             later@example.org 450 4.2.1 <later@example.org>: try again later\n",
        )
        .unwrap();
        format!(
            "smtpd_recipient_restrictions = check_recipient_access texthash:{}",
            access.display()
        )
    }) else {
        return;
    };
    let config = env.config();
    let ham = with_marker(HAM, "partial-1");

    let d = release::deliver(
        &store_request(
            "P-1",
            Some("li.wei@example.com"),
            &rcpts(&["b@example.org", "nobody@example.org", "later@example.org"]),
            ham.as_bytes(),
        ),
        &config,
    )
    .unwrap();
    assert_eq!(d.settlement(), Settlement::Released, "{d}");
    let Delivery::Relayed(out) = &d else {
        panic!("{d:?}")
    };
    let by: Vec<(&str, bool, u16)> = out
        .recipients()
        .iter()
        .map(|r| (r.recipient.as_str(), r.accepted, r.reply.code))
        .collect();
    assert_eq!(
        by,
        [
            ("b@example.org", true, 250),
            ("nobody@example.org", false, 550),
            ("later@example.org", false, 450)
        ]
    );
    let refused: Vec<String> = out.refused().map(|r| r.reply.to_string()).collect();
    assert_eq!(
        refused,
        [
            "550 5.1.1 <nobody@example.org>: Recipient address rejected: \
             <nobody@example.org>: no such user here",
            "450 4.2.1 <later@example.org>: Recipient address rejected: \
             <later@example.org>: try again later"
        ]
    );
    assert!(
        d.to_string().contains("refused: nobody@example.org (550"),
        "{d}"
    );
    assert_eq!(env.delivered("partial-1", 1).len(), 1);

    // Every recipient refused: permanent only when no refusal is temporary.
    let only = |list: &[&str]| {
        release::deliver(
            &store_request("P-2", None, &rcpts(list), ham.as_bytes()),
            &config,
        )
        .unwrap()
    };
    let d = only(&["nobody@example.org"]);
    assert_eq!(d.settlement(), Settlement::NotDelivered);
    assert!(
        matches!(&d, Delivery::Relayed(RelayOutcome::Rejected { stage: Stage::Rcpt, reply, .. }) if reply.code == 550),
        "{d:?}"
    );
    let d = only(&["nobody@example.org", "later@example.org"]);
    assert!(
        matches!(&d, Delivery::Relayed(RelayOutcome::TemporaryFailure { stage: Stage::Rcpt, reply: Some(r), .. }) if r.code == 450),
        "{d:?}"
    );
    assert_eq!(d.settlement(), Settlement::NotDelivered);
}

#[test]
fn hold_release_frees_the_held_queue_file() {
    let Some(env) = Env::start("hold_release", |_| String::new()) else {
        return;
    };
    let msg = env.dir.join("medium.eml");
    std::fs::write(&msg, with_marker(MEDIUM, "held-1")).unwrap();
    let out = Command::new("swaks")
        .arg("--server")
        .arg(format!("127.0.0.1:{}", env.smtp_port))
        .args(["--helo", "client.test", "--from", "shop@example.com"])
        .args(["--to", "b@example.org", "--timeout", "60", "--data"])
        .arg(&msg)
        .output()
        .expect("swaks");
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{t}");
    let queue_id = t
        .lines()
        .find_map(|l| l.split("queued as ").nth(1))
        .map(|s| s.trim().to_string())
        .expect("queue id");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .queue()
        .iter()
        .any(|e| e["queue_id"] == queue_id.as_str() && e["queue_name"] == "hold")
    {
        assert!(
            Instant::now() < deadline,
            "{queue_id} not held\n{}",
            env.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let config = env.config();
    let request = ReleaseRequest {
        id: "HOLD-1",
        sender: Some("shop@example.com"),
        recipients: &[],
        raw: b"",
        queue_id: Some(&queue_id),
        mode: ReleaseMode::Hold,
    };
    let d = release::deliver(&request, &config).unwrap();
    assert_eq!(d.settlement(), Settlement::Released, "{d}");
    assert!(
        matches!(
            &d,
            Delivery::Unheld(HoldOutcome::Released {
                flush_failed: None,
                ..
            })
        ),
        "{d:?}"
    );
    let got = env.delivered("held-1", 1);
    assert_eq!(got.len(), 1, "{}", env.maillog());
    assert_eq!(header(&got[0], "Return-Path"), ["<shop@example.com>"]);
    // Scanned once, when it arrived: its headers say quarantine.
    assert!(got[0].contains("action=quarantine"), "{}", got[0]);

    // Released already and delivered: nothing to do, and not "released" again.
    let d = release::deliver(&request, &config).unwrap();
    assert_eq!(d, Delivery::Unheld(HoldOutcome::NotFound));
    assert_eq!(d.settlement(), Settlement::InDoubt);
    assert_eq!(env.delivered("held-1", 1).len(), 1);
}

#[test]
fn the_documented_sudo_rule_parses() {
    // sudo's own checker (Debian package sudo; skipped without it). Which
    // arguments the rule allows was checked with `sudo -U USER -l postsuper ...`
    // against the rule installed under /etc/sudoers.d: `-H 3F1A22C0B1` yes;
    // `-H ALL`, `-H -`, `-H x -d ALL`, `-d ID`, `-c DIR -H ID` no.
    let rule = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sudoers.chaff");
    let Ok(out) = Command::new("visudo").arg("-cf").arg(&rule).output() else {
        eprintln!(
            "SKIPPED the_documented_sudo_rule_parses: visudo is not installed (apt-get install sudo)"
        );
        return;
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&rule).unwrap();
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty());
    assert_eq!(
        line,
        Some("chaff ALL=(root) NOPASSWD: /usr/sbin/postsuper ^-H [0-9A-Za-z]{6,32}$")
    );
}
