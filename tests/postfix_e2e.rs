//! End to end with a real Postfix on loopback and a real SMTP client (swaks):
//! the `chaff milter` binary behind `smtpd_milters`, SMTP AUTH through Cyrus SASL.
//!
//! Checks that spam from an authenticated account gets exactly
//! `557 5.7.1 forbid to send spam mail` at the SMTP client; that quarantined mail
//! waits in Postfix's hold queue; that delivered mail carries the headers; and that
//! an account locked for spamming stays locked across a chaff restart until
//! `chaff accounts unlock`.
//!
//! Needs root and the Debian packages postfix, sasl2-bin, libsasl2-modules and swaks
//! (`.ci/run` installs them); skipped with a message otherwise. The Postfix instance
//! is built by `scripts/postfix-testenv.sh` in a temporary directory, listens on
//! 127.0.0.1 only, delivers example.org to a local Maildir and discards the rest.

mod milter_support;

use milter_support::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops Postfix and chaff however the test ends.
struct Env {
    dir: PathBuf,
    config: PathBuf,
    milter_port: u16,
    metrics_port: u16,
    smtp_port: u16,
    chaff: Option<Child>,
    postfix_started: bool,
}

impl Env {
    fn start_chaff(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("chaff.log"))
            .expect("chaff log");
        let child = Command::new(env!("CARGO_BIN_EXE_chaff"))
            .arg("milter")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{}", self.milter_port))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chaff milter");
        self.chaff = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chaff did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as systemd stops it, then wait.
    fn stop_chaff(&mut self) {
        if let Some(mut c) = self.chaff.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = c.try_wait() {
                    assert!(status.success(), "chaff exited with {status}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("chaff did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chaff.log")).unwrap_or_default()
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("pf/log/maillog")).unwrap_or_default()
    }

    fn chaff_cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_chaff"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run chaff")
    }

    /// Sends `raw` with swaks; returns (exit status, transcript).
    fn swaks(&self, auth: Option<(&str, &str)>, raw: &str) -> (i32, String) {
        let file = self.dir.join(format!("msg-{}.eml", free_port()));
        std::fs::write(&file, raw).unwrap();
        let mut cmd = Command::new("swaks");
        cmd.arg("--server")
            .arg(format!("127.0.0.1:{}", self.smtp_port))
            .args(["--helo", "client.test", "--to", "b@example.org"])
            .args(["--timeout", "60"])
            .arg("--data")
            .arg(&file);
        match auth {
            Some((user, password)) => {
                cmd.args(["--from", "alice@example.com", "--auth", "PLAIN"])
                    .args(["--auth-user", user, "--auth-password", password]);
            }
            None => {
                cmd.args(["--from", "someone@example.com"]);
            }
        }
        let out = cmd.output().expect("run swaks");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The delivered message whose text contains `marker`, waiting for it.
    fn delivered(&self, marker: &str) -> Option<String> {
        let dir = self.dir.join("pf/mail/inbox/new");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    if text.contains(marker) {
                        return Some(text);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Queue ids in the hold queue.
    fn held(&self) -> Vec<String> {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(self.dir.join("pf/etc"))
            .arg("-j")
            .output()
            .expect("postqueue");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["queue_name"] == "hold")
            .filter_map(|v| v["queue_id"].as_str().map(str::to_string))
            .collect()
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

fn queue_id(transcript: &str) -> Option<String> {
    transcript
        .lines()
        .find_map(|l| l.split("queued as ").nth(1))
        .map(|s| s.trim().to_string())
}

fn with_marker(raw: &str, marker: &str) -> String {
    raw.replacen(
        "Subject: ",
        &format!("X-Test-Marker: {marker}\r\nSubject: "),
        1,
    )
}

#[test]
fn postfix_end_to_end() {
    if let Some(why) = missing_postfix_prerequisite(
        &["postfix", "postqueue", "saslpasswd2", "swaks"],
        "postfix sasl2-bin libsasl2-modules swaks",
    ) {
        eprintln!("SKIPPED postfix_end_to_end: {why}");
        return;
    }
    let f = fixture();
    // Postfix's daemons run as `postfix` and must reach the directory.
    let root = tempfile::Builder::new()
        .prefix("chaff-postfix-")
        .tempdir_in("/tmp")
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dir = root.path().to_path_buf();
    let mut config = f.config.clone();
    config.accounts.db = dir.join("accounts.redb");
    config.state.path = dir.join("state.redb");
    config.accounts.lock_after = 2;
    let config_path = dir.join("chaff.toml");
    write_toml(&config_path, &config, "");

    let mut env = Env {
        dir: dir.clone(),
        config: config_path,
        milter_port: free_port(),
        metrics_port: free_port(),
        smtp_port: free_port(),
        chaff: None,
        postfix_started: false,
    };
    env.start_chaff();
    let status = Command::new(testenv_script())
        .arg("start")
        .arg(dir.join("pf"))
        .arg(env.smtp_port.to_string())
        .arg(format!("inet:127.0.0.1:{}", env.milter_port))
        .status()
        .expect("run postfix-testenv.sh");
    env.postfix_started = true;
    assert!(
        status.success(),
        "postfix did not start:\n{}",
        env.maillog()
    );
    for (user, pw) in [("alice", "alice-secret"), ("bob", "bob-secret")] {
        let s = Command::new(testenv_script())
            .arg("user")
            .arg(dir.join("pf"))
            .args([user, pw])
            .status()
            .unwrap();
        assert!(s.success());
    }

    // 1. Clean mail is delivered with chaff's headers, and a sender's forged
    // status header is removed.
    let forged = format!(
        "X-Spam-Status: No, trust me\r\n{}",
        with_marker(HAM, "ham-1")
    );
    let (code, t) = env.swaks(None, &forged);
    assert_eq!(code, 0, "{t}\n{}", env.maillog());
    let msg = env
        .delivered("ham-1")
        .unwrap_or_else(|| panic!("not delivered\n{}", env.maillog()));
    assert!(msg.contains("\nX-Spam-Score: "), "{msg}");
    assert!(msg.contains("\nX-Spam-Status: No, score="), "{msg}");
    assert!(!msg.contains("trust me"), "forged header kept:\n{msg}");
    assert_eq!(msg.matches("X-Spam-Status:").count(), 1, "{msg}");

    // 2. Borderline mail is accepted but held.
    let (code, t) = env.swaks(None, &with_marker(MEDIUM, "medium-1"));
    assert_eq!(code, 0, "{t}");
    let id = queue_id(&t).expect("queue id");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env.held().contains(&id) {
        assert!(
            Instant::now() < deadline,
            "{id} not on hold\n{}",
            env.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // 3. Spam from an authenticated account: the client sees the exact reply.
    let reply_line = "<** 557 5.7.1 forbid to send spam mail";
    for i in 0..2 {
        let (code, t) = env.swaks(Some(("alice", "alice-secret")), SPAM);
        assert!(
            t.lines().any(|l| l.trim_end() == reply_line),
            "spam {i}: no exact 557 line in\n{t}"
        );
        assert_eq!(code, 26, "swaks exits 26 on a refused DATA\n{t}");
    }

    // 4. Two rejects locked alice: clean mail from her is refused too...
    let (_, t) = env.swaks(
        Some(("alice", "alice-secret")),
        &with_marker(HAM, "ham-alice-1"),
    );
    assert!(
        t.lines().any(|l| l.trim_end() == reply_line),
        "not locked\n{t}"
    );
    // ...while bob is unaffected.
    let (code, t) = env.swaks(Some(("bob", "bob-secret")), &with_marker(HAM, "ham-bob"));
    assert_eq!(code, 0, "{t}");

    // 5. The lock survives a restart of chaff.
    env.stop_chaff();
    env.start_chaff();
    let (_, t) = env.swaks(
        Some(("alice", "alice-secret")),
        &with_marker(HAM, "ham-alice-2"),
    );
    assert!(
        t.lines().any(|l| l.trim_end() == reply_line),
        "lock lost on restart\n{t}"
    );

    // 6. The admin sees when and why, and unlocks.
    let out = env.chaff_cmd(&["accounts", "list", "--format", "json"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let lock: serde_json::Value =
        serde_json::from_str(listed.lines().next().unwrap_or("{}")).unwrap();
    let user = lock["user"].as_str().expect("a locked user").to_string();
    assert!(user.starts_with("alice"), "{listed}");
    assert!(
        lock["reason"]
            .as_str()
            .unwrap()
            .starts_with("2 rejected messages within 3600 s"),
        "{listed}"
    );
    let out = env.chaff_cmd(&["accounts", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&user));
    let out = env.chaff_cmd(&["accounts", "unlock", &user]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, t) = env.swaks(
        Some(("alice", "alice-secret")),
        &with_marker(HAM, "ham-alice-3"),
    );
    assert_eq!(code, 0, "still locked after unlock\n{t}");
    assert!(env.delivered("ham-alice-3").is_some());

    // The service logged one line per message and counted them.
    let log = env.log();
    assert!(log.contains("action=reject"), "{log}");
    assert!(log.contains("action=locked"), "{log}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", env.metrics_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    std::io::Read::read_to_string(&mut s, &mut page).unwrap();
    assert_eq!(
        metric(&page, "chaff_milter_locked_accounts"),
        Some(0.0),
        "{page}"
    );
    env.stop_chaff();
}
