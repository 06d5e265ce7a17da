//! Per-domain policy and the sender/login match with a real Postfix on loopback,
//! a real SMTP client (swaks, SMTP AUTH through Cyrus SASL) and the `chaff
//! milter` binary behind `smtpd_milters` (issue 12):
//!
//! - the same borderline message is delivered to a recipient domain whose
//!   stored policy raises its thresholds (set with `chaff policy` while the
//!   service runs), and held in Postfix's hold queue for another domain;
//! - an authenticated account sending as another domain gets exactly the
//!   configured reply at the SMTP client; an exempt account is delivered.
//!
//! Needs root and the Debian packages postfix, sasl2-bin, libsasl2-modules and
//! swaks; skipped with a message otherwise.

mod milter_support;

use milter_support::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Env {
    dir: PathBuf,
    config: PathBuf,
    smtp_port: u16,
    chaff: Option<Child>,
    postfix_started: bool,
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

impl Env {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chaff.log")).unwrap_or_default()
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("pf/log/maillog")).unwrap_or_default()
    }

    fn policy(&self, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_chaff"))
            .args(["policy", "--config"])
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends `raw` to `to` with swaks, as `from` (authenticated as `auth`);
    /// (exit status, transcript).
    fn swaks(&self, auth: Option<(&str, &str)>, from: &str, to: &str, raw: &str) -> (i32, String) {
        let file = self.dir.join(format!("msg-{}.eml", free_port()));
        std::fs::write(&file, raw).unwrap();
        let mut cmd = Command::new("swaks");
        cmd.arg("--server")
            .arg(format!("127.0.0.1:{}", self.smtp_port))
            .args(["--helo", "client.test", "--to", to, "--from", from])
            .args(["--timeout", "60"])
            .arg("--data")
            .arg(&file);
        if let Some((user, password)) = auth {
            cmd.args(["--auth", "PLAIN", "--auth-user", user])
                .args(["--auth-password", password]);
        }
        let out = cmd.output().expect("run swaks");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn delivered(&self, marker: &str) -> bool {
        let dir = self.dir.join("pf/mail/inbox/new");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains(marker)
                    {
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

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
fn per_domain_thresholds_and_sender_mismatch_through_postfix() {
    if let Some(why) = missing_postfix_prerequisite(
        &["postfix", "postqueue", "saslpasswd2", "swaks"],
        "postfix sasl2-bin libsasl2-modules swaks",
    ) {
        eprintln!("SKIPPED per_domain_thresholds_and_sender_mismatch_through_postfix: {why}");
        return;
    }
    let f = fixture();
    let root = tempfile::Builder::new()
        .prefix("chaff-policy-")
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
    let config_path = dir.join("chaff.toml");
    write_toml(&config_path, &config, "");
    let mut text = std::fs::read_to_string(&config_path).unwrap();
    // Cyrus SASL names the testenv's logins alice@test.localdomain: that realm
    // is not a mail domain, so it is named as `[accounts] realm` (the last
    // table write_toml writes) and example.com as the domain of bare logins.
    text.push_str(
        "realm = \"test.localdomain\"\n\n[policy]\nsender_mismatch = \"reject\"\ndefault_domain = \"example.com\"\n\
         refresh_ms = 100\n",
    );
    std::fs::write(&config_path, text).unwrap();
    let milter_port = free_port();
    let mut env = Env {
        dir: dir.clone(),
        config: config_path.clone(),
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
            .arg(format!("inet:127.0.0.1:{milter_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", milter_port)).is_err() {
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
        .arg(format!("inet:127.0.0.1:{milter_port}"))
        .status()
        .expect("run postfix-testenv.sh");
    env.postfix_started = true;
    assert!(
        status.success(),
        "postfix did not start:\n{}",
        env.maillog()
    );
    for (user, pw) in [("alice", "alice-secret"), ("lists", "lists-secret")] {
        let s = Command::new(testenv_script())
            .arg("user")
            .arg(dir.join("pf"))
            .args([user, pw])
            .status()
            .unwrap();
        assert!(s.success());
    }

    // example.org (delivered to the test's Maildir) gets thresholds above
    // MEDIUM's score while the service runs.
    let [_, medium, spam] = f.scores;
    env.policy(&[
        "set",
        "domain:example.org",
        "quarantine",
        &format!("{}", medium + 1.0),
    ]);
    env.policy(&[
        "set",
        "domain:example.org",
        "reject",
        &format!("{}", spam + 100.0),
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, t) = env.swaks(
        None,
        "shop@example.com",
        "b@example.org",
        &with_marker(MEDIUM, "medium-lenient"),
    );
    assert_eq!(code, 0, "{t}");
    assert!(
        env.delivered("medium-lenient"),
        "not delivered\n{}",
        env.maillog()
    );
    // The same message to another domain waits in the hold queue.
    let (code, t) = env.swaks(
        None,
        "shop@example.com",
        "c@other.test",
        &with_marker(MEDIUM, "medium-other"),
    );
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

    // alice may send as example.com only; the client sees the configured reply.
    let reply = "553 5.7.1 sender address not owned by the authenticated account";
    let (code, t) = env.swaks(
        Some(("alice", "alice-secret")),
        "ceo@bank.test",
        "b@example.org",
        &with_marker(HAM, "ham-spoof"),
    );
    assert!(
        t.lines().any(|l| l.trim_end().ends_with(reply)),
        "no {reply} in\n{t}\n{}",
        env.log()
    );
    assert_ne!(code, 0);
    let (code, t) = env.swaks(
        Some(("alice", "alice-secret")),
        "alice@example.com",
        "b@example.org",
        &with_marker(HAM, "ham-own"),
    );
    assert_eq!(code, 0, "{t}");
    assert!(env.delivered("ham-own"));
    // An account exempted with `chaff policy` sends as another domain.
    env.policy(&["set", "account:lists", "mismatch_exempt", "true"]);
    std::thread::sleep(Duration::from_millis(300));
    // One inbound message makes the service look at the store.
    env.swaks(None, "a@b.test", "b@example.org", HAM);
    let (code, t) = env.swaks(
        Some(("lists", "lists-secret")),
        "news@bank.test",
        "b@example.org",
        &with_marker(HAM, "ham-lists"),
    );
    assert_eq!(code, 0, "{t}\n{}", env.log());
    assert!(env.delivered("ham-lists"));
}
