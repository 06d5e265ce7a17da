//! `chaff explain-bounce` and the `[bounce]` table end to end, on the engine's
//! hand-written bounce samples (crates/engine/tests/bounces/).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chaff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaff"))
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/engine/tests/bounces")
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

fn cause_of<'a>(lines: &'a [serde_json::Value], file: &str) -> &'a serde_json::Value {
    let line = lines
        .iter()
        .find(|l| l["path"].as_str().is_some_and(|p| p.ends_with(file)))
        .unwrap_or_else(|| panic!("no line for {file}"));
    &line["recipients"][0]
}

#[test]
fn explains_every_sample_as_json() {
    let out = chaff()
        .args(["explain-bounce", "--lang", "en", "--format", "json"])
        .arg(samples())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 19);
    for l in &lines {
        let not = l["path"].as_str().unwrap().ends_with("not-a-bounce.eml");
        assert_eq!(l["bounce"], !not, "{l}");
    }
    for (file, id, status) in [
        ("postfix-dsn-unknown-user.eml", "unknown-user", "5.1.1"),
        ("chaff-557-dsn.eml", "spam-account-locked", "5.7.1"),
        ("chaff-552-dsn.eml", "message-too-large", "5.3.4"),
        ("exim-mailbox-full.eml", "mailbox-full", "5.2.2"),
    ] {
        let r = cause_of(&lines, file);
        assert_eq!(r["cause_id"], id, "{file}: {r}");
        assert_eq!(r["status"], status, "{file}: {r}");
        assert_eq!(r["known"], true);
    }
    let r = cause_of(&lines, "control-chars.eml");
    let d = r["diagnostic"].as_str().unwrap();
    assert!(d.contains("\\u{1b}") && !d.contains('\u{1b}'), "{d}");
}

#[test]
fn text_in_chinese_and_errors_go_on() {
    let out = chaff()
        .args(["explain-bounce", "--lang", "zh"])
        .arg(samples().join("chinese-html.eml"))
        .arg("/nonexistent/bounce.eml")
        .arg(samples().join("not-a-bounce.eml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("退信 (chinese-html)\t原邮件主题：合同草稿"),
        "{text}"
    );
    assert!(
        text.contains("victor@example.org\t550\t服务器：mx.example.org"),
        "{text}"
    );
    assert!(text.contains("原因: 收件人地址不存在"), "{text}");
    assert!(text.contains("/nonexistent/bounce.eml\terror\t"), "{text}");
    assert!(text.contains("not-a-bounce.eml\t不是退信"), "{text}");
    // Standard input too.
    let mut child = chaff()
        .args(["explain-bounce", "--lang", "en", "--format", "json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(samples().join("qmail-too-big.eml")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        json_lines(&out)[0]["recipients"][0]["cause_id"],
        "message-too-large"
    );
}

#[test]
fn an_admins_knowledge_file_goes_first_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.toml"),
        "[[cause]]\nid = \"our-gateway\"\npatterns = [\"user unknown in virtual mailbox table\"]\n\
         who = \"recipient-admin\"\nzh.cause = \"网关配置\"\nzh.fix = \"找网管\"\n\
         en.cause = \"Our gateway's table is out of date.\"\nen.fix = \"Call the help desk.\"\n",
    )
    .unwrap();
    let config = dir.path().join("chaff.toml");
    std::fs::write(&config, "[bounce]\nknowledge = [\"site.toml\"]\n").unwrap();
    let out = chaff()
        .args([
            "explain-bounce",
            "--lang",
            "en",
            "--format",
            "json",
            "--config",
        ])
        .arg(&config)
        .arg(samples().join("postfix-dsn-unknown-user.eml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = &json_lines(&out)[0]["recipients"][0];
    assert_eq!(r["cause_id"], "our-gateway", "{r}");
    assert_eq!(r["who"], "recipient-admin");
    let out = chaff().arg("check-config").arg(&config).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bounce causes"));

    std::fs::write(
        dir.path().join("site.toml"),
        "[[cause]]\nid = \"x\"\npatterns = [\"a\"]\nwho = \"boss\"\nzh.cause = \"c\"\nzh.fix = \"f\"\n\
         en.cause = \"c\"\nen.fix = \"f\"\n",
    )
    .unwrap();
    for args in [vec!["check-config"], vec!["explain-bounce", "--config"]] {
        let mut cmd = chaff();
        cmd.args(&args).arg(&config);
        if args.len() > 1 {
            cmd.arg(samples().join("qmail-too-big.eml"));
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("site.toml:4: field `cause.who`"), "{err}");
    }
}
