//! The service at its edges (issue 14): a second instance on a live Unix socket,
//! new connections during the SIGTERM drain.

mod milter_support;

use chaff_milter::client::{Client, Submission};
use chaff_milter::protocol::Command;
use chaff_milter::server::{self, ListenAddr, ServeOptions};
use milter_support::*;
use std::io::{Read, Write};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

fn submission() -> Submission<'static> {
    Submission {
        sender: "a@example.com",
        recipients: vec!["b@example.org"],
        auth_user: None,
        queue_id: Some("QEDGE"),
    }
}

#[test]
fn a_second_instance_on_a_live_unix_socket_refuses_to_start() {
    let f = fixture();
    let sock = f.dir.path().join("milter.sock");
    let opts = ServeOptions {
        listen: ListenAddr::Unix(sock.clone()),
        metrics: None,
        config_path: None,
        http: None,
    };
    let first = server::spawn(&f.config, opts.clone()).expect("first starts");
    let e = server::spawn(&f.config, opts.clone())
        .map(|_| ())
        .expect_err("the second must not start");
    assert!(e.to_string().contains("already running"), "{e}");
    // The first still answers on its socket.
    let addr = format!("unix:{}", sock.display());
    let mut c = Client::connect(&addr).unwrap();
    assert_eq!(
        c.message(&submission(), HAM.as_bytes()).unwrap().action(),
        "deliver"
    );
    drop(c);
    first.shutdown();
    // A socket nothing answers on (left by a crash) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(f.dir.path().join("stale.sock")).unwrap();
    drop(stale);
    let again = server::spawn(
        &f.config,
        ServeOptions {
            listen: ListenAddr::Unix(f.dir.path().join("stale.sock")),
            ..opts
        },
    )
    .expect("a stale socket is replaced");
    again.shutdown();
}

#[test]
fn during_the_drain_new_connections_are_refused_and_only_open_ones_counted() {
    let f = fixture();
    let config = f.dir.path().join("chaff.toml");
    write_toml(
        &f.dir.path().join("chaff.toml"),
        &f.config,
        "drain_timeout_secs = 10",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let log = f.dir.path().join("milter.log");
    let mut child = Process::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("milter")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr = format!("inet:127.0.0.1:{port}");
    // One connection in the middle of a message, which the drain waits for.
    let mut busy = Client::connect(&addr).unwrap();
    busy.send(&Command::Mail(vec![b"<a@example.com>"])).unwrap();
    busy.send(&Command::Header {
        name: b"Subject",
        value: b"pending",
    })
    .unwrap();
    // Then connections that end before the signal.
    for _ in 0..4 {
        let mut c = Client::connect(&addr).unwrap();
        c.message(&submission(), HAM.as_bytes()).unwrap();
        c.quit().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        Process::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("draining") && l.contains("connections=") {
            break l;
        }
        assert!(Instant::now() < deadline, "no drain logged:\n{l}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(text.contains("connections=1"), "{text}");
    // A new connection is refused, or closed at once; it does not hang.
    let started = Instant::now();
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 16];
        let r = s.read(&mut b);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "a new connection hung: {r:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a new connection hung"
    );
    drop(busy);
    let _ = child.wait();
}

/// Starts the binary with `extra` in `[milter]`, under `sh -c "PREFIX exec …"`.
fn start_binary(
    f: &Fixture,
    extra: &str,
    prefix: &str,
) -> (std::process::Child, u16, std::path::PathBuf) {
    let config = f.dir.path().join("chaff.toml");
    write_toml(&config, &f.config, extra);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let log = f.dir.path().join("milter.log");
    let child = Process::new("sh")
        .arg("-c")
        .arg(format!(
            "{prefix} exec \"$0\" milter --config \"$1\" --listen \"$2\""
        ))
        .arg(env!("CARGO_BIN_EXE_chaff"))
        .arg(&config)
        .arg(format!("inet:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port, log)
}

#[test]
fn a_storm_of_bad_connections_logs_a_few_lines_with_counts() {
    let f = fixture();
    let (mut child, port, log) = start_binary(&f, "", "");
    for _ in 0..1500 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A packet of an unknown command: a protocol error.
        let _ = s.write_all(&[0, 0, 0, 1, b'~']);
        let mut b = [0u8; 8];
        let _ = s.read(&mut b);
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.matches("dropping connection").count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} lines:\n{}",
        &text[..text.len().min(3000)]
    );
    // The service still answers.
    let mut c = Client::connect(&format!("inet:127.0.0.1:{port}")).unwrap();
    assert_eq!(
        c.message(&submission(), HAM.as_bytes()).unwrap().action(),
        "deliver"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_low_open_files_limit_caps_the_slots_instead_of_failing_accepts() {
    let f = fixture();
    let (mut child, port, log) = start_binary(&f, "", "ulimit -n 160;");
    let mut held = Vec::new();
    for _ in 0..250 {
        held.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("open-files limit"), "{text}");
    let failures = text.matches("accept failed").count();
    assert!(failures <= 2, "{failures} accept failures logged");
    drop(held);
    // Served again once the connections are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = Client::connect(&format!("inet:127.0.0.1:{port}"))
            .and_then(|mut c| c.message(&submission(), HAM.as_bytes()))
            .is_ok_and(|a| a.action() == "deliver");
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "not served after the storm");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
