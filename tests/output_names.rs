//! Issue 14 (low): message names in `chaff score` output. A newline in a file
//! name must not forge a verdict line, and names that are not UTF-8 must print
//! distinctly (not collapse to the same U+FFFD name).
#![cfg(unix)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

const HAM: &str = "From: a@example.com\nTo: b@example.org\nSubject: lunch\n\nSee you at noon.\n";

fn score(dir: &Path, format: &str) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .args(["score", "--format", format])
        .arg(dir)
        .output()
        .expect("chaff runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A directory holding files named with a newline, a tab, a backslash and
/// invalid UTF-8.
fn awkward_names() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let names: [&[u8]; 6] = [
        b"forged\nevil\treject\t99.00",
        b"tab\there",
        b"bad-\xff",
        b"bad-\xfe",
        b"bad-\\xff",
        b"plain",
    ];
    for name in names {
        std::fs::write(dir.path().join(OsStr::from_bytes(name)), HAM).unwrap();
    }
    dir
}

#[test]
fn text_output_has_one_line_per_message_and_distinct_names() {
    let dir = awkward_names();
    let out = score(dir.path(), "text");
    let text = String::from_utf8(out.stdout).expect("text output is UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "a newline in a name forged a line:\n{text}");
    for line in &lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert!(
            ["deliver", "quarantine", "reject"].contains(&fields[1]),
            "a tab in a name shifted the fields: {line:?}"
        );
    }
    let names: HashSet<&str> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "two names print the same:\n{text}");
    let root = dir.path().display().to_string();
    for want in [
        "/forged\\nevil\\treject\\t99.00",
        "/tab\\there",
        "/bad-\\xFF",
        "/bad-\\xFE",
        "/bad-\\\\xff",
        "/plain",
    ] {
        assert!(
            names.contains(format!("{root}{want}").as_str()),
            "{want} missing in\n{text}"
        );
    }
}

#[test]
fn json_output_names_non_utf8_files_distinctly() {
    let dir = awkward_names();
    let out = score(dir.path(), "json");
    let text = String::from_utf8(out.stdout).unwrap();
    let paths: HashSet<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(paths.len(), 6, "two names print the same:\n{text}");
    assert!(paths.iter().all(|p| !p.contains('\u{fffd}')), "{text}");
}
