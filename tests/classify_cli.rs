//! `chaff train`, `chaff learn` and `chaff eval --split/--train` end to end, on the
//! project's own corpus.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chaff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaff"))
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("chaff runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Trains a model on the own corpus into `dir` and writes a config naming it.
fn trained(dir: &Path) -> PathBuf {
    let model = dir.join("chaff.model");
    let out = run(chaff()
        .args(["train", "--jobs", "1", "-o"])
        .arg(&model)
        .arg(corpus().join("index")));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("trained on"), "{}", stdout(&out));
    let config = dir.join("chaff.toml");
    // Relative to the config file, as the config documents.
    std::fs::write(&config, "model = \"chaff.model\"\n").expect("config");
    config
}

fn verdict(config: &Path, message: &Path) -> serde_json::Value {
    let out = run(chaff()
        .args(["score", "--format", "json", "--config"])
        .arg(config)
        .arg(message));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).expect("one JSON line")
}

#[test]
fn train_then_score_explains_with_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = trained(dir.path());
    let v = verdict(&config, &corpus().join("spam/zh-invoice-gb2312-base64.eml"));
    assert_ne!(v["action"], "deliver", "{v}");
    let tokens = v["tokens"].as_array().expect("tokens");
    assert!(!tokens.is_empty(), "{v}");
    assert!(tokens[0]["weight"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
}

#[test]
fn learn_changes_the_verdict_and_keeps_the_file_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = trained(dir.path());
    // A ham the model delivers, then (an admin says) it is spam after all.
    let message = dir.path().join("odd.eml");
    std::fs::copy(corpus().join("ham/en-essex-sussex.eml"), &message).expect("copy");
    assert_eq!(verdict(&config, &message)["action"], "deliver");

    let out = run(chaff()
        .args(["learn", "--spam", "--config"])
        .arg(&config)
        .arg(&message));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("spam"), "{}", stdout(&out));
    assert_ne!(verdict(&config, &message)["action"], "deliver");

    let out = run(chaff()
        .args(["learn", "--ham", "--config"])
        .arg(&config)
        .arg(&message));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(verdict(&config, &message)["action"], "deliver");
    // No temporary file is left beside the model.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_broken_model_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = trained(dir.path());
    let model = dir.path().join("chaff.model");
    let bytes = std::fs::read(&model).expect("model");
    std::fs::write(&model, &bytes[..bytes.len() / 3]).expect("truncate");
    let out = run(chaff()
        .args(["score", "--config"])
        .arg(&config)
        .arg(corpus().join("ham")));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("chaff.model") && err.contains("truncated"),
        "{err}"
    );

    std::fs::write(&model, "# not a model\n").expect("foreign");
    let out = run(chaff()
        .args(["learn", "--ham", "--config"])
        .arg(&config)
        .arg(corpus().join("ham")));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a chaff model"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn learn_needs_a_model_and_a_label() {
    let out = run(chaff().args(["learn", "--spam"]).arg(corpus().join("spam")));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no model"), "{}", stderr(&out));
    let out = run(chaff().arg("learn").arg(corpus().join("spam")));
    assert!(!out.status.success());
}

#[test]
fn eval_split_and_train_modes_report_ranking_figures() {
    let index = corpus().join("index");
    let out = run(chaff()
        .args(["eval", "--jobs", "1", "--split", "0.5"])
        .arg(&index));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "1-AUC",
        "recall @0.1% FPR",
        "FPR @99% recall",
        "messages/s",
        "trained on",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let out = run(chaff()
        .args(["eval", "--format", "json", "--train"])
        .arg(&index)
        .arg(&index));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert!(v["auc"].as_f64().is_some_and(|a| a > 0.9), "{v}");
    assert!(
        v["fpr_at_99pct_recall"].is_number() && v["msgs_per_sec"].is_number(),
        "{v}"
    );
    let out = run(chaff()
        .args([
            "eval", "--format", "json", "--split", "0.5", "--method", "bayes",
        ])
        .arg(&index));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert!(
        v["method"].as_str().is_some_and(|m| m.contains("Bayes")),
        "{v}"
    );
    let out = run(chaff().args(["eval", "--split", "1.5"]).arg(&index));
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 14 (8): a running scanner whose model file is replaced by a broken one
/// keeps scoring with the previous model and warns once on stderr.
#[test]
fn score_warns_once_when_the_model_is_replaced_by_a_broken_file() {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = trained(dir.path());
    std::fs::write(
        &config,
        "model = \"chaff.model\"\n[classifier]\nreload_interval_ms = 0\n",
    )
    .expect("config");
    let mut child = chaff()
        .args(["score", "--jobs", "1", "--config"])
        .arg(&config)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chaff runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 1 << 16];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(());
        }
        all
    });
    let messages = |range: std::ops::Range<u32>| -> String {
        range
            .map(|i| format!("From a@b Sat Jan  1 00:00:00 2000\nSubject: m{i}\n\nhello world\n\n"))
            .collect()
    };
    // Enough messages that output is flushed: the scanner then runs on the model.
    stdin
        .write_all(messages(0..3000).as_bytes())
        .expect("write");
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("output before the model is replaced");
    let model = dir.path().join("chaff.model");
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "# not a model\n").expect("broken");
    std::fs::rename(&broken, &model).expect("replace");
    stdin
        .write_all(messages(3000..3100).as_bytes())
        .expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("chaff ends");
    let lines = reader.join().expect("reader");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&lines).lines().count(), 3100);
    let err = stderr(&out);
    assert_eq!(err.matches("model file refused").count(), 1, "{err}");
    assert!(err.contains("not a chaff model"), "{err}");
}
