//! The `chaff` command end to end, on the project's own corpus.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn chaff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaff"))
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("chaff runs")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

fn index_paths() -> Vec<(bool, PathBuf)> {
    std::fs::read_to_string(corpus().join("index"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (label, path) = l.split_once(' ').unwrap();
            (label == "spam", corpus().join(path))
        })
        .collect()
}

#[test]
fn score_json_has_one_line_per_message_in_input_order() {
    let paths: Vec<PathBuf> = index_paths().into_iter().map(|(_, p)| p).collect();
    let out = run(chaff().args(["score", "--format", "json"]).args(&paths));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), paths.len());
    for (line, path) in lines.iter().zip(&paths) {
        assert_eq!(line["path"], path.display().to_string());
        let action = line["action"].as_str().unwrap();
        assert!(["deliver", "quarantine", "reject"].contains(&action));
        assert!(line["score"].is_number());
        assert_eq!(line["reply"].is_string(), action == "reject", "{line}");
        for hit in line["hits"].as_array().unwrap() {
            for key in ["keyword", "category", "weight", "count"] {
                assert!(!hit[key].is_null(), "{key} missing in {hit}");
            }
        }
    }
}

#[test]
fn output_is_the_same_for_every_number_of_jobs() {
    let one = run(chaff()
        .args(["score", "--format", "json", "--jobs", "1"])
        .arg(corpus()));
    let two = run(chaff()
        .args(["score", "--format", "json", "--jobs", "2"])
        .arg(corpus()));
    let four = run(chaff()
        .args(["score", "--format", "json", "--jobs", "4"])
        .arg(corpus()));
    assert!(one.status.success());
    assert!(!one.stdout.is_empty());
    assert_eq!(one.stdout, two.stdout);
    assert_eq!(one.stdout, four.stdout);
}

#[test]
fn the_default_rejects_with_557() {
    let spam = corpus().join("spam/zh-invoice-gb2312-base64.eml");
    let out = run(chaff().args(["score", "--format", "json"]).arg(&spam));
    let line = &json_lines(&out)[0];
    assert_ne!(line["action"], "deliver", "{line}");
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[thresholds]\nquarantine = 0.5\nreject = 1\n").unwrap();
    let out = run(chaff()
        .args(["score", "--format", "json", "--config"])
        .arg(cfg.path())
        .arg(&spam));
    let line = &json_lines(&out)[0];
    assert_eq!(line["action"], "reject");
    assert_eq!(line["reply"], "557 5.7.1 forbid to send spam mail");
}

#[test]
fn unreadable_messages_are_reported_and_the_run_goes_on() {
    let good = corpus().join("ham/en-meeting-crlf.eml");
    let out = run(chaff()
        .args(["score", "--format", "json"])
        .arg(&good)
        .arg("/nonexistent/message")
        .arg(&good));
    assert_eq!(out.status.code(), Some(1));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["path"], "/nonexistent/message");
    assert!(lines[1]["error"].is_string());
    assert!(lines[2]["action"].is_string());
}

#[test]
fn mbox_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("inbox");
    let mut text = Vec::new();
    for name in ["spam/zh-evasion-spaces.eml", "ham/en-meeting-crlf.eml"] {
        text.extend_from_slice(b"From sender@example.com Mon Jan  1 00:00:00 2024\n");
        text.extend_from_slice(&std::fs::read(corpus().join(name)).unwrap());
        text.extend_from_slice(b"\n");
    }
    std::fs::write(&mbox, &text).unwrap();
    let out = run(chaff().args(["score", "--format", "json"]).arg(&mbox));
    let lines = json_lines(&out);
    let names: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    let base = mbox.display().to_string();
    assert_eq!(names, [format!("{base}#1"), format!("{base}#2")]);

    use std::io::Write;
    let mut child = chaff()
        .args(["score", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let msg = std::fs::read(corpus().join("spam/zh-evasion-spaces.eml")).unwrap();
    child.stdin.take().unwrap().write_all(&msg).unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["path"], "-");
    assert!(!lines[0]["hits"].as_array().unwrap().is_empty());
}

#[test]
fn eval_prints_the_figures() {
    let out = run(chaff()
        .args(["eval", "--format", "json"])
        .arg(corpus().join("index")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "messages",
        "tp",
        "fp",
        "tn",
        "fn",
        "spam_recall",
        "ham_fpr",
        "precision",
        "auc",
        "recall_at_1pct_fpr",
        "msgs_per_sec",
    ] {
        assert!(r[key].is_number(), "{key} missing: {r}");
    }
    let n = index_paths().len() as u64;
    assert_eq!(r["messages"].as_u64(), Some(n));
    let text = run(chaff().arg("eval").arg(corpus().join("index")));
    assert!(String::from_utf8_lossy(&text.stdout).contains("ROC AUC"));
}

#[test]
fn check_config_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[thresholds]\nquarantine = 4\nreject = 8\n").unwrap();
    let out = run(chaff().arg("check-config").arg(&good));
    assert!(out.status.success());
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[thresholds]\nquarantine = 4\n\n[replies]\nreject = \"forbid\"\n",
    )
    .unwrap();
    let out = run(chaff().arg("check-config").arg(&bad));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5", bad.display())), "{err}");
    assert!(err.contains("replies.reject"), "{err}");
    // A broken config is refused by `score` too, never silently replaced.
    let out = run(chaff().args(["score", "--config"]).arg(&bad).arg(corpus()));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn check_config_warns_of_unverified_allow_entries() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allow.toml");
    std::fs::write(
        &file,
        "[senders]\nallow = [\"ceo@example.com\"]\nauthserv_id = \"mx.site.test\"\n",
    )
    .unwrap();
    let out = run(chaff().arg("check-config").arg(&file));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning"), "{err}");
    // Without authserv_id or a network, nothing can prove the sender.
    std::fs::write(
        &file,
        "[senders]\nallow = [\"ceo@example.com\", \"b.test from 192.0.2.1\"]\n",
    )
    .unwrap();
    let out = run(chaff().arg("check-config").arg(&file));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("warning: {}:2", file.display())),
        "{err}"
    );
    assert!(
        err.contains("ceo@example.com never applies") && !err.contains("b.test"),
        "{err}"
    );
    std::fs::write(
        &file,
        "[senders]\nallow = [\"ceo@example.com\"]\n\nallow_unverified = true\n",
    )
    .unwrap();
    let out = run(chaff().arg("check-config").arg(&file));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("warning: {}:4", file.display())),
        "{err}"
    );
    assert!(err.contains("senders.allow_unverified"), "{err}");
    assert!(err.contains("forge"), "{err}");
    // A bad network is refused with its line and field.
    std::fs::write(
        &file,
        "[senders]\nallow = [\n  \"ceo@example.com from 203.0.113.0/24\",\n  \"x@example.com from 10.0.0/8\",\n]\n",
    )
    .unwrap();
    let out = run(chaff().arg("check-config").arg(&file));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4", file.display())), "{err}");
    assert!(
        err.contains("senders.allow") && err.contains("10.0.0/8"),
        "{err}"
    );
}

#[test]
fn the_documented_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("chaff.toml");
    let out = run(chaff().arg("check-config").arg(&example));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keyword_directories_extend_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("kw")).unwrap();
    std::fs::write(
        dir.path().join("kw/phishing.txt"),
        "verify your account 9\n",
    )
    .unwrap();
    let cfg = dir.path().join("chaff.toml");
    std::fs::write(&cfg, "[keywords]\ndirs = [\"kw\"]\n").unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(
        &msg,
        "Subject: hello\n\nPlease VERIFY your  account today, 免费!\n",
    )
    .unwrap();
    let out = run(chaff()
        .args(["score", "--format", "json", "--config"])
        .arg(&cfg)
        .arg(&msg));
    let line = &json_lines(&out)[0];
    let cats: Vec<&str> = line["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["category"].as_str().unwrap())
        .collect();
    assert!(cats.contains(&"phishing"), "{line}");
    assert!(cats.contains(&"free"), "{line}");
}
