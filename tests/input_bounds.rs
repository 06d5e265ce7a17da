//! Issue 14 (6, 7): inputs are opened once, sniffed from the bytes read, and read
//! no further than the size limit and one byte; pipes and devices are streams.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SPAM: &str = "Subject: 代开发票\r\n\r\n代开发票，优惠特价，免费咨询，赚钱发财！\r\n";

fn chaff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaff"))
}

/// Waits for `child` at most `secs` seconds; kills it and fails the test after.
fn finish(mut child: Child, secs: u64, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The verdict without its path.
fn verdict(mut line: serde_json::Value) -> serde_json::Value {
    line.as_object_mut().unwrap().remove("path");
    line
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("chaff.toml");
    std::fs::write(&path, "[limits]\nmax_message_size = \"1M\"\n").unwrap();
    path
}

fn score(args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = chaff();
    cmd.args(["score", "--format", "json"]).args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn piped_dev_stdin_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spam.eml");
    std::fs::write(&file, SPAM).unwrap();
    let want = json(&score(&[file.as_os_str()]).output().unwrap());
    assert!(want[0]["score"].as_f64().unwrap() > 0.0, "{want:?}");
    for path in ["/dev/stdin", "-"] {
        let mut child = score(&[path.as_ref()])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(SPAM.as_bytes())
            .unwrap();
        let out = finish(child, 60, path);
        assert!(out.status.success(), "{path}: {out:?}");
        let got = json(&out);
        assert_eq!(verdict(got[0].clone()), verdict(want[0].clone()), "{path}");
    }
}

#[test]
fn a_named_fifo_is_read_once_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let file = dir.path().join("spam.eml");
    std::fs::write(&file, SPAM).unwrap();
    let want = json(&score(&[file.as_os_str()]).output().unwrap());
    let child = score(&[fifo.as_os_str()]).spawn().unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            // Blocks until chaff opens the FIFO for reading.
            let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            w.write_all(SPAM.as_bytes()).unwrap();
        })
    };
    let out = finish(child, 60, "score FIFO");
    writer.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(verdict(json(&out)[0].clone()), verdict(want[0].clone()));
}

#[test]
fn devices_and_huge_files_are_answered_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let sparse = dir.path().join("sparse.eml");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let child = score(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "/dev/zero".as_ref(),
        sparse.as_os_str(),
    ])
    .spawn()
    .unwrap();
    let out = finish(child, 60, "score /dev/zero");
    assert!(out.status.success(), "{out:?}");
    let lines = json(&out);
    let zero = &lines[0]["reason"];
    assert_eq!(zero["kind"], "oversize", "{zero}");
    assert_eq!(zero["limit"], 1 << 20);
    assert_eq!(zero["size_unknown"], true);
    let huge = &lines[1]["reason"];
    assert_eq!(huge["kind"], "oversize", "{huge}");
    assert_eq!(huge["size"], 2u64 << 30);
    assert!(huge.get("size_unknown").is_none());
    // Text output says "more than" for the device.
    let child = chaff()
        .args(["score", "--config"])
        .arg(&cfg)
        .arg("/dev/zero")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, 60, "score /dev/zero (text)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("more than 1048576 bytes"), "{text}");
}

#[test]
fn learn_refuses_a_device_as_model_and_messages_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, SPAM).unwrap();
    let child = chaff()
        .args(["learn", "--spam", "--model", "/dev/zero", "--config"])
        .arg(&cfg)
        .arg(&msg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, 60, "learn --model /dev/zero");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a chaff model"), "{err}");
}
