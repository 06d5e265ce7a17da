//! Bounces written by a real Postfix, explained by `chaff explain-bounce`.
//!
//! Two throwaway Postfix instances on loopback (`scripts/postfix-testenv.sh`): a
//! sending one (`relay` mode) that relays all mail to a receiving one (`start`
//! mode, with the `chaff milter` binary behind `smtpd_milters`, a few mailboxes,
//! `message_size_limit = 64K` and no relaying for anyone). The receiving one
//! refuses: an unknown local user (550 5.1.1), relaying (554 5.7.1), a message
//! over its size limit (the sending Postfix sees its SIZE and gives up, 5.3.4),
//! and, through chaff, spam (`557 5.7.1 forbid to send spam mail`) and a message
//! over chaff's `max_message_size` (`552 5.3.4`). The sending Postfix writes a
//! delivery status notification for each into a local Maildir, and each is
//! explained with the right cause and codes.
//!
//! Needs root and the Debian packages postfix and swaks; skipped with a message
//! otherwise.

mod milter_support;

use milter_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops both Postfix instances and chaff however the test ends.
struct Env {
    dir: PathBuf,
    chaff: Option<Child>,
    started: Vec<PathBuf>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.chaff.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pf in &self.started {
            let _ = Command::new(testenv_script()).arg("stop").arg(pf).status();
        }
    }
}

impl Env {
    fn logs(&self) -> String {
        let read = |p: &str| std::fs::read_to_string(self.dir.join(p)).unwrap_or_default();
        format!(
            "--- sending maillog\n{}\n--- receiving maillog\n{}\n--- chaff\n{}",
            read("sender/log/maillog"),
            read("receiver/log/maillog"),
            read("chaff.log")
        )
    }
}

/// A message of about `size` bytes from the ham fixture.
fn padded(size: usize) -> String {
    let mut m = HAM.to_string();
    let line = "The quarterly figures are attached below for the review on Thursday.\r\n";
    while m.len() < size {
        m.push_str(line);
    }
    m
}

#[test]
fn bounces_from_a_real_postfix_are_explained() {
    if let Some(why) =
        missing_postfix_prerequisite(&["postfix", "postconf", "swaks"], "postfix swaks")
    {
        eprintln!("SKIPPED bounces_from_a_real_postfix_are_explained: {why}");
        return;
    }
    let f = fixture();
    let root = tempfile::Builder::new()
        .prefix("chaff-bounce-")
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
    text.push_str("\n[limits]\nmax_message_size = \"16K\"\n");
    std::fs::write(&config_path, text).unwrap();

    let mut env = Env {
        dir: dir.clone(),
        chaff: None,
        started: Vec::new(),
    };
    let (milter_port, metrics_port) = (free_port(), free_port());
    let log = std::fs::File::create(dir.join("chaff.log")).unwrap();
    env.chaff = Some(
        Command::new(env!("CARGO_BIN_EXE_chaff"))
            .arg("milter")
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{milter_port}"))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chaff milter"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chaff did not start\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The receiving instance: three mailboxes, 64 KiB at most, relays for nobody.
    let (receiving_port, sending_port) = (free_port(), free_port());
    env.started.push(dir.join("receiver"));
    let status = Command::new(testenv_script())
        .arg("start")
        .arg(dir.join("receiver"))
        .arg(receiving_port.to_string())
        .arg(format!("inet:127.0.0.1:{milter_port}"))
        .env(
            "PF_MAIN_CF_EXTRA",
            "virtual_mailbox_maps = inline:{ b@example.org=inbox/, c@example.org=inbox/, d@example.org=inbox/ }\n\
             message_size_limit = 65536\n\
             smtpd_relay_restrictions = reject_unauth_destination\n",
        )
        .status()
        .expect("run postfix-testenv.sh");
    assert!(
        status.success(),
        "receiving postfix did not start\n{}",
        env.logs()
    );
    env.started.push(dir.join("sender"));
    let status = Command::new(testenv_script())
        .arg("relay")
        .arg(dir.join("sender"))
        .arg(sending_port.to_string())
        .arg(receiving_port.to_string())
        .status()
        .expect("run postfix-testenv.sh");
    assert!(
        status.success(),
        "sending postfix did not start\n{}",
        env.logs()
    );

    // (recipient, message, cause, reply, status)
    let cases: [(&str, String, &str, Option<&str>, &str); 5] = [
        (
            "nobody@example.org",
            HAM.to_string(),
            "unknown-user",
            Some("550"),
            "5.1.1",
        ),
        (
            "someone@elsewhere.test",
            HAM.to_string(),
            "relay-denied",
            Some("554"),
            "5.7.1",
        ),
        (
            "c@example.org",
            padded(100_000),
            "message-too-large",
            None,
            "5.3.4",
        ),
        (
            "d@example.org",
            padded(30_000),
            "message-too-large",
            Some("552"),
            "5.3.4",
        ),
        (
            "b@example.org",
            SPAM.to_string(),
            "spam-account-locked",
            Some("557"),
            "5.7.1",
        ),
    ];
    for (i, (to, raw, ..)) in cases.iter().enumerate() {
        let file = dir.join(format!("msg-{i}.eml"));
        std::fs::write(&file, raw).unwrap();
        let out = Command::new("swaks")
            .arg("--server")
            .arg(format!("127.0.0.1:{sending_port}"))
            .args([
                "--helo",
                "client.test",
                "--from",
                "alice@example.com",
                "--to",
                to,
            ])
            .args(["--timeout", "60", "--data"])
            .arg(&file)
            .output()
            .expect("run swaks");
        assert!(
            out.status.success(),
            "the sending instance refused case {i}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            env.logs()
        );
    }

    // The sending instance bounces each to alice@example.com, delivered locally.
    let inbox = dir.join("sender/mail/inbox");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = std::fs::read_dir(inbox.join("new"))
            .map(|d| d.count())
            .unwrap_or(0);
        if n >= cases.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {} bounces arrived\n{}",
            cases.len(),
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .args(["explain-bounce", "--lang", "en", "--format", "json"])
        .arg(&inbox)
        .output()
        .expect("run chaff explain-bounce");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len(), "{lines:#?}");
    for (to, _, cause, reply, status) in &cases {
        let (line, r) = lines
            .iter()
            .find_map(|l| {
                let r = l["recipients"].as_array()?.first()?;
                (r["address"] == *to).then_some((l, r))
            })
            .unwrap_or_else(|| panic!("no bounce for {to}: {lines:#?}"));
        assert_eq!(line["bounce"], true);
        assert_eq!(line["format"], "dsn", "{line}");
        assert_eq!(line["reporting_mta"], "sender.localdomain", "{line}");
        assert_eq!(r["cause_id"], *cause, "{to}: {line:#}");
        assert_eq!(r["status"], *status, "{to}: {line:#}");
        assert_eq!(
            r["reply"],
            reply.map_or(serde_json::Value::Null, |r| r.into()),
            "{to}: {line:#}"
        );
        assert_eq!(r["remote_mta"], "127.0.0.1", "{to}: {line:#}");
        assert_eq!(r["known"], true);
        if *to == "nobody@example.org" {
            assert_eq!(
                line["original_subject"], "Meeting moved to Thursday",
                "{line:#}"
            );
        }
    }
    // CHAFF_KEEP_BOUNCES=DIR keeps a copy of the notifications (samples for the
    // benchmark were made this way).
    if let Some(keep) = std::env::var_os("CHAFF_KEEP_BOUNCES") {
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(inbox.join("new")).unwrap().flatten() {
            std::fs::copy(e.path(), Path::new(&keep).join(e.file_name())).unwrap();
        }
    }
    drop(env);
}
