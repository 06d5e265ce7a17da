//! chaff's milter against a milter client it did not write: Debian's `miltertest`
//! (OpenDKIM's MTA simulator, built on libmilter's protocol definitions). The test
//! writes a Lua script that negotiates, sends macros, envelopes, headers and bodies,
//! and checks the end-of-message actions: added headers, QUARANTINE, and the exact
//! `557 5.7.1 forbid to send spam mail` reply. Skipped (with a message) when
//! `miltertest` is not installed (`apt-get install miltertest`).

mod milter_support;

use chaff_milter::client::split_message;
use milter_support::*;
use std::fmt::Write as _;
use std::process::Command;

/// A Lua string literal for arbitrary bytes.
fn lua(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:03}");
            }
        }
    }
    s.push('"');
    s
}

/// Lua that sends one message (after `mt.macro` for MAIL) and ends it.
fn message(raw: &str, qid: &str, auth: &str) -> String {
    let (headers, body) = split_message(raw.as_bytes());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "check(mt.macro(conn, SMFIC_MAIL, \"i\", {}, \"{{auth_authen}}\", {}), \"macro\")",
        lua(qid.as_bytes()),
        lua(auth.as_bytes())
    );
    s.push_str("check(mt.mailfrom(conn, \"<sender@example.com>\"), \"mailfrom\")\n");
    s.push_str("check(mt.rcptto(conn, \"<rcpt@example.org>\"), \"rcptto\")\n");
    s.push_str("check(mt.data(conn), \"data\")\n");
    for (name, value) in &headers {
        let v = value.strip_prefix(b" ").unwrap_or(value);
        let _ = writeln!(
            s,
            "check(mt.header(conn, {}, {}), \"header\")",
            lua(name),
            lua(v)
        );
    }
    s.push_str("check(mt.eoh(conn), \"eoh\")\n");
    let _ = writeln!(s, "check(mt.bodystring(conn, {}), \"body\")", lua(&body));
    s.push_str("check(mt.eom(conn), \"eom\")\n");
    s
}

#[test]
fn miltertest_sees_headers_quarantine_and_the_557_reply() {
    if Command::new("miltertest").arg("-V").output().is_err() {
        eprintln!("SKIPPED: miltertest is not installed (apt-get install miltertest)");
        return;
    }
    let f = fixture();
    let h = start(&f.config);
    let port = h.addr().rsplit(':').next().unwrap().to_string();
    // miltertest exits silently on a Lua error: run everything under pcall and
    // print the error.
    let mut script = format!(
        r#"
function check(r, what)
  if r ~= nil then error(what .. ": " .. r) end
end
function trim(s)
  return (string.gsub(s or "", "^%s+", ""))
end
function main()
conn = mt.connect("inet:{port}@127.0.0.1", 5, 0.2)
if conn == nil then error("cannot connect") end
check(mt.negotiate(conn, nil, nil, nil), "negotiate")
if not mt.test_action(conn, SMFIF_ADDHDRS) then error("ADDHDRS not requested") end
if not mt.test_action(conn, SMFIF_QUARANTINE) then error("QUARANTINE not requested") end
check(mt.conninfo(conn, "client.test", "192.0.2.9"), "conninfo")
check(mt.helo(conn, "client.test"), "helo")
"#
    );
    // 1. Clean mail: CONTINUE with the two headers.
    script.push_str(&message(HAM, "QHAM1", ""));
    script.push_str(
        r#"
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("ham: not CONTINUE") end
if not mt.eom_check(conn, MT_HDRADD, "X-Spam-Score") then error("ham: no X-Spam-Score") end
if not mt.eom_check(conn, MT_HDRADD, "X-Spam-Status") then error("ham: no X-Spam-Status") end
if string.sub(trim(mt.getheader(conn, "X-Spam-Status", 0)), 1, 3) ~= "No," then
  error("ham: status " .. trim(mt.getheader(conn, "X-Spam-Status", 0)))
end
if mt.eom_check(conn, MT_QUARANTINE) then error("ham quarantined") end
mt.echo("ham: " .. trim(mt.getheader(conn, "X-Spam-Status", 0)))
check(mt.abort(conn), "abort")
"#,
    );
    // 2. Some spam words: QUARANTINE.
    script.push_str(&message(MEDIUM, "QMED1", ""));
    script.push_str(
        r#"
if not mt.eom_check(conn, MT_QUARANTINE) then error("medium: not quarantined") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("medium: not CONTINUE") end
mt.echo("medium: quarantined")
check(mt.abort(conn), "abort")
"#,
    );
    // 3. Spam from an authenticated account: the exact 557 reply.
    script.push_str(&message(SPAM, "QSPAM1", "mallory"));
    script.push_str(
        r#"
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("spam: not REPLYCODE") end
if not mt.eom_check(conn, MT_SMTPREPLY, "557", "5.7.1", "forbid to send spam mail") then
  error("spam: not the 557 5.7.1 reply")
end
mt.echo("spam: 557 5.7.1 forbid to send spam mail")
check(mt.abort(conn), "abort")
mt.disconnect(conn)
end
local ok, err = pcall(main)
if not ok then
  print("FAILED: " .. tostring(err))
  os.exit(1)
end
"#,
    );
    let path = f.dir.path().join("chaff.lua");
    std::fs::write(&path, &script).unwrap();
    let out = Command::new("miltertest")
        .arg("-s")
        .arg(&path)
        .output()
        .expect("run miltertest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "miltertest failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("spam: 557 5.7.1 forbid to send spam mail"),
        "{stdout}"
    );
    // The reject was counted against the authenticated account.
    let store = h.service().store().unwrap();
    assert_eq!(
        store
            .recent_rejects(u64::MAX / 2, u64::MAX / 2)
            .unwrap()
            .len(),
        1
    );
    h.shutdown();
}
