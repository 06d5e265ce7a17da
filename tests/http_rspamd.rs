//! The HTTP listener of `chaff milter`, driven by the real `rspamc` (Debian
//! package `rspamd`) and by plain HTTP requests: Rspamd-compatible scanning gives
//! the action and score `chaff score` gives; `rspamc learn_spam` changes the model;
//! the `User:` header counts toward account locks only for `scan` users;
//! credentials, roles, size and time limits; TLS with a self-signed certificate
//! (through `curl`); a non-loopback address without TLS and users is refused.

mod milter_support;

use milter_support::{HAM, SPAM, fixture, free_port, write_toml};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHAFF: &str = env!("CARGO_BIN_EXE_chaff");

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Why these tests cannot run here (a tool missing), or None.
fn missing(tools: &[&str]) -> Option<String> {
    for tool in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

macro_rules! require {
    ($($tool:expr),*) => {
        if let Some(why) = missing(&[$($tool),*]) {
            // CI installs them (.ci/run); elsewhere say why nothing ran.
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// A `chaff milter` process with its HTTP listener; killed when dropped.
struct Service {
    child: Child,
    port: u16,
    metrics: u16,
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
        let metrics = free_port();
        let log = dir.join(format!("milter-{port}.log"));
        let child = Command::new(CHAFF)
            .arg("milter")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{}", free_port()))
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{metrics}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Service {
            child,
            port,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
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

    /// The value of one metric line.
    fn metric(&self, name: &str) -> f64 {
        let page = get(self.metrics, "/metrics", "").body;
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{page}"))
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM; the process must exit 0 within 20 s.
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
}

/// A user added with `chaff users`; returns the token it printed, if any.
fn add_user(users: &Path, name: &str, role: &str, password: Option<&str>) -> Option<String> {
    let mut cmd = Command::new(CHAFF);
    cmd.arg("users")
        .arg("--file")
        .arg(users)
        .args(["add", name, "--role", role, "--token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match password {
        Some(_) => cmd.arg("--password-stdin"),
        None => cmd.arg("--no-password"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(p) = password {
        writeln!(stdin, "{p}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (!token.is_empty()).then_some(token)
}

/// A model trained on the bundled corpus with `chaff train`.
fn train(dir: &Path) -> PathBuf {
    let cfg = dir.join("train.toml");
    std::fs::write(&cfg, "[classifier]\nbits = 18\n").unwrap();
    let model = dir.join("chaff.model");
    let out = Command::new(CHAFF)
        .args(["train", "--config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&model)
        .arg(corpus().join("index"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    model
}

/// One file's result as `rspamc` prints it.
#[derive(Debug, Default, Clone)]
struct Scanned {
    action: String,
    score: String,
    required: String,
    symbols: Vec<(String, f64, String)>,
    messages: Vec<String>,
    error: Option<String>,
}

fn rspamc(args: &[&str]) -> Output {
    Command::new("rspamc").args(args).output().unwrap()
}

/// Parses `rspamc symbols` output: one block per file.
fn parse(out: &Output) -> HashMap<String, Scanned> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut all = HashMap::new();
    let mut file = None;
    let mut cur = Scanned::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Results for file: ") {
            if let Some(f) = file.take() {
                all.insert(f, std::mem::take(&mut cur));
            }
            file = Some(rest.rsplit_once(" (").map_or(rest, |(f, _)| f).to_string());
        } else if let Some(a) = line.strip_prefix("Action: ") {
            cur.action = a.to_string();
        } else if let Some(s) = line.strip_prefix("Score: ") {
            let (score, required) = s.split_once(" / ").unwrap();
            cur.score = score.to_string();
            cur.required = required.to_string();
        } else if let Some(s) = line.strip_prefix("Symbol: ") {
            // `NAME (1.23)[opt, opt]`
            let (name, rest) = s.split_once(" (").unwrap();
            let (score, opts) = rest.split_once(')').unwrap();
            cur.symbols
                .push((name.to_string(), score.parse().unwrap(), opts.to_string()));
        } else if let Some(m) = line.strip_prefix("Message - ") {
            cur.messages.push(m.to_string());
        } else if line.starts_with("HTTP error") {
            cur.error = Some(line.to_string());
        }
    }
    if let Some(f) = file {
        all.insert(f, cur);
    }
    all
}

fn scan_one(host: &str, file: &Path, extra: &[&str]) -> Scanned {
    let mut args = vec!["-h", host];
    args.extend_from_slice(extra);
    args.push("symbols");
    let f = file.to_str().unwrap();
    args.push(f);
    let out = rspamc(&args);
    parse(&out)
        .remove(f)
        .unwrap_or_else(|| panic!("no result for {f}: {out:?}"))
}

/// What `chaff score --format json` says of each file: (action, score).
fn chaff_score(config: &Path, files: &[PathBuf]) -> HashMap<String, (String, f64)> {
    let out = Command::new(CHAFF)
        .args(["score", "--format", "json", "--config"])
        .arg(config)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["path"].as_str().unwrap().to_string(),
                (
                    v["action"].as_str().unwrap().to_string(),
                    v["score"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

fn rspamd_action(chaff: &str) -> &'static str {
    match chaff {
        "deliver" => "no action",
        "quarantine" => "add header",
        "reject" => "reject",
        other => panic!("unknown action {other}"),
    }
}

/// A response: status, head (lowercased), body.
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Sends `raw` on a new connection and reads the answer to the end.
fn request(port: u16, raw: &[u8]) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (413) before taking the whole body.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Response {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(port: u16, path: &str, headers: &str) -> Response {
    request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n").as_bytes(),
    )
}

fn post(port: u16, path: &str, headers: &str, body: &[u8]) -> Response {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    request(port, &raw)
}

fn error_of(r: &Response) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", r.status, r.body));
    v["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn rspamc_symbols_give_the_action_and_score_of_chaff_score() {
    require!("rspamc");
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path());
    let config = dir.path().join("chaff.toml");
    std::fs::write(
        &config,
        format!(
            "model = {:?}\n[classifier]\nbits = 18\n[accounts]\ndb = {:?}\n[http]\n",
            model.display().to_string(),
            dir.path().join("accounts.redb").display().to_string()
        ),
    )
    .unwrap();
    let svc = Service::start(dir.path(), &config);
    let files: Vec<PathBuf> = std::fs::read_to_string(corpus().join("index"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(_, p)| corpus().join(p.trim()))
        .collect();
    let mut args = vec!["-h".to_string(), svc.host(), "symbols".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = Command::new("rspamc").args(&args).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = parse(&out);
    let want = chaff_score(&config, &files);
    assert_eq!(
        got.len(),
        files.len(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut actions = HashMap::new();
    for (file, (action, score)) in &want {
        let r = &got[file];
        assert_eq!(r.action, rspamd_action(action), "{file}: {r:?}");
        assert_eq!(r.score, format!("{score:.2}"), "{file}: {r:?}");
        assert_eq!(r.required, "15.00", "the reject threshold: {r:?}");
        // The symbols add up to the score (each printed to 2 decimals).
        let sum: f64 = r.symbols.iter().map(|s| s.1).sum();
        assert!(
            (sum - score).abs() <= 0.005 * r.symbols.len() as f64 + 1e-9,
            "{file}: symbols add up to {sum}, score {score}: {r:?}"
        );
        assert!(
            r.symbols.iter().any(|s| s.0 == "CHAFF_MODEL"),
            "the model's points are a symbol: {r:?}"
        );
        if action == "reject" {
            assert!(
                r.messages
                    .contains(&"smtp_message: 557 5.7.1 forbid to send spam mail".to_string()),
                "{r:?}"
            );
        }
        *actions.entry(action.clone()).or_insert(0) += 1;
    }
    // Delivered and rejected mail both occur, so both mappings were checked
    // through rspamc (a trained model leaves few or no messages between the
    // thresholds; every outcome's name is checked by the unit test
    // `every_outcome_has_rspamds_action_name`).
    assert!(
        actions.contains_key("deliver") && actions.contains_key("reject"),
        "{actions:?}"
    );
    // Each scan was counted and logged as milter mail is.
    let log = svc.log_text();
    assert_eq!(
        log.lines().filter(|l| l.contains(" message ")).count(),
        files.len(),
        "{log}"
    );
    svc.stop();
}

#[test]
fn rspamc_learn_spam_changes_the_model_for_scan_users_only() {
    require!("rspamc");
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path());
    let users = dir.path().join("users.toml");
    let admin = add_user(&users, "root", "admin", Some("admin password")).unwrap();
    let reader = add_user(&users, "viewer", "read", None).unwrap();
    add_user(&users, "learner", "scan", Some("learner password"));
    let config = dir.path().join("chaff.toml");
    std::fs::write(
        &config,
        format!(
            "model = {:?}\n[classifier]\nbits = 18\nreload_interval_ms = 0\n[accounts]\ndb = {:?}\n\
             [http]\n[users]\nfile = {:?}\n",
            model.display().to_string(),
            dir.path().join("accounts.redb").display().to_string(),
            users.display().to_string()
        ),
    )
    .unwrap();
    let svc = Service::start(dir.path(), &config);
    let host = svc.host();
    let ham = corpus().join("ham/en-essex-sussex.eml");
    let before = scan_one(&host, &ham, &[]);
    let s0: f64 = before.score.parse().unwrap();
    let learn = |extra: &[&str], cmd: &str| {
        let mut args = vec!["-h", &host];
        args.extend_from_slice(extra);
        args.push(cmd);
        args.push(ham.to_str().unwrap());
        let out = rspamc(&args);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // Without credentials, and as a `read` user: refused, the model unchanged.
    assert!(learn(&[], "learn_spam").contains("HTTP error: 401"));
    assert!(learn(&["-P", &reader], "learn_spam").contains("HTTP error: 403"));
    assert!(learn(&["-P", "root:wrong password"], "learn_spam").contains("HTTP error: 401"));
    assert_eq!(scan_one(&host, &ham, &[]).score, before.score);
    // The admin's token: learned, and the next scans see it.
    let out = learn(&["-P", &admin], "learn_spam");
    assert!(out.contains("success = true"), "{out}");
    let s1: f64 = scan_one(&host, &ham, &[]).score.parse().unwrap();
    assert!(
        s1 > s0,
        "learning it as spam raised its score: {s0} -> {s1}"
    );
    // A scan user with NAME:PASSWORD in `Password:` learns it back as ham.
    let out = learn(&["-P", "learner:learner password"], "learn_ham");
    assert!(out.contains("success = true"), "{out}");
    let s2: f64 = scan_one(&host, &ham, &[]).score.parse().unwrap();
    assert!(
        s2 < s1,
        "learning it as ham lowered its score: {s1} -> {s2}"
    );
    let log = svc.log_text();
    assert!(
        log.contains("learned") && log.contains("user=\"root\""),
        "{log}"
    );
    svc.stop();
}

#[test]
fn the_user_header_counts_toward_locks_only_for_scan_users() {
    require!("rspamc");
    let f = fixture();
    let dir = f.dir.path();
    let users = dir.join("users.toml");
    let scanner = add_user(&users, "mta", "scan", None).unwrap();
    let reader = add_user(&users, "viewer", "read", None).unwrap();
    let config = dir.join("chaff.toml");
    write_toml(&config, &f.config, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[http]\n\n[users]\nfile = {:?}\n",
        users.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let spam = dir.join("spam.eml");
    std::fs::write(&spam, SPAM).unwrap();
    let svc = Service::start(dir, &config);
    let host = svc.host();
    let lock_after = f.config.accounts.lock_after as usize;

    // Anonymous and `read` requests: User is ignored, nothing is counted.
    for extra in [vec![], vec!["-P", reader.as_str()]] {
        for _ in 0..=lock_after {
            let mut args = extra.clone();
            args.extend(["--user", "victim"]);
            let r = scan_one(&host, &spam, &args);
            assert_eq!(r.action, "reject", "{r:?}");
            assert!(
                !r.symbols.iter().any(|s| s.0.starts_with("CHAFF_")),
                "no outbound policy applied: {r:?}"
            );
        }
    }
    let list = Command::new(CHAFF)
        .args(["accounts", "list", "--all", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("victim"),
        "{list:?}"
    );

    // A scan user: the rejects count, and the account is locked.
    for i in 0..lock_after {
        let r = scan_one(&host, &spam, &["-P", &scanner, "--user", "victim"]);
        assert_eq!(r.action, "reject", "{r:?}");
        assert!(r.symbols.iter().any(|s| s.0 == "CHAFF_OUTBOUND"), "{r:?}");
        let locked_now = r.symbols.iter().any(|s| s.0 == "CHAFF_ACCOUNT_LOCKED_NOW");
        assert_eq!(locked_now, i + 1 == lock_after, "reject {}: {r:?}", i + 1);
    }
    // Locked: even its ham is refused with the reject reply.
    let ham = dir.join("ham.eml");
    std::fs::write(&ham, HAM).unwrap();
    let r = scan_one(&host, &ham, &["-P", &scanner, "--user", "victim"]);
    assert_eq!(r.action, "reject", "{r:?}");
    assert!(
        r.symbols.iter().any(|s| s.0 == "CHAFF_ACCOUNT_LOCKED"),
        "{r:?}"
    );
    assert!(
        r.messages
            .contains(&"smtp_message: 557 5.7.1 forbid to send spam mail".to_string()),
        "{r:?}"
    );
    // The same ham from an anonymous client names no account and is delivered.
    let r = scan_one(&host, &ham, &["--user", "victim"]);
    assert_eq!(r.action, "no action", "{r:?}");
    let list = Command::new(CHAFF)
        .args(["accounts", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("victim"),
        "{list:?}"
    );
    svc.stop();
}

#[test]
fn credentials_roles_limits_and_errors_over_plain_http() {
    let f = fixture();
    let dir = f.dir.path();
    let users = dir.join("users.toml");
    let admin = add_user(&users, "root", "admin", Some("admin password")).unwrap();
    let reader = add_user(&users, "viewer", "read", None).unwrap();
    let config = dir.join("chaff.toml");
    write_toml(&config, &f.config, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[limits]\nmax_message_size = \"100K\"\n\n[http]\nheader_timeout_secs = 1\n\
         request_timeout_secs = 2\n\n[users]\nfile = {:?}\n",
        users.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    let svc = Service::start(dir, &config);
    let port = svc.port;

    let r = get(port, "/ping", "");
    assert_eq!((r.status, r.body.as_str()), (200, "pong\r\n"));
    // No credentials on a protected call: 401 with a JSON error and a challenge.
    let r = get(port, "/api/whoami", "");
    assert_eq!(r.status, 401);
    assert!(r.head.contains("www-authenticate: bearer"), "{}", r.head);
    assert!(error_of(&r).contains("credentials needed"), "{}", r.body);
    // A read token may read…
    let r = get(
        port,
        "/api/whoami",
        &format!("Authorization: Bearer {reader}\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, r#"{"name":"viewer","role":"read"}"#);
    // …but not learn: 403.
    let r = post(
        port,
        "/learnspam",
        &format!("Password: {reader}\r\n"),
        HAM.as_bytes(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(error_of(&r).contains("needs `scan`"), "{}", r.body);
    // The admin passes (and is told there is no model to learn into).
    let r = post(
        port,
        "/learnspam",
        &format!("Password: {admin}\r\n"),
        HAM.as_bytes(),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(error_of(&r).contains("no model"), "{}", r.body);
    // Basic credentials (the console's way) work too.
    let basic = "Authorization: Basic cm9vdDphZG1pbiBwYXNzd29yZA==\r\n"; // root:admin password
    let r = get(port, "/api/whoami", basic);
    assert_eq!(r.body, r#"{"name":"root","role":"admin"}"#);

    // Malformed envelope headers: 400 naming the header; bad input changes nothing.
    let r = post(port, "/checkv2", "IP: 999.1.1.1\r\n", HAM.as_bytes());
    assert_eq!(r.status, 400);
    assert!(error_of(&r).starts_with("header `IP`"), "{}", r.body);
    // A scan without credentials works (Rspamd's behaviour).
    let r = post(
        port,
        "/checkv2",
        "From: <a@example.com>\r\nRcpt: <b@example.org>\r\nIP: 192.0.2.1\r\nQueue-Id: Q1\r\n",
        SPAM.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["action"], "reject");
    assert_eq!(
        v["messages"]["smtp_message"],
        "557 5.7.1 forbid to send spam mail"
    );
    let r = post(port, "/checkv2", "", HAM.as_bytes());
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["action"], "no action");
    assert!(
        v["milter"]["add_headers"]["X-Spam-Status"]
            .as_str()
            .unwrap()
            .starts_with("No, score=")
    );

    // Over the size limit: 413, declared or chunked.
    let r = request(
        port,
        b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n",
    );
    assert_eq!(r.status, 413, "{}", r.body);
    let mut chunked =
        b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..30 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b'a'; 0x1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = request(port, &chunked);
    assert_eq!(r.status, 413, "{}", r.body);

    // Unknown endpoint: 404 as JSON.
    let r = get(port, "/nothing", "");
    assert_eq!(r.status, 404);
    assert!(!error_of(&r).is_empty());

    // Headers that never come: the connection is closed after header_timeout_secs.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // A body that never comes: 503 after request_timeout_secs.
    let t = Instant::now();
    let r = request(
        port,
        b"POST /checkv2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nFrom: x\r\n",
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());

    // The locked-accounts API: read may list, only admin may change; the store is
    // the service's own, so a lock applies to the next message at once.
    let auth_read = format!("Authorization: Bearer {reader}\r\n");
    let auth_admin = format!("Authorization: Bearer {admin}\r\n");
    let r = get(port, "/api/accounts", &auth_read);
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"locked":[]}"#));
    let r = post(port, "/api/accounts/mallory/lock", &auth_read, b"");
    assert_eq!(r.status, 403, "{}", r.body);
    let json = "Content-Type: application/json\r\n";
    let r = post(
        port,
        "/api/accounts/mallory/lock",
        &format!("{auth_admin}{json}"),
        br#"{"reason": "phished password"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(port, "/api/accounts/mallory/lock", &auth_admin, b"");
    assert_eq!(r.status, 409, "{}", r.body);
    let r = post(port, "/api/accounts/x/lock", &auth_admin, br#"{"why": 1}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(error_of(&r).contains("why"), "{}", r.body);
    let r = get(port, "/api/accounts", &auth_read);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["locked"][0]["user"], "mallory", "{v}");
    assert_eq!(v["locked"][0]["reason"], "phished password", "{v}");
    let listed = Command::new(CHAFF)
        .args(["accounts", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("phished password"));
    let r = post(
        port,
        "/checkv2",
        &format!("{auth_admin}User: mallory\r\n"),
        HAM.as_bytes(),
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["action"], "reject", "{v}");
    assert!(v["symbols"]["CHAFF_ACCOUNT_LOCKED"].is_object(), "{v}");
    let r = post(port, "/api/accounts/mallory/unlock", &auth_admin, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(port, "/api/accounts/mallory/unlock", &auth_admin, b"");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(
        port,
        "/checkv2",
        &format!("{auth_admin}User: mallory\r\n"),
        HAM.as_bytes(),
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["action"], "no action", "{v}");
    let log = svc.log_text();
    assert!(
        log.contains("account locked through the API") && log.contains("by=\"root\""),
        "{log}"
    );

    // Failed passwords: 401 each, then the address must wait (429).
    for _ in 0..5 {
        let r = get(port, "/api/whoami", "Password: root:guess\r\n");
        assert_eq!(r.status, 401, "{}", r.body);
    }
    let r = get(
        port,
        "/api/whoami",
        &format!("Authorization: Bearer {admin}\r\n"),
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.head.contains("retry-after:"), "{}", r.head);
    let log = svc.log_text();
    assert!(log.contains("authentication failed"), "{log}");
    // Counted: answers by code, failed credentials.
    assert!(svc.metric("chaff_http_requests_total{code=\"401\"}") >= 6.0);
    assert_eq!(svc.metric("chaff_http_requests_total{code=\"413\"}"), 2.0);
    assert_eq!(svc.metric("chaff_http_requests_total{code=\"429\"}"), 1.0);
    assert_eq!(svc.metric("chaff_http_auth_failures_total"), 5.0);
    assert!(svc.metric("chaff_http_connections_total") >= 20.0);
    svc.stop();
}

#[test]
fn tls_with_a_self_signed_certificate() {
    require!("curl");
    let f = fixture();
    let dir = f.dir.path();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let config = dir.join("chaff.toml");
    write_toml(&config, &f.config, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[http]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n");
    std::fs::write(&config, text).unwrap();
    let svc = Service::start(dir, &config);
    let url = format!("https://localhost:{}", svc.port);
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap()
    };
    let cacert = cert_pem.to_str().unwrap();
    let out = curl(&["--cacert", cacert, &format!("{url}/ping")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pong\r\n");
    let spam = dir.join("spam.eml");
    std::fs::write(&spam, SPAM).unwrap();
    let out = curl(&[
        "--cacert",
        cacert,
        "--data-binary",
        &format!("@{}", spam.display()),
        &format!("{url}/checkv2"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "reject", "{v}");
    // Without the certificate the client refuses the server; plain HTTP gets no
    // HTTP answer.
    let out = curl(&[&format!("{url}/ping")]);
    assert!(!out.status.success(), "{out:?}");
    let r = get(svc.port, "/ping", "");
    assert_ne!(r.status, 200);
    // A renewed certificate is served after SIGHUP, without a restart.
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let renewed_pem = dir.join("renewed.pem");
    std::fs::write(&renewed_pem, renewed.cert.pem()).unwrap();
    std::fs::write(&cert_pem, renewed.cert.pem()).unwrap();
    std::fs::write(&key_pem, renewed.signing_key.serialize_pem()).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &svc.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !svc.log_text().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", svc.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let renewed_ca = renewed_pem.to_str().unwrap();
    let out = curl(&["--cacert", renewed_ca, &format!("{url}/ping")]);
    assert!(out.status.success(), "{out:?}");
    // A reload cannot turn TLS off: the listener keeps it until a restart.
    let text = std::fs::read_to_string(&config).unwrap();
    let (plain, _) = text.split_once("tls_cert").unwrap();
    std::fs::write(&config, plain).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &svc.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while svc.log_text().matches("configuration reloaded").count() < 2 {
        assert!(Instant::now() < deadline, "no reload:\n{}", svc.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = svc.log_text();
    assert!(log.contains("take effect after a restart"), "{log}");
    let out = curl(&["--cacert", renewed_ca, &format!("{url}/ping")]);
    assert!(out.status.success(), "still TLS: {out:?}");
    assert_ne!(get(svc.port, "/ping", "").status, 200, "no plain text");
    svc.stop();
}

#[test]
fn a_non_loopback_address_needs_tls_and_users() {
    let f = fixture();
    let dir = f.dir.path();
    let config = dir.join("chaff.toml");
    write_toml(&config, &f.config, "");
    let out = Command::new(CHAFF)
        .arg("milter")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{}", free_port()))
        .arg("--http")
        .arg("0.0.0.0:11333")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("TLS") && err.contains("users"),
        "{err}"
    );
    // The same in the file: refused by check-config, naming the line and field.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[http]\nlisten = \"0.0.0.0:11333\"\n");
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(CHAFF)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.listen") && err.contains("loopback"),
        "{err}"
    );
    // With TLS and users it is accepted; check-config reads their files too.
    let users = dir.join("users.toml");
    add_user(&users, "root", "admin", None);
    let cert = rcgen::generate_simple_self_signed(vec!["mx.example.com".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    text.push_str(
        "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n[users]\nfile = \"users.toml\"\n",
    );
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(CHAFF)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    let out = Command::new(CHAFF)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key.pem"),
        "{out:?}"
    );
}
