//! Issue 13: `chaff train --spam PATH... --ham PATH...` and `chaff learn --spam
//! DIR` read mailboxes (Maildirs, mbox files, directories) like `chaff score`,
//! learn byte-identical copies once, and still take index files; and a model file
//! written by the version before issue 13 still loads and scores as it did.

use std::fs;
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The corpus messages of one label, as `(file name, bytes)`.
fn messages(label: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(corpus().join(label))
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

/// Spam as an mbox file (mboxrd quoting), ham as a Maildir (cur/ and new/).
fn mailboxes(dir: &Path) -> (PathBuf, PathBuf) {
    let mbox = dir.join("spam.mbox");
    let mut m = Vec::new();
    for (_, raw) in messages("spam") {
        m.extend_from_slice(b"From spammer@example.com Sat Jan  1 00:00:00 2000\n");
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let bare = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
            if line[bare..].starts_with(b"From ") {
                m.push(b'>');
            }
            m.extend_from_slice(line);
        }
        if !m.ends_with(b"\n") {
            m.push(b'\n');
        }
        m.push(b'\n');
    }
    fs::write(&mbox, m).expect("mbox");
    let maildir = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    for (i, (name, raw)) in messages("ham").into_iter().enumerate() {
        let sub = if i % 2 == 0 { "cur" } else { "new" };
        fs::write(maildir.join(sub).join(format!("{i}.{name}:2,S")), raw).expect("ham");
    }
    // A message being delivered: never read.
    fs::write(maildir.join("tmp/partial"), "Subject: half").expect("tmp");
    (mbox, maildir)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_str(text(&out.stdout).trim()).expect("one JSON object")
}

#[test]
fn train_from_an_mbox_and_a_maildir_learns_copies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mbox, maildir) = mailboxes(dir.path());
    let (spam, ham) = (messages("spam").len() as u64, messages("ham").len() as u64);
    // The same spam again as a folder of files: byte-identical to the mbox's
    // messages, so each is learned once.
    let copies = dir.path().join("copies");
    fs::create_dir(&copies).expect("dir");
    for (name, raw) in messages("spam").into_iter().take(3) {
        fs::write(copies.join(name), raw).expect("copy");
    }
    let model = dir.path().join("m.model");
    let out = run(chaff()
        .args(["train", "--jobs", "2", "--format", "json", "-o"])
        .arg(&model)
        .arg("--spam")
        .arg(&mbox)
        .arg(&copies)
        .arg("--ham")
        .arg(&maildir));
    let j = json(&out);
    assert_eq!(
        (j["spam"].as_u64(), j["ham"].as_u64()),
        (Some(spam), Some(ham)),
        "{j}"
    );
    assert_eq!(j["duplicates"].as_u64(), Some(3), "{j}");
    assert_eq!(j["unreadable"].as_u64(), Some(0), "{j}");
    assert!(j["thresholds"].is_object(), "{j}");

    // The model scores: a spam of the set is flagged, a ham delivered.
    let config = dir.path().join("chaff.toml");
    fs::write(&config, "model = \"m.model\"\n").expect("config");
    let verdict = |path: &Path| {
        json(&run(chaff()
            .args(["score", "--format", "json", "--config"])
            .arg(&config)
            .arg(path)))
    };
    let v = verdict(&corpus().join("spam/zh-invoice-gb2312-base64.eml"));
    assert_ne!(v["action"], "deliver", "{v}");
    let v = verdict(&corpus().join("ham/zh-lab-7bit-label-8bit.eml"));
    assert_eq!(v["action"], "deliver", "{v}");

    // The same messages given in another order and through an index file as
    // well: the same model, to the byte, since training does not depend on the
    // order (the index lists ham first, then spam).
    let again = dir.path().join("again.model");
    let out = run(chaff()
        .args(["train", "--jobs", "1", "--format", "json", "-o"])
        .arg(&again)
        .arg(corpus().join("index"))
        .arg("--ham")
        .arg(&maildir)
        .arg("--spam")
        .arg(&copies)
        .arg(&mbox));
    let j = json(&out);
    assert_eq!(
        (
            j["spam"].as_u64(),
            j["ham"].as_u64(),
            j["duplicates"].as_u64()
        ),
        (Some(spam), Some(ham), Some(spam + ham + 3)),
        "{j}"
    );
    let weights = |p: &Path| {
        let b = fs::read(p).expect("model");
        // The metadata holds creation times; compare the weight tables.
        b[b.len() - (4 << 20) - 4..b.len() - 4].to_vec()
    };
    assert!(
        weights(&model) == weights(&again),
        "the order changed the model"
    );
}

#[test]
fn train_needs_messages_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(chaff().args(["train", "-o"]).arg(dir.path().join("m")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A missing mailbox is reported and counted, the rest is learned.
    let (mbox, _) = mailboxes(dir.path());
    let out = run(chaff()
        .args(["train", "--format", "json", "-o"])
        .arg(dir.path().join("m"))
        .arg("--spam")
        .arg(&mbox)
        .arg("--ham")
        .arg(dir.path().join("no-such-maildir"))
        .arg(corpus().join("ham")));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no-such-maildir"),
        "{}",
        text(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("json");
    assert_eq!(j["unreadable"].as_u64(), Some(1), "{j}");
}

#[test]
fn learn_takes_folders_and_learns_copies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m.model");
    let out = run(chaff()
        .args(["train", "--jobs", "1", "-o"])
        .arg(&model)
        .arg(corpus().join("index")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A folder of spam the model let through, with one file twice.
    let missed = dir.path().join("missed");
    fs::create_dir(&missed).expect("dir");
    let ham = messages("ham");
    let picked: Vec<&(String, Vec<u8>)> =
        ham.iter().filter(|(n, _)| n.starts_with("en-")).collect();
    assert!(picked.len() >= 2);
    for (name, raw) in &picked {
        fs::write(missed.join(name), raw).expect("write");
    }
    fs::write(missed.join("again.eml"), &picked[0].1).expect("write");
    let out = run(chaff()
        .args(["learn", "--model"])
        .arg(&model)
        .arg("--spam")
        .arg(&missed));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), picked.len() + 1, "{stdout}");
    assert_eq!(stdout.matches("learned once").count(), 1, "{stdout}");
    assert!(
        text(&out.stderr).contains(&format!(
            "learned {} message(s) as spam and 0 as ham",
            picked.len()
        )),
        "{}",
        text(&out.stderr)
    );
    // --spam and --ham with their own paths in one run; a bare label takes the
    // paths at the end.
    let out = run(chaff()
        .args(["learn", "--model"])
        .arg(&model)
        .arg("--ham")
        .arg(&missed)
        .arg("--spam")
        .arg(corpus().join("spam/zh-evasion-spaces.eml")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("as spam and"),
        "{}",
        text(&out.stderr)
    );
    let out = run(chaff()
        .args(["learn", "--model"])
        .arg(&model)
        .arg("--spam")
        .arg("--ham")
        .arg(&missed)
        .arg(corpus().join("spam/zh-evasion-spaces.eml")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(chaff().args(["learn", "--model"]).arg(&model).arg(&missed));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// A model file written by `chaff train` before issue 13 (tokeniser version 1;
/// `tests/fixtures/model-v1.model`, trained by commit 1cb5097 with `[classifier]
/// bits = 16` on `corpus/index`) still loads, is scanned with the features it was
/// trained on (the classifier's points and tokens are those that version gave,
/// recorded in `model-v1.expected.json`, multipart/alternative mail included), and
/// the admin is told to retrain.
#[test]
fn a_model_written_before_issue_13_still_loads_and_scores_as_it_did() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("chaff.toml");
    fs::write(
        &config,
        format!(
            "model = \"{}\"\n",
            fixtures.join("model-v1.model").display()
        ),
    )
    .expect("config");
    let expected: Vec<serde_json::Value> = serde_json::from_str(
        &fs::read_to_string(fixtures.join("model-v1.expected.json")).expect("expected"),
    )
    .expect("json");
    assert!(expected.len() >= 4);
    for e in &expected {
        let out = run(chaff()
            .args(["score", "--format", "json", "--config"])
            .arg(&config)
            .arg(corpus().join(e["path"].as_str().expect("path"))));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("tokeniser version 1") && stderr.contains("chaff train"),
            "{stderr}"
        );
        let v = json(&out);
        assert_eq!(v["tokens"], e["tokens"], "{}", e["path"]);
        let hits: f64 = v["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["contribution"].as_f64().expect("contribution"))
            .sum();
        let points = v["score"].as_f64().expect("score") - hits;
        let want = e["classifier_points"].as_f64().expect("points");
        assert!(
            (points - want).abs() < 1e-9,
            "{}: {points} != {want}",
            e["path"]
        );
    }
    // check-config says so too, and `learn` updates it with its own features.
    let out = run(chaff().arg("check-config").arg(&config));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("retrain"),
        "{}",
        text(&out.stderr)
    );
    let copy = dir.path().join("copy.model");
    fs::copy(fixtures.join("model-v1.model"), &copy).expect("copy");
    let out = run(chaff()
        .args(["learn", "--model"])
        .arg(&copy)
        .arg("--spam")
        .arg(corpus().join("ham/en-essex-sussex.eml")));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `chaff eval --folds`: every message held out once, the training orders
/// measured on the same folds (and, training being order-free, alike), the folds
/// written for another filter.
#[test]
fn eval_folds_pools_held_out_scores_and_writes_the_folds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(chaff()
        .args([
            "eval",
            "--folds",
            "3",
            "--seed",
            "7",
            "--train-order",
            "shuffled,sorted",
            "--jobs",
            "2",
            "--format",
            "json",
            "--write-folds",
        ])
        .arg(dir.path())
        .arg(corpus().join("index")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(reports.len(), 2);
    let index = fs::read_to_string(corpus().join("index")).expect("index");
    let n = index.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    for r in &reports {
        assert_eq!(r["messages"].as_u64(), Some(n), "{r}");
        assert_eq!(r["crossfit_auc"].as_array().map(Vec::len), Some(3), "{r}");
    }
    assert_eq!(reports[0]["train_order"], "shuffled");
    assert_eq!(reports[1]["train_order"], "sorted");
    assert_eq!(reports[0]["auc"], reports[1]["auc"]);
    assert_eq!(reports[0]["quarantine"], reports[1]["quarantine"]);
    // Each message in exactly one test fold; a fold's training set is the rest.
    let mut tested = Vec::new();
    for f in 1..=3 {
        let test = fs::read_to_string(dir.path().join(format!("fold{f}.test"))).expect("test");
        let train = fs::read_to_string(dir.path().join(format!("fold{f}.train"))).expect("train");
        assert_eq!(
            (test.lines().count() + train.lines().count()) as u64,
            n,
            "fold {f}"
        );
        tested.extend(test.lines().map(str::to_string));
    }
    tested.sort();
    tested.dedup();
    assert_eq!(tested.len() as u64, n);
    let scores = fs::read_to_string(dir.path().join("scores.sorted")).expect("scores");
    assert_eq!(scores.lines().count() as u64, n);
}
