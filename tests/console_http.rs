//! The admin console (issue 11) on the real `chaff milter` binary, over plain
//! HTTP: signing in (a wrong password fails, the login form needs its token),
//! the session cookie's attributes, the security headers, CSRF tokens on every
//! state-changing request, the `read` role (no action buttons, its actions
//! refused), a console cookie that the JSON API ignores, the pages in both
//! languages, escaping of what an attacker wrote, and actions that reach the
//! state store as the API's do (with the user's name in the action log).

mod console_support;
mod milter_support;

use console_support::{ADMIN_PASSWORD, Agent, Service, VIEWER_PASSWORD, hidden, setup};
use milter_support::{MEDIUM, SPAM};
use serde_json::Value;

fn api(svc: &Service, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut a = Agent::new(svc.port);
    let auth = format!("Bearer {token}");
    let r = a.call(
        method,
        path,
        &[("Authorization", &auth)],
        body.map(|b| ("application/json", b)),
    );
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn entry_state(svc: &Service, token: &str, id: &str) -> String {
    let (s, v) = api(svc, token, "GET", &format!("/api/quarantine/{id}"), None);
    assert_eq!(s, 200, "{v}");
    v["state"]["state"].as_str().unwrap().to_string()
}

#[test]
fn sign_in_sessions_csrf_roles_and_pages() {
    // A scan history of one record: the messages behind a lock must come from
    // the lock record, not from the history (which has dropped them).
    let (f, config, token) = setup("", |f| f.config.state.history = 1);
    let svc = Service::start(f.dir.path(), &config);
    let a = svc.send("shop@example.com", &["you@example.org"], "QC1", MEDIUM);
    assert_eq!(
        a.action(),
        "quarantine",
        "held by the MTA (hold mode): {a:?}"
    );
    let evil = "From: x@example.com\r\nTo: you@example.org\r\nSubject: <script>alert(1)</script>\r\n\
                Content-Type: text/html\r\n\r\n<img src=x onerror=alert(2)>代开发票 优惠 免费 赚钱 发财 代开 特价\r\n";
    svc.send("x@example.com", &["you@example.org"], "QC2", evil);
    let (_, list) = api(&svc, &token, "GET", "/api/quarantine", None);
    let entries = list["entries"].as_array().unwrap();
    let id_of = |qid: &str| {
        entries
            .iter()
            .find(|e| e["queue_id"] == qid)
            .unwrap_or_else(|| panic!("{qid} not kept: {list}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let id1 = id_of("QC1");
    let id2 = id_of("QC2");

    // Without a session: to the login page, with the way back.
    let mut anon = Agent::new(svc.port);
    let r = anon.get("/reports");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), vec!["/login?next=%2Freports"]);
    let r = anon.get("/login");
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").join("");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(r.header("x-frame-options"), vec!["DENY"]);
    assert!(!r.text().contains("<script>") && !r.text().contains(" style="));

    // A wrong password fails; a login without the form's token is refused.
    let mut eve = Agent::new(svc.port);
    let r = eve.login("admin", "wrong password");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(eve.cookie("chaff_session").is_none());
    assert!(r.text().contains("Wrong user name or password"));
    let r = eve.post_form("/login", &[("name", "admin"), ("password", ADMIN_PASSWORD)]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(eve.cookie("chaff_session").is_none());

    // The admin signs in: a session cookie, HttpOnly and SameSite=Strict.
    let mut admin = Agent::new(svc.port);
    let r = admin.login("admin", ADMIN_PASSWORD);
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").join("\n");
    assert!(
        set.contains("chaff_session=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    for path in [
        "/",
        "/reports",
        "/accounts",
        "/senders",
        "/history",
        "/try",
        &format!("/reports/{id1}"),
    ] {
        let r = admin.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            r.header("content-security-policy")
                .join("")
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(r.header("cache-control"), vec!["no-store"], "{path}");
    }
    let list = admin.get("/reports").text();
    assert!(list.contains(&format!("/reports/{id1}")), "{list}");
    assert!(list.contains("优惠活动"), "the decoded subject: {list}");
    // What the attacker wrote is escaped, in the list and in the preview.
    assert!(
        list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{list}"
    );
    assert!(!list.contains("<script>alert"));
    let preview = admin.get(&format!("/reports/{id2}")).text();
    assert!(
        !preview.contains("<script>alert") && !preview.contains("<img src=x"),
        "{preview}"
    );
    assert!(preview.contains("<mark"), "hits highlighted: {preview}");
    let csrf = hidden(&list, "csrf").expect("the session's token");

    // A state-changing request without the token, or with a wrong one: 403,
    // nothing done.
    let r = admin.post_form("/reports/act", &[("act", "delete"), ("id", &id1)]);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = admin.post_form(
        "/reports/act",
        &[("csrf", "forged"), ("act", "delete"), ("id", &id1)],
    );
    assert_eq!(r.status, 403);
    let r = admin.post_form(
        "/senders",
        &[
            ("act", "add"),
            ("list", "block"),
            ("entry", "@spam.example"),
        ],
    );
    assert_eq!(r.status, 403);
    let r = admin.post_form("/logout", &[]);
    assert_eq!(r.status, 403);
    assert_eq!(entry_state(&svc, &token, &id1), "held");

    // The console's cookie does not authenticate the JSON API: its
    // state-changing routes need the API's own credentials.
    let r = admin.call(
        "POST",
        &format!("/api/quarantine/{id1}/delete"),
        &[],
        Some(("application/json", "{}")),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    // And the API's header credentials are unaffected by the console.
    let (s, _) = api(&svc, &token, "GET", "/api/whoami", None);
    assert_eq!(s, 200);

    // The read role: no action buttons, and its actions are refused.
    let mut viewer = Agent::new(svc.port);
    assert_eq!(viewer.login("viewer", VIEWER_PASSWORD).status, 303);
    let page = viewer.get(&format!("/reports/{id1}")).text();
    assert!(!page.contains("name=\"act\""), "{page}");
    let vlist = viewer.get("/reports").text();
    assert!(!vlist.contains("name=\"act\"") && !vlist.contains("name=\"id\""));
    let vcsrf = hidden(&vlist, "csrf").unwrap();
    let r = viewer.post_form(
        "/reports/act",
        &[("csrf", &vcsrf), ("act", "release"), ("id", &id1)],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = viewer.post_form(
        "/accounts",
        &[("csrf", &vcsrf), ("act", "lock"), ("user", "x@example.org")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(entry_state(&svc, &token, &id1), "held");

    // With the token, the admin acts: the API sees it, by `http:admin`.
    let r = admin.post_form(
        "/reports/act",
        &[
            ("csrf", &csrf),
            ("act", "delete"),
            ("id", &id1),
            ("back", "/reports"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), vec!["/reports?ok=ok.delete"]);
    let (_, v) = api(&svc, &token, "GET", &format!("/api/quarantine/{id1}"), None);
    assert_eq!(v["state"]["state"], "deleted");
    assert_eq!(v["state"]["by"], "http:admin");
    assert!(
        admin
            .get("/reports?ok=ok.delete")
            .text()
            .contains("Deleted.")
    );

    // Allow and block lists, applied at once.
    let r = admin.post_form(
        "/senders",
        &[
            ("csrf", &csrf),
            ("act", "add"),
            ("list", "allow"),
            ("entry", "boss@example.com from 192.0.2.0/24"),
            ("comment", "the boss"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let r = admin.post_form(
        "/senders",
        &[
            ("csrf", &csrf),
            ("act", "add"),
            ("list", "block"),
            ("entry", "not an address at all"),
        ],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let (_, v) = api(&svc, &token, "GET", "/api/senders", None);
    assert!(
        v["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry"] == "boss@example.com from 192.0.2.0/24" && e["by"] == "http:admin"),
        "{v}"
    );
    assert!(
        admin
            .get("/senders")
            .text()
            .contains("boss@example.com from 192.0.2.0/24")
    );

    // Locking by hand and unlocking.
    let r = admin.post_form(
        "/accounts",
        &[
            ("csrf", &csrf),
            ("act", "lock"),
            ("user", "mallory@example.org"),
            ("reason", "test lock"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let (_, v) = api(&svc, &token, "GET", "/api/accounts", None);
    assert_eq!(v["locked"][0]["user"], "mallory@example.org", "{v}");
    assert!(
        admin
            .get("/accounts")
            .text()
            .contains("mallory@example.org")
    );
    let r = admin.post_form(
        "/accounts",
        &[
            ("csrf", &csrf),
            ("act", "unlock"),
            ("user", "mallory@example.org"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let (_, v) = api(&svc, &token, "GET", "/api/accounts", None);
    assert_eq!(v["locked"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = api(&svc, &token, "GET", "/api/actions", None);
    let whats: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["by"] == "http:admin")
        .map(|a| a["what"].as_str().unwrap())
        .collect();
    for w in ["delete", "account-lock", "account-unlock"] {
        assert!(whats.contains(&w), "{w}: {v}");
    }

    // An account locked for sending spam: the rejected messages behind the
    // lock, each with its queue id and a link to its kept entry, kept in the
    // lock record (the one-record history cannot hold all three).
    for q in ["QL1", "QL2", "QL3"] {
        let a = svc.send_as(
            "dave@example.org",
            &["x@example.net"],
            q,
            Some("dave"),
            SPAM,
        );
        assert_eq!(a.action(), "reject", "{a:?}");
    }
    let (_, v) = api(&svc, &token, "GET", "/api/accounts", None);
    assert_eq!(v["locked"][0]["user"], "dave", "{v}");
    let msgs = v["locked"][0]["messages"].as_array().expect("messages");
    let qids: Vec<&str> = msgs
        .iter()
        .map(|m| m["queue_id"].as_str().unwrap())
        .collect();
    assert_eq!(qids, ["QL1", "QL2", "QL3"], "{v}");
    assert!(msgs.iter().all(|m| m["entry"].is_string()), "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let page = loop {
        let page = admin.get("/accounts").text();
        if ["QL1", "QL2", "QL3"].iter().all(|q| page.contains(q)) {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rejected messages are not listed: {page}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let (_, kept) = api(&svc, &token, "GET", "/api/quarantine?limit=200", None);
    let ql1 = kept["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["queue_id"] == "QL1")
        .expect("QL1 kept")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(page.contains(&format!("/reports/{ql1}")), "{page}");
    assert_eq!(msgs[0]["entry"], ql1.as_str(), "{v}");

    // Try a message: the verdict explained, hits marked, nothing kept.
    let r = admin.post_form("/try", &[("csrf", &csrf), ("message", SPAM)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    assert!(t.contains("<mark") && t.contains("rejected"), "{t}");
    let (_, after) = api(&svc, &token, "GET", "/api/quarantine", None);
    assert_eq!(after["entries"].as_array().unwrap().len(), 5);
    let r = admin.post_form("/try", &[("message", SPAM)]);
    assert_eq!(r.status, 403);

    // Languages: Accept-Language, then the switch's cookie.
    let mut zh = Agent::new(svc.port);
    zh.accept_language = Some("zh-CN,zh;q=0.9,en;q=0.5".into());
    assert_eq!(zh.login("admin", ADMIN_PASSWORD).status, 303);
    let page = zh.get("/reports").text();
    assert!(
        page.contains("lang=\"zh-CN\"") && page.contains("垃圾邮件报告列表"),
        "{page}"
    );
    let r = zh.get("/lang?to=en&back=%2Freports");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), vec!["/reports"]);
    let page = zh.get("/reports").text();
    assert!(page.contains("lang=\"en\"") && page.contains("Spam report list"));
    // The switch never sends anyone elsewhere.
    let r = zh.get("/lang?to=en&back=%2F%2Fevil.example%2F");
    assert_eq!(r.header("location"), vec!["/"]);

    // Logout ends the session (the old cookie is no longer accepted).
    let old = admin.cookie("chaff_session").unwrap().to_string();
    let r = admin.post_form("/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let mut replay = Agent::new(svc.port);
    replay.cookies.push(("chaff_session".into(), old));
    assert_eq!(replay.get("/").status, 303);
}
