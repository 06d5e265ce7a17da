//! `chaff quarantine delete --learn-spam` on a store and a trained model: the
//! model learns the message, the entry's message is dropped, both are logged.

use chaff::{Action, Hit, Reason, Verdict};
use chaff_milter::quarantine::{EntryState, NewEntry, StateStore, StoredEnvelope, Told, now_ms};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chaff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaff"))
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn score(config: &Path, message: &Path) -> f64 {
    let out = chaff()
        .args(["score", "--format", "json", "--config"])
        .arg(config)
        .arg(message)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    v["score"].as_f64().unwrap()
}

#[test]
fn delete_with_learn_spam_teaches_the_model_then_drops_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("chaff.model");
    let out = chaff()
        .args(["train", "--jobs", "1", "-o"])
        .arg(&model)
        .arg(corpus().join("index"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let state = dir.path().join("state.redb");
    let config = dir.path().join("chaff.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"chaff.model\"\n\n[state]\npath = {:?}\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    // A ham message kept by mistake (as if quarantined).
    let message = corpus().join("ham/zh-seminar-free-admission.eml");
    let raw = std::fs::read(&message).unwrap();
    let before = score(&config, &message);
    let store = StateStore::open(&state).unwrap();
    let verdict = Verdict {
        action: Action::Quarantine,
        score: before,
        reply: None,
        reason: Reason::Score {
            quarantine: 9.0,
            reject: 15.0,
        },
        hits: Vec::<Hit>::new(),
        tokens: Vec::new(),
        truncated: false,
    };
    let e = NewEntry::new(
        now_ms(),
        "mx.test",
        StoredEnvelope::default(),
        &verdict,
        Told::Hold,
        &raw,
    )
    .unwrap();
    let id = store.put(&e).unwrap().to_string();
    drop(store);

    let out = chaff()
        .args(["quarantine", "delete", &id, "--learn-spam", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{id}: deleted")),
        "{}",
        text(&out)
    );
    let after = score(&config, &message);
    assert!(
        after > before,
        "learning as spam should raise the score: {before} -> {after}"
    );

    let store = StateStore::open_existing(&state).unwrap();
    let entry = store.get(id.parse().unwrap()).unwrap().unwrap();
    assert!(matches!(entry.summary.state, EntryState::Deleted { .. }));
    assert!(store.message(id.parse().unwrap()).unwrap().is_none());
    let whats: Vec<String> = store
        .actions(10)
        .unwrap()
        .into_iter()
        .map(|a| a.what)
        .collect();
    assert_eq!(whats, ["delete", "learn-spam"]);

    // Without a model nothing is deleted.
    let bare = dir.path().join("bare.toml");
    std::fs::write(
        &bare,
        format!("[state]\npath = {:?}\n", state.display().to_string()),
    )
    .unwrap();
    let store2 = StateStore::open_existing(&state).unwrap();
    let id2 = store2.put(&e).unwrap().to_string();
    drop(store2);
    let out = chaff()
        .args(["quarantine", "delete", &id2, "--learn-spam", "--config"])
        .arg(&bare)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && text(&out).contains("no model"),
        "{}",
        text(&out)
    );
    let store = StateStore::open_existing(&state).unwrap();
    assert_eq!(
        store
            .get(id2.parse().unwrap())
            .unwrap()
            .unwrap()
            .summary
            .state,
        EntryState::Held
    );
}
