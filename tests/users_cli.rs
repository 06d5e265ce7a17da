//! `chaff users`: add, list, passwd, token, remove, on a users file written with
//! mode 0600; bad requests are refused with a clear error and change nothing.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn users(file: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("users")
        .arg("--file")
        .arg(file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refused command may exit before reading its input: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn users_are_added_listed_changed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let o = users(
        &file,
        &[
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            "--token",
        ],
        "a good password\n",
    );
    assert!(o.status.success(), "{}", err(&o));
    let token = out(&o).trim().to_string();
    assert!(token.starts_with("chf_") && token.len() == 47, "{token}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&token), "the token itself is never stored");
    assert!(!text.contains("a good password"), "nor the password");
    assert!(text.contains("$argon2id$"), "{text}");

    let o = users(
        &file,
        &["add", "bob", "--role", "read", "--password-stdin"],
        "another password\n",
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "", "no token asked, none shown");
    let o = users(&file, &["list"], "");
    assert_eq!(
        out(&o),
        "alice\tadmin\tpassword yes\ttoken yes\nbob\tread\tpassword yes\ttoken no\n"
    );

    // Refusals: a taken name, a bad name, a short password, a bad role, an unknown
    // user, a token-only user without --token. The file is unchanged by each.
    let before = std::fs::read_to_string(&file).unwrap();
    for (args, stdin, why) in [
        (
            &["add", "alice", "--role", "read", "--password-stdin"][..],
            "long enough pw\n",
            "already exists",
        ),
        (
            &["add", "a:b", "--role", "read", "--password-stdin"][..],
            "long enough pw\n",
            "not a usable user name",
        ),
        (
            &["add", "carol", "--role", "read", "--password-stdin"][..],
            "short\n",
            "too short",
        ),
        (
            &["add", "carol", "--role", "root", "--password-stdin"][..],
            "long enough pw\n",
            "read, scan or admin",
        ),
        (
            &["passwd", "nobody", "--password-stdin"][..],
            "long enough pw\n",
            "no user `nobody`",
        ),
        (&["remove", "nobody"][..], "", "no user `nobody`"),
        (
            &["add", "carol", "--role", "read", "--no-password"][..],
            "",
            "--token",
        ),
    ] {
        let o = users(&file, args, stdin);
        assert!(!o.status.success(), "{args:?}");
        assert!(err(&o).contains(why), "{args:?}: {}", err(&o));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    // passwd changes the hash; token makes a new one; --revoke removes it.
    let o = users(
        &file,
        &["passwd", "bob", "--password-stdin"],
        "a new password\n",
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_ne!(std::fs::read_to_string(&file).unwrap(), before);
    let o = users(&file, &["token", "alice"], "");
    let new = out(&o).trim().to_string();
    assert!(new.starts_with("chf_") && new != token, "{new}");
    let o = users(&file, &["token", "alice", "--revoke"], "");
    assert!(o.status.success());
    let o = users(
        &file,
        &["add", "svc", "--role", "scan", "--no-password", "--token"],
        "",
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = users(&file, &["remove", "bob"], "");
    assert!(o.status.success());
    let o = users(&file, &["list"], "");
    assert_eq!(
        out(&o),
        "alice\tadmin\tpassword yes\ttoken no\nsvc\tscan\tpassword no\ttoken yes\n"
    );
    // Without a terminal and without --password-stdin, it says what to do.
    let o = users(&file, &["add", "dave", "--role", "read"], "");
    assert!(err(&o).contains("--password-stdin"), "{}", err(&o));
    // Without --file, the configuration names the file.
    let o = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .args(["users", "list"])
        .output()
        .unwrap();
    assert!(err(&o).contains("no users file"), "{}", err(&o));
}
