//! The admin API (issue 10) on the real `chaff milter` binary: messages are put
//! in its quarantine by sending them through the milter with chaff's MTA-side
//! client, then read and acted on over HTTP with users made by `chaff users`:
//! roles (no token 401, a lower role 403, `read` never gets the raw message),
//! the list filtered and paged, one entry with its hits located in the decoded
//! text, the raw message byte for byte, delete (twice: 409 with who and when),
//! bulk actions, the allow and block lists (stored, listed with their source,
//! applied at once; entries of chaff.toml refused), history and counts kept
//! across a restart, the dashboard's summary, the action log, and errors that
//! name the field.

mod milter_support;

use chaff_milter::client::{Answer, Client, Submission};
use chaff_milter::config::QuarantineMode;
use chaff_milter::quarantine::EntryId;
use milter_support::{HAM, MEDIUM, SPAM, fixture, free_port, write_toml};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHAFF: &str = env!("CARGO_BIN_EXE_chaff");

/// A `chaff milter` with its HTTP listener; killed when dropped.
struct Service {
    child: Child,
    milter: String,
    port: u16,
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
        let port = free_port();
        let milter = free_port();
        let log = dir.join(format!("milter-{port}.log"));
        let child = Command::new(CHAFF)
            .arg("milter")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{milter}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Service {
            child,
            milter: format!("inet:127.0.0.1:{milter}"),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
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

    /// SIGTERM; the process must exit 0 within 20 s (it writes what it holds).
    fn stop(mut self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}:\n{}", self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "no exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `raw` through the milter as the MTA would.
    fn send(&self, sender: &str, rcpts: &[&str], qid: &str, raw: &str) -> Answer {
        let mut c = Client::connect(&self.milter).expect("connect");
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

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer to {method} {path}"));
        let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
        let body = out[split + 4..].to_vec();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Reply { status, head, body }
    }

    fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call("GET", path, token, None)
    }

    fn post(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        self.call("POST", path, token, Some(body))
    }

    /// GET that must answer 200 with JSON.
    fn json(&self, path: &str, token: &str) -> Value {
        let r = self.get(path, Some(token));
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }
}

/// An HTTP answer: status, head (lowercased), body.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A user made with `chaff users add`; its token.
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

/// Tokens of a `read`, a `scan` and an `admin` user.
struct Tokens {
    read: String,
    scan: String,
    admin: String,
}

/// The fixture (its own state store and account store in its own directory) in
/// `mode`, keeping rejected mail, with users, and `extra` appended to chaff.toml.
fn setup(mode: QuarantineMode, extra: &str) -> (milter_support::Fixture, PathBuf, Tokens) {
    setup_relay(mode, extra, None)
}

/// [`setup`] with `[quarantine] release_relay`.
fn setup_relay(
    mode: QuarantineMode,
    extra: &str,
    relay: Option<String>,
) -> (milter_support::Fixture, PathBuf, Tokens) {
    let mut f = fixture();
    f.config.quarantine.mode = mode;
    f.config.quarantine.keep_rejected = true;
    f.config.quarantine.release_relay = relay;
    let dir = f.dir.path();
    let users = dir.join("users.toml");
    let tokens = Tokens {
        read: add_user(&users, "viewer", "read"),
        scan: add_user(&users, "scanner", "scan"),
        admin: add_user(&users, "admin", "admin"),
    };
    let config = dir.join("chaff.toml");
    write_toml(&config, &f.config, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[users]\nfile = {:?}\n{extra}",
        users.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    (f, config, tokens)
}

/// The ids of a list answer's entries.
fn ids(v: &Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// The one entry kept for queue id `qid`.
fn id_of(svc: &Service, token: &str, qid: &str) -> String {
    let v = svc.json("/api/quarantine?limit=200", token);
    let found: Vec<&Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["queue_id"] == qid)
        .collect();
    assert_eq!(found.len(), 1, "{qid}: {v}");
    found[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn the_quarantine_is_listed_shown_fetched_and_deleted_by_role() {
    let (f, config, t) = setup(QuarantineMode::Store, "");
    let svc = Service::start(f.dir.path(), &config);
    assert_eq!(
        svc.send("shop@example.com", &["you@example.org"], "QA1", MEDIUM)
            .action(),
        "discard"
    );
    for q in ["QA2", "QA3", "QA4"] {
        assert_eq!(
            svc.send("shop@example.com", &["other@example.net"], q, MEDIUM)
                .action(),
            "discard"
        );
    }
    assert_eq!(
        svc.send("boss@example.com", &["you@example.org"], "QA5", SPAM)
            .action(),
        "reject"
    );
    assert_eq!(
        svc.send("li.wei@example.com", &["you@example.org"], "QA6", HAM)
            .action(),
        "deliver"
    );

    // Roles: nobody, read, scan, admin.
    let r = svc.get("/api/quarantine", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.head.contains("www-authenticate"), "{}", r.head);
    let r = svc.get("/api/quarantine", Some("not-a-token"));
    assert_eq!(r.status, 401, "{}", r.text());
    let all = svc.json("/api/quarantine", &t.read);
    assert_eq!(ids(&all).len(), 5, "{all}");
    assert_eq!(all["next"], Value::Null);
    let id1 = id_of(&svc, &t.read, "QA1");
    let r = svc.post(
        &format!("/api/quarantine/{id1}/delete"),
        Some(&t.read),
        "{}",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.error().contains("needs `admin`"), "{}", r.text());
    let r = svc.post(
        &format!("/api/quarantine/{id1}/delete"),
        Some(&t.scan),
        "{}",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = svc.get(&format!("/api/quarantine/{id1}/raw"), Some(&t.read));
    assert_eq!(r.status, 403, "{}", r.text());
    let r = svc.get("/api/actions", Some(&t.read));
    assert_eq!(r.status, 403, "{}", r.text());

    // The raw message, byte for byte, for scan and admin users.
    for token in [&t.scan, &t.admin] {
        let r = svc.get(&format!("/api/quarantine/{id1}/raw"), Some(token));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.head.contains("content-type: message/rfc822"),
            "{}",
            r.head
        );
        assert!(r.head.contains("x-content-type-options: nosniff"));
        assert_eq!(r.body, MEDIUM.as_bytes());
    }

    // Filters: recipient (address and domain), sender, action, score, subject,
    // time, state; newest first.
    let v = svc.json("/api/quarantine?rcpt=you@example.org", &t.read);
    let qids: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["queue_id"].as_str().unwrap())
        .collect();
    assert_eq!(qids, ["QA5", "QA1"], "{v}");
    let e = &v["entries"][1];
    assert_eq!(e["sender"], "shop@example.com");
    assert_eq!(e["recipients"], json!(["you@example.org"]));
    assert_eq!(e["action"], "quarantine");
    assert_eq!(e["told"], "discard");
    assert_eq!(e["size"], MEDIUM.len());
    assert_eq!(e["subject"], "优惠活动");
    assert_eq!(e["state"], json!({"state": "held"}));
    assert!(e["score"].as_f64().unwrap() > f.config.engine.thresholds.quarantine);
    let v = svc.json("/api/quarantine?rcpt=example.net", &t.read);
    assert_eq!(ids(&v).len(), 3);
    let v = svc.json("/api/quarantine?action=reject", &t.read);
    assert_eq!(v["entries"][0]["queue_id"], "QA5");
    assert_eq!(ids(&v).len(), 1);
    let v = svc.json(
        &format!(
            "/api/quarantine?min_score={}",
            f.config.engine.thresholds.reject
        ),
        &t.read,
    );
    assert_eq!(ids(&v).len(), 1, "{v}");
    let v = svc.json("/api/quarantine?sender=boss%40example.com", &t.read);
    assert_eq!(ids(&v).len(), 1);
    let v = svc.json(
        "/api/quarantine?subject=%E4%BC%98%E6%83%A0&rcpt=you%40example.org",
        &t.read,
    );
    assert_eq!(ids(&v).len(), 2, "{v}"); // 优惠 is in both subjects
    assert_eq!(ids(&svc.json("/api/quarantine?since=1h", &t.read)).len(), 5);
    assert_eq!(ids(&svc.json("/api/quarantine?until=1h", &t.read)).len(), 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let v = svc.json(
        &format!("/api/quarantine?since={}&state=held", now - 3600),
        &t.read,
    );
    assert_eq!(ids(&v).len(), 5);
    let v = svc.json("/api/quarantine?since=2000-01-01T00:00:00Z", &t.read);
    assert_eq!(ids(&v).len(), 5);

    // Paging: two, then the rest, no entry twice.
    let p1 = svc.json("/api/quarantine?rcpt=example.net&limit=2", &t.read);
    assert_eq!(ids(&p1).len(), 2);
    let next = p1["next"].as_str().expect("a next cursor").to_string();
    let p2 = svc.json(
        &format!("/api/quarantine?rcpt=example.net&limit=2&before={next}"),
        &t.read,
    );
    assert_eq!(ids(&p2).len(), 1);
    assert_eq!(p2["next"], Value::Null);
    let mut paged = ids(&p1);
    paged.extend(ids(&p2));
    let mut sorted = paged.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(paged, sorted, "newest first, each once");

    // Bad queries: 400 naming the parameter.
    for (q, field) in [
        ("limit=500", "`limit`"),
        ("limit=0", "`limit`"),
        ("since=someday", "`since`"),
        ("min_score=high", "`min_score`"),
        ("action=maybe", "`action`"),
        ("state=lost", "`state`"),
        ("before=!!", "`before`"),
        ("rcpt=", "`rcpt`"),
        ("recipient=a", "`recipient`"),
    ] {
        let r = svc.get(&format!("/api/quarantine?{q}"), Some(&t.read));
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(r.error().contains(field), "{q}: {}", r.text());
    }

    // One entry: the verdict, the envelope, the decoded text with its hits.
    let v = svc.json(&format!("/api/quarantine/{id1}"), &t.read);
    assert_eq!(v["id"], id1.as_str());
    assert_eq!(v["envelope"]["queue_id"], "QA1");
    assert!(v["envelope"]["helo"].is_string(), "{v}");
    assert_eq!(v["envelope"]["client_addr"], "192.0.2.10");
    let hits = v["verdict"]["hits"].as_array().unwrap();
    assert!(!hits.is_empty(), "{v}");
    assert!(
        v["verdict"]["reason"].as_str().unwrap().contains("score"),
        "{v}"
    );
    let preview = &v["preview"];
    assert!(
        preview["headers"]
            .as_str()
            .unwrap()
            .starts_with("From: shop@example.com\n"),
        "{preview}"
    );
    let part = &preview["parts"][0];
    let text = part["text"].as_str().unwrap();
    assert!(text.contains("本周优惠活动"), "{part}");
    let marks = part["hits"].as_array().unwrap();
    assert!(!marks.is_empty(), "{part}");
    for m in marks {
        let (o, l) = (
            m["offset"].as_u64().unwrap() as usize,
            m["len"].as_u64().unwrap() as usize,
        );
        let chars: Vec<char> = text.chars().collect();
        let (co, cl) = (
            m["char_offset"].as_u64().unwrap() as usize,
            m["char_len"].as_u64().unwrap() as usize,
        );
        let by_chars: String = chars[co..co + cl].iter().collect();
        assert_eq!(&text[o..o + l], by_chars);
        let keyword = m["keyword"].as_str().unwrap();
        assert!(
            hits.iter().any(|h| h["keyword"] == keyword),
            "{keyword} not among the verdict's hits"
        );
    }
    // Hits in the subject are located in the decoded subject.
    let id5 = id_of(&svc, &t.read, "QA5");
    let v = svc.json(&format!("/api/quarantine/{id5}"), &t.read);
    let subject = &v["preview"]["subject"];
    let text = subject["text"].as_str().unwrap();
    assert!(text.starts_with("代开发票"), "{subject}");
    let first = &subject["hits"][0];
    assert_eq!(first["offset"], 0, "{subject}");
    assert_eq!(
        &text[..first["len"].as_u64().unwrap() as usize],
        first["keyword"].as_str().unwrap()
    );

    // Unknown and malformed ids.
    let unknown = EntryId::from_u64(12_345).to_string();
    for path in [
        format!("/api/quarantine/{unknown}"),
        format!("/api/quarantine/{unknown}/raw"),
    ] {
        let r = svc.get(&path, Some(&t.admin));
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    let r = svc.post(
        &format!("/api/quarantine/{unknown}/delete"),
        Some(&t.admin),
        "{}",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = svc.get("/api/quarantine/not-an-id", Some(&t.read));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().starts_with("`id`"), "{}", r.text());

    // Bad JSON: 400 naming the field; nothing changes.
    for (body, field) in [
        (r#"{"learn_spam": "yes"}"#, "learn_spam"),
        (r#"{"learn_sapm": true}"#, "learn_sapm"),
    ] {
        let r = svc.post(
            &format!("/api/quarantine/{id1}/delete"),
            Some(&t.admin),
            body,
        );
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.error().contains(field), "{body}: {}", r.text());
    }
    let r = svc.post(
        &format!("/api/quarantine/{id1}/delete"),
        Some(&t.admin),
        "{",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("malformed JSON"), "{}", r.text());
    // Without a JSON content type (what a cross-site form sends): refused.
    let r = svc.call(
        "POST",
        &format!("/api/quarantine/{id1}/delete"),
        Some(&t.admin),
        None,
    );
    assert_eq!(r.status, 415, "{}", r.text());
    // Learning as spam needs a model: refused, and nothing is deleted.
    let r = svc.post(
        &format!("/api/quarantine/{id1}/delete"),
        Some(&t.admin),
        r#"{"learn_spam": true}"#,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("no model"), "{}", r.text());
    let v = svc.json(&format!("/api/quarantine/{id1}"), &t.read);
    assert_eq!(v["state"]["state"], "held");

    // Delete: the entry says who and when; the message is gone; again: 409.
    let r = svc.post(
        &format!("/api/quarantine/{id1}/delete"),
        Some(&t.admin),
        "{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["state"]["state"], "deleted");
    assert_eq!(v["state"]["by"], "http:admin");
    let v = svc.json(&format!("/api/quarantine/{id1}"), &t.read);
    assert_eq!(v["state"]["state"], "deleted", "{v}");
    assert_eq!(v["preview"], Value::Null);
    let r = svc.get(&format!("/api/quarantine/{id1}/raw"), Some(&t.admin));
    assert_eq!(r.status, 410, "{}", r.text());
    let r = svc.post(
        &format!("/api/quarantine/{id1}/delete"),
        Some(&t.admin),
        "{}",
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let v = r.json();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("was deleted by http:admin at"),
        "{v}"
    );
    assert_eq!(v["by"], "http:admin");
    assert!(v["at"].as_u64().unwrap() >= now);
    let v = svc.json("/api/quarantine?state=deleted", &t.read);
    assert_eq!(ids(&v), std::slice::from_ref(&id1));

    // Bulk: each id's own result.
    let (id2, id3) = (id_of(&svc, &t.read, "QA2"), id_of(&svc, &t.read, "QA3"));
    let body = json!({"ids": [id2, id3, "bogus", unknown, id1, id2], "action": "delete"});
    let r = svc.post("/api/quarantine/bulk", Some(&t.admin), &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let statuses: Vec<u64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 400, 404, 409], "{v}");
    assert_eq!((v["ok"].as_u64(), v["failed"].as_u64()), (Some(2), Some(3)));
    assert_eq!(v["results"][0]["id"], id2.as_str());
    assert_eq!(v["results"][0]["state"]["by"], "http:admin");
    assert_eq!(v["results"][4]["by"], "http:admin");
    for (body, field) in [
        (json!({"ids": [], "action": "delete"}), "`ids`"),
        (json!({"ids": [id2], "action": "explode"}), "action"),
        (
            json!({"ids": [id2], "action": "delete", "learn_ham": true}),
            "`learn_ham`",
        ),
    ] {
        let r = svc.post("/api/quarantine/bulk", Some(&t.admin), &body.to_string());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.error().contains(field), "{body}: {}", r.text());
    }
    let r = svc.post(
        "/api/quarantine/bulk",
        Some(&t.read),
        &json!({"ids": [id2], "action": "delete"}).to_string(),
    );
    assert_eq!(r.status, 403);

    // The action log: who, what, which entry.
    let v = svc.json("/api/actions?limit=10", &t.admin);
    let actions = v["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "{v}");
    assert!(
        actions
            .iter()
            .all(|a| a["by"] == "http:admin" && a["what"] == "delete"),
        "{v}"
    );
    assert_eq!(actions[2]["id"], id1.as_str());
    // And the service's log names the user.
    let log = svc.log_text();
    assert!(
        log.contains("quarantine entry deleted through the API") && log.contains("admin"),
        "{log}"
    );
    svc.stop();
}

#[test]
fn sender_lists_are_stored_listed_with_their_source_and_applied_at_once() {
    let (f, config, t) = setup(
        QuarantineMode::Hold,
        "\n[senders]\nblock = [\"*@spam.test\"]\n",
    );
    let svc = Service::start(f.dir.path(), &config);
    let v = svc.json("/api/senders", &t.read);
    assert_eq!(
        v["block"],
        json!([{"entry": "*@spam.test", "source": "config"}]),
        "{v}"
    );
    assert_eq!(v["allow"], json!([]));
    assert_eq!(
        svc.send("pest@nuisance.test", &["you@example.org"], "QS0", HAM)
            .action(),
        "deliver"
    );

    // Add: checked, stored, listed with its source, applied before the answer.
    let r = svc.post(
        "/api/senders/block",
        Some(&t.admin),
        r#"{"entry": "*@Nuisance.test", "comment": "complaints"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["added"], true);
    assert_eq!(v["applied"], true, "{v}");
    let entry = v["entry"].as_str().unwrap().to_string();
    assert_eq!(
        svc.send("pest@nuisance.test", &["you@example.org"], "QS1", HAM)
            .action(),
        "reject",
        "the stored block entry is applied at once"
    );
    let v = svc.json("/api/senders", &t.read);
    let block = v["block"].as_array().unwrap();
    assert_eq!(block.len(), 2, "{v}");
    assert_eq!(block[1]["entry"], entry.as_str());
    assert_eq!(block[1]["source"], "store");
    assert_eq!(block[1]["by"], "http:admin");
    assert_eq!(block[1]["comment"], "complaints");
    assert!(block[1]["at_utc"].as_str().unwrap().ends_with("UTC"));
    // Twice: stored once.
    let r = svc.post(
        "/api/senders/block",
        Some(&t.admin),
        &json!({ "entry": entry }).to_string(),
    );
    assert_eq!(r.json()["added"], false, "{}", r.text());

    // Refused by the configuration's own parser: 400 naming the field.
    let r = svc.post(
        "/api/senders/allow",
        Some(&t.admin),
        r#"{"entry": "ceo@example.com via 192.0.2.1"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().starts_with("`entry`:"), "{}", r.text());
    let r = svc.post("/api/senders/allow", Some(&t.admin), r#"{"comment": "x"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("entry"), "{}", r.text());
    let r = svc.post(
        "/api/senders/grey",
        Some(&t.admin),
        r#"{"entry": "a@b.test"}"#,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = svc.post(
        "/api/senders/block",
        Some(&t.read),
        r#"{"entry": "a@b.test"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // An allow entry nothing can prove is stored with a warning.
    let r = svc.post(
        "/api/senders/allow",
        Some(&t.admin),
        r#"{"entry": "ceo@example.com"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("never applies"),
        "{}",
        r.text()
    );
    // With proof: the network it comes from; mail from there is delivered
    // whatever it scores.
    let r = svc.post(
        "/api/senders/allow",
        Some(&t.admin),
        r#"{"entry": "boss@example.com from 192.0.2.0/24"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        svc.send("boss@example.com", &["you@example.org"], "QS2", SPAM)
            .action(),
        "deliver"
    );

    // Removal: an entry of chaff.toml is refused, an unknown one is 404.
    let r = svc.call(
        "DELETE",
        "/api/senders/block",
        Some(&t.admin),
        Some(r#"{"entry": "*@spam.test"}"#),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("configuration file"), "{}", r.text());
    let r = svc.call(
        "DELETE",
        "/api/senders/block",
        Some(&t.admin),
        Some(r#"{"entry": "*@never.test"}"#),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = svc.call(
        "DELETE",
        "/api/senders/block",
        Some(&t.admin),
        Some(&json!({ "entry": entry }).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["removed"], true);
    assert_eq!(
        svc.send("pest@nuisance.test", &["you@example.org"], "QS3", HAM)
            .action(),
        "deliver"
    );
    // The file's entry still applies.
    assert_eq!(
        svc.send("x@spam.test", &["you@example.org"], "QS4", HAM)
            .action(),
        "reject"
    );
    let v = svc.json("/api/actions", &t.admin);
    let whats: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        whats,
        ["block-remove", "allow-add", "allow-add", "block-add"],
        "{v}"
    );
    assert!(
        svc.log_text()
            .contains("sender entry added through the API")
    );
    svc.stop();
}

#[test]
fn history_and_counts_survive_a_restart_and_feed_the_summary() {
    let (f, config, t) = setup(QuarantineMode::Store, "");
    let svc = Service::start(f.dir.path(), &config);
    let sent = [
        ("li.wei@example.com", "QH1", HAM),
        ("shop@example.com", "QH2", MEDIUM),
        ("boss@example.com", "QH3", SPAM),
        ("li.wei@example.com", "QH4", HAM),
    ];
    for (from, qid, raw) in sent {
        svc.send(from, &["you@example.org"], qid, raw);
    }
    // The summary of a running service: latency and outcomes since start
    // (counted as each answer is recorded, just after it is sent).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = svc.json("/api/stats", &t.read);
        if v["scan_latency"]["count"] == 4 && v["milter"]["messages"]["deliver"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    svc.stop();

    let svc = Service::start(f.dir.path(), &config);
    let v = svc.json("/api/history", &t.read);
    let qids: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["queue_id"].as_str().unwrap())
        .collect();
    assert_eq!(qids, ["QH4", "QH3", "QH2", "QH1"], "{v}");
    let spam = &v["records"][1];
    assert_eq!(spam["action"], "reject");
    assert_eq!(spam["sender"], "boss@example.com");
    assert!(spam["entry"].is_string(), "kept with keep_rejected: {spam}");
    assert!(!spam["hits"].as_array().unwrap().is_empty());
    assert!(spam["score"].as_f64().unwrap() > 0.0);
    assert!(spam["time_utc"].as_str().unwrap().ends_with("UTC"));
    // Paged.
    let p1 = svc.json("/api/history?limit=3", &t.read);
    assert_eq!(p1["records"].as_array().unwrap().len(), 3);
    let next = p1["next"].as_str().unwrap();
    let p2 = svc.json(&format!("/api/history?limit=3&before={next}"), &t.read);
    assert_eq!(p2["records"][0]["queue_id"], "QH1");
    assert_eq!(p2["next"], Value::Null);
    let r = svc.get("/api/history?before=soon", Some(&t.read));
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("`before`"), "{}", r.text());

    // Counts per hour: the four scans, by action.
    let v = svc.json("/api/stats/hourly", &t.read);
    let hours = v["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 168);
    let mut total = std::collections::BTreeMap::new();
    for h in hours {
        for (k, n) in h["counts"].as_object().unwrap() {
            *total.entry(k.clone()).or_insert(0) += n.as_u64().unwrap();
        }
    }
    let want: std::collections::BTreeMap<String, u64> = [
        ("deliver".to_string(), 2),
        ("quarantine".to_string(), 1),
        ("reject".to_string(), 1),
    ]
    .into();
    assert_eq!(total, want, "{v}");
    assert!(
        !hours.last().unwrap()["counts"]
            .as_object()
            .unwrap()
            .is_empty()
    );
    let days = v["days"].as_array().unwrap();
    assert!((7..=8).contains(&days.len()), "{v}");
    // A scan after the restart is counted at once (before it is written).
    svc.send("li.wei@example.com", &["you@example.org"], "QH5", HAM);
    let deadline = Instant::now() + Duration::from_secs(5);
    let v = loop {
        let v = svc.json("/api/stats", &t.read);
        if v["scan_latency"]["count"] == 1 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["counts"]["last_7d"]["deliver"], 3, "{v}");
    assert_eq!(v["counts"]["last_24h"]["reject"], 1, "{v}");
    assert!(v["counts"]["today"].is_object());
    assert_eq!(v["scan_latency"]["count"], 1, "since this start: {v}");
    assert!(v["scan_latency"]["p99_at_most_ms"].as_f64().unwrap() > 0.0);
    let top_hits = v["top_hits"].as_array().unwrap();
    assert!(!top_hits.is_empty(), "{v}");
    assert!(top_hits[0]["count"].as_u64().unwrap() >= 2, "{v}");
    let senders: Vec<&str> = v["top_senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(senders, ["boss@example.com", "shop@example.com"], "{v}");
    assert_eq!(v["store"]["entries"], 2, "{v}");
    assert!(v["store"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["store"]["healthy"], true);
    assert_eq!(v["model"], Value::Null);
    assert!(v["milter"]["connections"].is_i64());
    svc.stop();
}

/// Postfix's `smtp-sink` on `port`, writing each message it takes to a file in
/// `dir`; killed when dropped.
struct Sink {
    child: Child,
    dir: PathBuf,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    fn start(dir: &Path, port: u16) -> Sink {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        // As root smtp-sink must drop to another user, who writes the files.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut cmd = Command::new("smtp-sink");
        if root {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .arg("-d")
            .arg(format!("{}/%M.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("10")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (Debian package postfix)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// The messages taken so far, as dumped (envelope lines first).
    fn messages(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }
}

#[test]
fn a_release_goes_to_the_relay_once_and_a_failed_one_leaves_the_entry_held() {
    if Command::new("sh")
        .args(["-c", "command -v smtp-sink"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        // CI installs postfix (.ci/run).
        assert!(
            std::env::var_os("CI").is_none(),
            "smtp-sink is not installed"
        );
        eprintln!("SKIPPED: smtp-sink (Debian package postfix) is not installed");
        return;
    }
    let relay = free_port();
    let (f, config, t) = setup_relay(
        QuarantineMode::Store,
        "",
        Some(format!("127.0.0.1:{relay}")),
    );
    let svc = Service::start(f.dir.path(), &config);
    assert_eq!(
        svc.send("shop@example.com", &["you@example.org"], "QR1", MEDIUM)
            .action(),
        "discard"
    );
    let id = id_of(&svc, &t.read, "QR1");
    let path = format!("/api/quarantine/{id}/release");

    // Only admins release.
    for token in [&t.read, &t.scan] {
        let r = svc.post(&path, Some(token), "{}");
        assert_eq!(r.status, 403, "{}", r.text());
    }
    // Nothing listens on the relay's port: not delivered, held again, and a
    // second attempt is not refused as a conflict.
    for _ in 0..2 {
        let r = svc.post(&path, Some(&t.admin), "{}");
        assert_eq!(r.status, 502, "{}", r.text());
        let v = r.json();
        assert!(v["error"].as_str().unwrap().contains("held again"), "{v}");
        assert_eq!(v["state"], "held", "{v}");
    }
    let v = svc.json(&format!("/api/quarantine/{id}"), &t.read);
    assert_eq!(v["state"], json!({"state": "held"}));
    // Options checked before anything changes; bad JSON names the field.
    let r = svc.post(&path, Some(&t.admin), r#"{"learn_ham": true}"#);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.error().contains("cannot learn"), "{}", r.text());
    let r = svc.post(&path, Some(&t.admin), r#"{"force": 1}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("force"), "{}", r.text());
    let unknown = EntryId::from_u64(99).to_string();
    let r = svc.post(
        &format!("/api/quarantine/{unknown}/release"),
        Some(&t.admin),
        "{}",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = svc.post(
        "/api/quarantine/bulk",
        Some(&t.admin),
        &json!({"ids": [id, unknown], "action": "release"}).to_string(),
    );
    let v = r.json();
    let statuses: Vec<u64> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [502, 404], "{v}");
    // Not in doubt: nothing to resolve.
    let r = svc.post(
        &format!("/api/quarantine/{id}/resolve"),
        Some(&t.admin),
        r#"{"delivered": true}"#,
    );
    assert_eq!(r.status, 409, "{}", r.text());

    // The relay up (Postfix's smtp-sink): delivered once, with its original
    // envelope and a release token; the sender allowed from its client address.
    let sink = Sink::start(&f.dir.path().join("sink"), relay);
    let r = svc.post(&path, Some(&t.admin), r#"{"allow_sender": true}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["state"]["state"], "released", "{v}");
    assert_eq!(v["state"]["by"], "http:admin");
    assert!(v["delivery"].as_str().unwrap().contains("250"), "{v}");
    assert_eq!(v["allowed"], "shop@example.com from 192.0.2.10/32", "{v}");
    assert_eq!(v["problems"], json!([]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.messages().is_empty() {
        assert!(Instant::now() < deadline, "nothing reached the relay");
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("X-Mail-Args: <shop@example.com>"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains("X-Rcpt-Args: <you@example.org>"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("X-Chaff-Release: v1; id="), "{}", got[0]);
    assert!(got[0].contains("本周优惠活动"), "{}", got[0]);

    // Again: 409 saying when and by whom; nothing more is sent.
    let r = svc.post(&path, Some(&t.admin), "{}");
    assert_eq!(r.status, 409, "{}", r.text());
    let v = r.json();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("already released by http:admin at"),
        "{v}"
    );
    assert_eq!(
        (v["state"].as_str(), v["by"].as_str()),
        (Some("released"), Some("http:admin"))
    );
    assert!(v["at_utc"].as_str().unwrap().ends_with("UTC"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 1);

    // The allow entry is stored and applied at once: the sender's next message
    // from that address is delivered.
    let v = svc.json("/api/senders", &t.read);
    assert_eq!(
        v["allow"][0]["entry"], "shop@example.com from 192.0.2.10/32",
        "{v}"
    );
    assert_eq!(v["allow"][0]["source"], "store");
    assert_eq!(
        svc.send("shop@example.com", &["you@example.org"], "QR2", MEDIUM)
            .action(),
        "deliver"
    );
    let v = svc.json("/api/actions?limit=20", &t.admin);
    let whats: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["by"] == "http:admin")
        .map(|a| a["what"].as_str().unwrap())
        .collect();
    assert!(
        whats.starts_with(&[
            "allow-sender",
            "allow-add",
            "release",
            "release-begin",
            "release-failed"
        ]),
        "{v}"
    );
    assert!(
        svc.log_text()
            .contains("quarantine entry released through the API")
    );
    drop(sink);
    svc.stop();
}

#[test]
fn rate_counters_are_shown_and_reset_through_the_api() {
    let (f, config, t) = setup(
        QuarantineMode::Hold,
        "\n[ratelimit]\nclient = [{ window = \"1h\", messages = 2 }]\n",
    );
    let svc = Service::start(f.dir.path(), &config);
    for i in 0..2 {
        let a = svc.send(
            "a@example.com",
            &["you@example.org"],
            &format!("QR{i}"),
            HAM,
        );
        assert_eq!(a.action(), "deliver");
    }
    let a = svc.send("a@example.com", &["you@example.org"], "QR2", HAM);
    assert_eq!(a.action(), "tempfail");
    let v = svc.json("/api/ratelimit/client/192.0.2.10", &t.read);
    assert_eq!(
        v,
        json!({"kind": "client", "name": "192.0.2.10", "limits": [
            {"window_secs": 3600, "measure": "messages", "used": 2, "limit": 2}
        ]}),
        "{v}"
    );
    assert_eq!(
        svc.get("/api/ratelimit/nonsense/x", Some(&t.read)).status,
        400
    );
    assert_eq!(
        svc.post("/api/ratelimit/client/192.0.2.10/reset", Some(&t.read), "")
            .status,
        403
    );
    let r = svc.post("/api/ratelimit/client/192.0.2.10/reset", Some(&t.admin), "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["reset"], true);
    let a = svc.send("a@example.com", &["you@example.org"], "QR3", HAM);
    assert_eq!(a.action(), "deliver");
    svc.stop();
}
