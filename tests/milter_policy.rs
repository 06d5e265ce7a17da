//! Per-domain, per-recipient and per-account policy and the sender/login match
//! (issue 12) with the real `chaff milter` binary, chaff's MTA-side client and
//! the real HTTP listener:
//!
//! - per-domain thresholds: the same message is delivered for one recipient
//!   domain and held for another, and held when sent to both (the strictest
//!   applies); a domain's block list refuses it for that domain's recipients;
//! - a policy edited with `chaff policy` (another process) takes effect in the
//!   running service without a restart, within `[policy] refresh_ms`;
//! - sender/login mismatch (envelope sender or `From:`) gets the configured
//!   action; an exempt account (stored, or `[policy] mismatch_exempt`) and an
//!   account's aliases do not;
//! - `/api/policy` refuses `read` and `scan` users, applies an admin's change to
//!   the next message, and writes it to the action log; `/checkv2` with `User:`
//!   shows `CHAFF_SENDER_MISMATCH` with its points.

mod milter_support;

use chaff_milter::client::{Answer, Client, Submission};
use chaff_milter::config::QuarantineMode;
use milter_support::{HAM, MEDIUM, fixture, free_port, write_toml};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHAFF: &str = env!("CARGO_BIN_EXE_chaff");

struct Service {
    child: Child,
    milter: String,
    http: u16,
    log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn start(dir: &Path, config: &Path) -> Service {
        let http = free_port();
        let milter = free_port();
        let log = dir.join("milter.log");
        let child = Command::new(CHAFF)
            .arg("milter")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{milter}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{http}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Service {
            child,
            milter: format!("inet:127.0.0.1:{milter}"),
            http,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", http)).is_err()
            || TcpStream::connect(("127.0.0.1", milter)).is_err()
        {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("chaff milter exited ({status}):\n{}", s.log_text());
            }
            assert!(Instant::now() < deadline, "chaff milter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `raw` through the milter as the MTA would.
    fn send(&self, auth: Option<&str>, sender: &str, rcpts: &[&str], raw: &str) -> Answer {
        let mut c = Client::connect(&self.milter).expect("connect");
        c.smtp_connect("client.test", "192.0.2.10")
            .expect("connect info");
        let env = Submission {
            sender,
            recipients: rcpts.to_vec(),
            auth_user: auth,
            queue_id: Some("QPOLICY"),
        };
        let a = c.message(&env, raw.as_bytes()).expect("message");
        let _ = c.quit();
        a
    }

    /// One HTTP request; status and body.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        head: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {token}\r\n{head}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let mut s = TcpStream::connect(("127.0.0.1", self.http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer to {method} {path}"));
        let status = String::from_utf8_lossy(&out[..split])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, out[split + 4..].to_vec())
    }

    fn api(&self, method: &str, path: &str, token: &str, json: &str) -> (u16, Value) {
        let (status, body) = self.call(
            method,
            path,
            token,
            "Content-Type: application/json\r\n",
            json.as_bytes(),
        );
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, v)
    }
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(CHAFF)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    text
}

fn add_user(users: &Path, name: &str, role: &str) -> String {
    let out = Command::new(CHAFF)
        .arg("users")
        .arg("--file")
        .arg(users)
        .args(["add", name, "--role", role, "--token", "--no-password"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The fixture in hold mode with users and `policy` as the `[policy]` table;
/// the config file, the fixture and the tokens (read, scan, admin).
fn setup(policy: &str) -> (milter_support::Fixture, PathBuf, [String; 3]) {
    let mut f = fixture();
    f.config.quarantine.mode = QuarantineMode::Hold;
    let dir = f.dir.path();
    let users = dir.join("users.toml");
    let tokens = [
        add_user(&users, "viewer", "read"),
        add_user(&users, "scanner", "scan"),
        add_user(&users, "admin", "admin"),
    ];
    let config = dir.join("chaff.toml");
    write_toml(&config, &f.config, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[users]\nfile = {:?}\n\n[policy]\nrefresh_ms = 200\n{policy}\n",
        users.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    (f, config, tokens)
}

/// Sends until `want` is the action (a policy edited elsewhere applies within
/// `refresh_ms`), at most 10 s.
fn eventually(svc: &Service, rcpts: &[&str], raw: &str, want: &str) -> Duration {
    let started = Instant::now();
    loop {
        let a = svc.send(None, "shop@example.com", rcpts, raw);
        if a.action() == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {} for {rcpts:?}, wanted {want}:\n{}",
            a.action(),
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn per_domain_thresholds_and_lists_edited_by_cli_apply_without_restart() {
    let (f, config, _) = setup("");
    let svc = Service::start(f.dir.path(), &config);
    let [_, medium, spam] = f.scores;
    // Globally, MEDIUM is held for everyone.
    assert_eq!(
        svc.send(None, "shop@example.com", &["a@lenient.test"], MEDIUM)
            .action(),
        "quarantine"
    );
    // The lenient domain raises its thresholds above MEDIUM's score; the
    // running service picks the edit up from the store.
    let q = format!("{}", medium + 1.0);
    let r = format!("{}", spam + 100.0);
    ok(cli(
        &config,
        &["policy", "set", "domain:Lenient.test", "quarantine", &q],
    ));
    ok(cli(
        &config,
        &["policy", "set", "domain:lenient.test", "reject", &r],
    ));
    let took = eventually(&svc, &["a@lenient.test"], MEDIUM, "deliver");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The same message is held for another domain, and for both together
    // (the strictest applies), whatever the order.
    assert_eq!(
        svc.send(None, "shop@example.com", &["b@other.test"], MEDIUM)
            .action(),
        "quarantine"
    );
    let both = svc.send(
        None,
        "shop@example.com",
        &["a@lenient.test", "b@other.test"],
        MEDIUM,
    );
    assert_eq!(both.action(), "quarantine");
    let status = both.header("X-Spam-Status").unwrap_or_default().to_string();
    assert!(status.contains("policy=domain:lenient.test"), "{status}");
    assert_eq!(
        svc.send(
            None,
            "shop@example.com",
            &["b@other.test", "a@lenient.test"],
            MEDIUM
        )
        .action(),
        "quarantine"
    );
    // A recipient of the lenient domain with its own lower quarantine
    // threshold is held; its domain's reject threshold still holds.
    ok(cli(
        &config,
        &[
            "policy",
            "set",
            "recipient:boss@lenient.test",
            "quarantine",
            "-1000",
        ],
    ));
    eventually(&svc, &["boss@lenient.test"], HAM, "quarantine");
    assert_eq!(
        svc.send(None, "shop@example.com", &["a@lenient.test"], HAM)
            .action(),
        "deliver"
    );
    // A domain's block list refuses the sender for that domain only; block
    // beats the other recipient's leniency.
    ok(cli(
        &config,
        &[
            "policy",
            "set",
            "domain:strict.test",
            "block",
            "example.com",
        ],
    ));
    eventually(&svc, &["a@strict.test", "a@lenient.test"], HAM, "reject");
    assert_eq!(
        svc.send(None, "shop@example.com", &["a@lenient.test"], HAM)
            .action(),
        "deliver"
    );
    // Unset: back to the global thresholds.
    ok(cli(
        &config,
        &["policy", "unset", "domain:lenient.test", "quarantine"],
    ));
    ok(cli(
        &config,
        &["policy", "unset", "domain:lenient.test", "reject"],
    ));
    eventually(&svc, &["a@lenient.test"], MEDIUM, "quarantine");
    let listed = ok(cli(&config, &["policy", "list"]));
    assert!(
        listed.contains("domain:strict.test") && !listed.contains("domain:lenient.test"),
        "{listed}"
    );
    // Every edit is in the action log, under the user who made it.
    let store = chaff_milter::quarantine::StateStore::open_existing(&f.config.state.path).unwrap();
    let actions = store.actions(100).unwrap();
    assert!(
        actions
            .iter()
            .filter(|a| a.what.starts_with("policy-"))
            .count()
            >= 6,
        "{actions:?}"
    );
}

#[test]
fn sender_login_mismatch_gets_the_configured_action_unless_exempt() {
    let (f, config, _) = setup(
        "sender_mismatch = \"reject\"\ndefault_domain = \"example.com\"\n\
         mismatch_exempt = [\"lists\"]\n",
    );
    let svc = Service::start(f.dir.path(), &config);
    // HAM's From: is li.wei@example.com.
    let own = svc.send(Some("alice"), "alice@example.com", &["x@else.test"], HAM);
    assert_eq!(own.action(), "deliver", "{own:?}");
    let full = svc.send(
        Some("alice@example.com"),
        "alice@example.com",
        &["x@else.test"],
        HAM,
    );
    assert_eq!(full.action(), "deliver");
    // Another envelope domain: refused with the configured reply.
    let a = svc.send(Some("alice"), "ceo@bank.test", &["x@else.test"], HAM);
    assert_eq!(a.action(), "reject");
    assert!(
        a.reply().unwrap_or_default().starts_with("553 5.7.1"),
        "{a:?}"
    );
    // A From: header of another domain is refused too.
    let spoof = HAM.replace("From: li.wei@example.com", "From: \"CEO\" <ceo@bank.test>");
    assert_eq!(
        svc.send(Some("alice"), "alice@example.com", &["x@else.test"], &spoof)
            .action(),
        "reject"
    );
    // An exempt account (configured, or stored with `chaff policy`) and an
    // account with an alias are not refused.
    assert_eq!(
        svc.send(Some("lists"), "ceo@bank.test", &["x@else.test"], &spoof)
            .action(),
        "deliver"
    );
    ok(cli(
        &config,
        &["policy", "set", "account:relay", "mismatch_exempt", "true"],
    ));
    ok(cli(
        &config,
        &["policy", "set", "account:bob", "aliases", "bank.test"],
    ));
    // Refused mail counts toward the account's lock (`[accounts] lock_after`),
    // so wait for the service to load the edits (revision 2) before sending as
    // the exempt account (the service looks at the store when a message comes,
    // at most every refresh_ms: inbound mail, which no lock counts, brings it).
    let started = Instant::now();
    while !svc.log_text().contains("stored policies loaded revision=2") {
        svc.send(None, "a@b.test", &["x@example.com"], HAM);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        svc.send(Some("relay"), "ceo@bank.test", &["x@else.test"], &spoof)
            .action(),
        "deliver"
    );
    assert_eq!(
        svc.send(Some("bob"), "ceo@bank.test", &["x@else.test"], &spoof)
            .action(),
        "deliver"
    );
    assert_eq!(
        svc.send(Some("bob"), "bob@evil.test", &["x@else.test"], HAM)
            .action(),
        "reject"
    );
    // Inbound mail is never checked.
    assert_eq!(
        svc.send(None, "ceo@bank.test", &["x@example.com"], &spoof)
            .action(),
        "deliver"
    );
}

#[test]
fn api_policy_is_admin_only_applies_at_once_and_checkv2_explains_a_mismatch() {
    let (f, config, [read, scan, admin]) = setup(
        "sender_mismatch = \"points\"\nmismatch_points = 3.5\ndefault_domain = \"example.com\"\n",
    );
    // Long refresh: the API's edit must not wait for it.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("refresh_ms = 200", "refresh_ms = 60000");
    std::fs::write(&config, text).unwrap();
    let svc = Service::start(f.dir.path(), &config);
    for token in [&read, &scan] {
        assert_eq!(svc.api("GET", "/api/policy", token, "").0, 403);
        assert_eq!(
            svc.api(
                "PUT",
                "/api/policy/domain:x.test/quarantine",
                token,
                r#"{"value":"1"}"#
            )
            .0,
            403
        );
        assert_eq!(
            svc.api(
                "DELETE",
                "/api/policy/domain:x.test/quarantine",
                token,
                "{}"
            )
            .0,
            403
        );
    }
    assert_eq!(svc.api("GET", "/api/policy", "wrong-token", "").0, 401);
    assert_eq!(
        svc.send(None, "shop@example.com", &["a@x.test"], HAM)
            .action(),
        "deliver"
    );
    let (status, v) = svc.api(
        "PUT",
        "/api/policy/domain:X.test/quarantine",
        &admin,
        r#"{"value":"-1000"}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["scope"], "domain:x.test");
    assert_eq!(v["rule"]["quarantine"], -1000.0);
    assert_eq!(v["rule"]["by"], "http:admin");
    // Applied from the next message, though refresh_ms is a minute.
    assert_eq!(
        svc.send(None, "shop@example.com", &["a@x.test"], HAM)
            .action(),
        "quarantine"
    );
    let (status, v) = svc.api(
        "PUT",
        "/api/policy/domain:x.test/quarantine",
        &admin,
        r#"{"value":"high"}"#,
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = svc.api(
        "PUT",
        "/api/policy/domain:x.test/aliases",
        &admin,
        r#"{"value":"y.test"}"#,
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = svc.api("GET", "/api/policy", &admin, "");
    assert_eq!(status, 200);
    assert_eq!(v["policies"][0]["scope"], "domain:x.test");
    assert_eq!(v["sender_mismatch"], "points");
    assert_eq!(
        svc.api("GET", "/api/policy/domain:x.test", &admin, "").0,
        200
    );
    assert_eq!(
        svc.api("GET", "/api/policy/domain:none.test", &admin, "").0,
        404
    );
    let (status, v) = svc.api(
        "DELETE",
        "/api/policy/domain:x.test/quarantine",
        &admin,
        "{}",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rule"], Value::Null);
    assert_eq!(
        svc.send(None, "shop@example.com", &["a@x.test"], HAM)
            .action(),
        "deliver"
    );
    let (_, actions) = svc.api("GET", "/api/actions", &admin, "");
    let log = actions.to_string();
    assert!(
        log.contains("policy-set") && log.contains("policy-unset") && log.contains("http:admin"),
        "{log}"
    );
    // /checkv2 with User from a scan user: the mismatch's symbol and points.
    let (status, body) = svc.call(
        "POST",
        "/checkv2",
        &scan,
        "User: alice\r\nFrom: ceo@bank.test\r\nRcpt: x@else.test\r\n",
        HAM.as_bytes(),
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let sym = &v["symbols"]["CHAFF_SENDER_MISMATCH"];
    assert_eq!(sym["score"], 3.5, "{v}");
    let options = sym["options"].to_string();
    assert!(
        options.contains("mail_from=ceo@bank.test") && options.contains("alice"),
        "{options}"
    );
    let sum: f64 = v["symbols"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["score"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((sum - v["score"].as_f64().unwrap()).abs() < 1e-6, "{v}");
    // Without the mismatch, no symbol.
    let (_, body) = svc.call(
        "POST",
        "/checkv2",
        &scan,
        "User: alice\r\nFrom: alice@example.com\r\nRcpt: x@else.test\r\n",
        HAM.as_bytes(),
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["symbols"].get("CHAFF_SENDER_MISMATCH").is_none(), "{v}");
}
