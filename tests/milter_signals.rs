//! The `chaff milter` binary under signals, as systemd drives it: SIGHUP reloads
//! the configuration atomically (a broken one is refused and logged, the old one
//! keeps serving), SIGTERM lets the message in flight finish and exits 0; bad
//! command lines and configurations are refused before listening.

mod milter_support;

use chaff_milter::client::{Client, Submission};
use chaff_milter::protocol::{Command, Response};
use milter_support::*;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

fn start(config: &Path, log: &Path, port: u16) -> Child {
    let child = Process::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("milter")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(child: &Child, sig: &str) {
    let ok = Process::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

fn wait_for(log: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = std::fs::read_to_string(log).unwrap_or_default();
        if l.contains(text) {
            return l;
        }
        assert!(Instant::now() < deadline, "`{text}` never logged:\n{l}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn action(addr: &str, raw: &str) -> &'static str {
    let mut c = Client::connect(addr).unwrap();
    let env = Submission {
        sender: "a@example.com",
        recipients: vec!["b@example.org"],
        auth_user: None,
        queue_id: Some("QSIG"),
    };
    let a = c.message(&env, raw.as_bytes()).unwrap();
    a.action()
}

#[test]
fn sighup_reloads_atomically_and_sigterm_drains() {
    let f = fixture();
    let config = f.dir.path().join("chaff.toml");
    let log = f.dir.path().join("milter.log");
    write_toml(&config, &f.config, "");
    let port = free_port();
    let addr = format!("inet:127.0.0.1:{port}");
    let mut child = start(&config, &log, port);
    assert_eq!(action(&addr, SPAM), "reject");

    // Raise the thresholds above the spam's score and reload.
    let mut relaxed = f.config.clone();
    relaxed.engine.thresholds.quarantine = f.scores[2] + 1.0;
    relaxed.engine.thresholds.reject = f.scores[2] + 2.0;
    write_toml(&config, &relaxed, "");
    signal(&child, "HUP");
    wait_for(&log, "configuration reloaded");
    assert_eq!(action(&addr, SPAM), "deliver");

    // A broken file is refused, logged, and the relaxed configuration serves on.
    std::fs::write(&config, "[thresholds]\nreject = -\n").unwrap();
    signal(&child, "HUP");
    let l = wait_for(&log, "reload refused");
    assert!(l.contains("chaff.toml"), "the error names the file:\n{l}");
    assert_eq!(action(&addr, SPAM), "deliver");

    // SIGTERM in the middle of a message: it is still answered, then chaff exits 0.
    let mut c = Client::connect(&addr).unwrap();
    c.queue(&Command::Mail(vec![b"<a@example.com>"]));
    c.queue(&Command::Header {
        name: b"Subject",
        value: b" drain",
    });
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    c.queue(&Command::Eoh);
    c.queue(&Command::Body(b"still answered\r\n"));
    c.queue(&Command::Eob(b""));
    let mut last = c.read_response().unwrap();
    while !last.is_final() {
        last = c.read_response().unwrap();
    }
    assert_eq!(last, Response::Continue);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "chaff did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    wait_for(&log, "stopped");
}

#[test]
fn bad_command_lines_and_configurations_are_refused_before_listening() {
    let f = fixture();
    let run = |args: &[&str]| {
        Process::new(env!("CARGO_BIN_EXE_chaff"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["milter", "--listen", "tcp:1234"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inet:HOST:PORT"));

    // A bad value and an unknown field are both refused, naming file and field.
    let bad = f.dir.path().join("bad.toml");
    for (toml, field) in [
        (
            "[milter]\nscore_header = \"X Spam\"\n",
            "milter.score_header",
        ),
        ("[milter]\nno_such_field = 1\n", "no_such_field"),
    ] {
        std::fs::write(&bad, toml).unwrap();
        let out = run(&[
            "milter",
            "--config",
            bad.to_str().unwrap(),
            "--listen",
            "inet:127.0.0.1:0",
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("bad.toml") && err.contains(field), "{err}");
    }
}

#[test]
fn accounts_command_lists_unlocks_and_locks() {
    let f = fixture();
    let config = f.dir.path().join("chaff.toml");
    write_toml(&config, &f.config, "");
    let chaff = |args: &[&str]| {
        Process::new(env!("CARGO_BIN_EXE_chaff"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    // Before the service or `lock` made the store, reading it says so and does
    // not create it.
    let out = chaff(&["accounts", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lock store"));
    let out = chaff(&["accounts", "lock", "carol", "--reason", "phished password"]);
    assert!(out.status.success());
    let out = chaff(&["accounts", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("carol") && text.contains("phished password"),
        "{text}"
    );
    assert!(text.contains(" UTC"), "{text}");
    let out = chaff(&["accounts", "unlock", "carol"]);
    assert!(out.status.success());
    let out = chaff(&["accounts", "unlock", "carol"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unlocking twice says it was not locked"
    );
    let out = chaff(&["accounts", "list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no locked accounts"));
}

#[test]
fn the_contrib_example_configuration_is_valid_and_documents_the_defaults() {
    use chaff_milter::{AccountsConfig, MilterConfig, ServiceConfig};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/chaff-milter.toml");
    let config =
        ServiceConfig::load(&path).expect("contrib/chaff-milter.toml loads and checks out");
    // Examples without a default: the listen addresses.
    let defaults = MilterConfig {
        listen: config.milter.listen.clone(),
        metrics: config.milter.metrics.clone(),
        ..MilterConfig::default()
    };
    assert_eq!(
        config.milter, defaults,
        "the example's values are the defaults"
    );
    // `db` is made absolute against the file's directory; the default is absolute.
    assert_eq!(config.accounts, AccountsConfig::default());
    // The HTTP listener is off unless its table is uncommented; uncommented, the
    // documented values are the defaults (but the example paths).
    assert_eq!(config.http, None);
    let text = std::fs::read_to_string(&path).unwrap();
    let (_, block) = text.split_once("# --- http").expect("the http block");
    let (block, _) = block.split_once("# --- end http").expect("its end");
    let on: String = block
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = chaff::config::ConfigFile::from_toml(&on, &path).expect("the http block parses");
    let on = ServiceConfig::from_file(&file).expect("the http block checks out");
    let http = on.http.expect("[http] present");
    assert_eq!(
        http,
        chaff_milter::http::config::HttpConfig {
            tls_cert: http.tls_cert.clone(),
            tls_key: http.tls_key.clone(),
            ..Default::default()
        }
    );
    assert!(http.tls_cert.is_some() && on.users.file.is_some());
}
