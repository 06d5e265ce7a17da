//! `chaff check-config` on thresholds (issue 14): negative or zero thresholds are
//! refused in both tables, and the outbound ones are printed when set.

use std::process::{Command, Output};

fn check(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chaff.toml");
    std::fs::write(&path, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn negative_thresholds_are_refused_with_their_line() {
    for (text, field) in [
        (
            "[thresholds]\nquarantine = 5\nreject = 10\n[outbound]\nquarantine = -3\nreject = -1\n",
            "chaff.toml:5: field `outbound.quarantine`",
        ),
        (
            "[outbound]\nreject = -8\n",
            "chaff.toml:2: field `outbound.reject`",
        ),
        (
            "[thresholds]\nquarantine = 0\n",
            "chaff.toml:2: field `thresholds.quarantine`",
        ),
    ] {
        let out = check(text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}: accepted");
        assert!(err.contains(field), "{text}: {err}");
        assert!(err.contains("must be above 0"), "{err}");
    }
}

#[test]
fn outbound_thresholds_are_printed() {
    let out = check("[thresholds]\nquarantine = 5\nreject = 10\n[outbound]\nreject = 7\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("quarantine at 5, reject at 10")
            && text.contains("outbound (authenticated) mail: quarantine at 5, reject at 7"),
        "{text}"
    );
    let out = check("[thresholds]\nquarantine = 5\nreject = 10\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("outbound mail: as inbound"), "{text}");
}

#[test]
fn state_and_quarantine_tables_are_checked() {
    let out = check(
        "[state]\npath = \"state.redb\"\nhistory = 500\n\n[quarantine]\nmode = \"store\"\n\
         keep_rejected = true\nmax_age = \"12h\"\nmax_bytes = \"500M\"\n\
         release_relay = \"127.0.0.1:25\"\nrelease_key = \"release.key\"\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No warning; only the note that the service will make the release key.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("warning"), "{err}");
    assert!(
        err.contains("release key") && err.contains("does not exist yet"),
        "{err}"
    );
    // Store mode without a relay: valid, but a release could not deliver.
    let out = check("[quarantine]\nmode = \"store\"\n");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chaff.toml:2: field `quarantine.mode`") && err.contains("release_relay"),
        "{err}"
    );
    for (text, field) in [
        (
            "[quarantine]\nrelease_relay = \"mx\"\n",
            "chaff.toml:2: field `quarantine.release_relay`",
        ),
        ("[quarantine]\n\nmax_age = \"a while\"\n", "chaff.toml:3"),
        ("[quarantine]\nmode = \"drop\"\n", "chaff.toml:2"),
        (
            "[state]\nhistory = 0\n",
            "chaff.toml:2: field `state.history`",
        ),
        ("[state]\nfile = \"x\"\n", "chaff.toml:2"),
    ] {
        let out = check(text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}: accepted");
        assert!(err.contains(field), "{text}: {err}");
    }
}

#[test]
fn the_policy_table_is_checked() {
    let out = check(
        "[policy]\nsender_mismatch = \"points\"\nmismatch_points = 4.5\n\
         default_domain = \"example.com\"\nmismatch_exempt = [\"lists\"]\nrefresh_ms = 500\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    // On, without a domain for bare logins: valid, with a warning on its line.
    let out = check("[policy]\nsender_mismatch = \"reject\"\n");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chaff.toml:2: field `policy.sender_mismatch`")
            && err.contains("default_domain"),
        "{err}"
    );
    for (text, field) in [
        ("[policy]\nsender_mismatch = \"maybe\"\n", "chaff.toml:2"),
        (
            "[policy]\nrefresh_ms = 5\n",
            "chaff.toml:2: field `policy.refresh_ms`",
        ),
        (
            "[policy]\n\nmismatch_reply = \"250 fine\"\n",
            "chaff.toml:3: field `policy.mismatch_reply`",
        ),
        (
            "[policy]\ndefault_domain = \"a b\"\n",
            "chaff.toml:2: field `policy.default_domain`",
        ),
        ("[policy]\nthreshold = 3\n", "chaff.toml:2"),
    ] {
        let out = check(text);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(err.contains(field), "{text}: {err}");
    }
}
