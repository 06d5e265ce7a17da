//! The admin console (issue 11) in a real headless Chromium, driven through
//! chromedriver (WebDriver, the `fantoccini` crate), with a real Postfix on
//! loopback and the real `chaff milter` behind it:
//!
//! sign in; find the quarantined message (sent by swaks through Postfix and
//! the milter) by its subject; open its preview and see the hit highlighted;
//! release it and see Postfix deliver it; lock an account by hand, see its mail
//! refused, unlock it and see its next message accepted; add an allow entry;
//! try a message; switch the language; look at the pages 375 px wide. Every
//! page is saved as a screenshot under `target/console-screens/`, and the test
//! fails on any message the browser's console logged as an error (a script
//! error, a resource that failed to load, a Content-Security-Policy violation).
//!
//! Needs root and the Debian packages postfix, swaks, sasl2-bin, chromium and
//! chromium-driver; skipped with a message otherwise.

mod console_support;
mod milter_support;

use console_support::{ADMIN_PASSWORD, Service, setup};
use fantoccini::{Client, ClientBuilder, Locator};
use milter_support::{HAM, MEDIUM, free_port, missing_postfix_prerequisite, testenv_script};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Postfix, the milter and chromedriver, stopped however the test ends.
struct Env {
    _root: tempfile::TempDir,
    dir: PathBuf,
    smtp: u16,
    svc: Service,
    /// The service's files (users, stores, release key).
    _fixture: milter_support::Fixture,
    token: String,
    driver: Child,
    driver_port: u16,
    postfix_started: bool,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if self.postfix_started {
            let _ = Command::new(testenv_script())
                .arg("stop")
                .arg(self.dir.join("pf"))
                .status();
        }
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Env {
    fn start(name: &str) -> Option<Env> {
        if let Some(why) = missing_postfix_prerequisite(
            &[
                "postfix",
                "swaks",
                "saslpasswd2",
                "chromium",
                "chromedriver",
            ],
            "postfix swaks sasl2-bin chromium chromium-driver",
        ) {
            eprintln!("SKIPPED {name}: {why}");
            return None;
        }
        let root = tempfile::Builder::new()
            .prefix("chaff-console-")
            .tempdir_in("/tmp")
            .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // Postfix's daemons run as `postfix` and must reach the directory.
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = root.path().to_path_buf();
        let smtp = free_port();
        let milter = free_port();
        let (f, config, token) = setup("", |f| {
            f.config.quarantine.mode = chaff_milter::config::QuarantineMode::Store;
            f.config.quarantine.release_key = Some(f.dir.path().join("release.key"));
            f.config.quarantine.release_relay = Some(format!("127.0.0.1:{smtp}"));
        });
        let svc = Service::start_on(f.dir.path(), &config, milter);
        let driver_port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut env = Env {
            _root: root,
            dir: dir.clone(),
            smtp,
            svc,
            _fixture: f,
            token,
            driver,
            driver_port,
            postfix_started: false,
        };
        let status = Command::new(testenv_script())
            .arg("start")
            .arg(dir.join("pf"))
            .arg(smtp.to_string())
            .arg(format!("inet:127.0.0.1:{milter}"))
            .status()
            .expect("run postfix-testenv.sh");
        env.postfix_started = true;
        assert!(
            status.success(),
            "postfix did not start:\n{}",
            env.maillog()
        );
        let s = Command::new(testenv_script())
            .arg("user")
            .arg(dir.join("pf"))
            .args(["carol", "carol-secret"])
            .status()
            .unwrap();
        assert!(s.success());
        wait_for_port(driver_port, "chromedriver");
        Some(env)
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("pf/log/maillog")).unwrap_or_default()
    }

    /// The delivered messages containing `marker`, waiting up to 20 s for one.
    fn delivered(&self, marker: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found: Vec<String> = std::fs::read_dir(self.dir.join("pf/mail/inbox/new"))
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                        .filter(|t| t.contains(marker))
                        .collect()
                })
                .unwrap_or_default();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `raw` by swaks (as SMTP AUTH user `auth`); exit status and transcript.
    fn swaks(&self, raw: &str, auth: Option<(&str, &str)>) -> (i32, String) {
        let file = self.dir.join(format!("msg-{}.eml", free_port()));
        std::fs::write(&file, raw).unwrap();
        let mut cmd = Command::new("swaks");
        cmd.arg("--server")
            .arg(format!("127.0.0.1:{}", self.smtp))
            .args(["--helo", "client.test", "--to", "inbox@example.org"])
            .args(["--timeout", "60", "--data"])
            .arg(&file);
        match auth {
            Some((user, password)) => {
                cmd.args(["--from", "carol@example.com", "--auth", "PLAIN"])
                    .args(["--auth-user", user, "--auth-password", password]);
            }
            None => {
                cmd.args(["--from", "shop@example.com"]);
            }
        }
        let out = cmd.output().expect("swaks");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn api(&self, path: &str) -> Value {
        let mut a = console_support::Agent::new(self.svc.port);
        let auth = format!("Bearer {}", self.token);
        let r = a.call("GET", path, &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }
}

/// Chromedriver's browser log (`goog:loggingPrefs`), read and emptied.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// The browser's console messages at level SEVERE since the last call.
async fn console_errors(c: &Client) -> Vec<String> {
    let v = c.issue_cmd(BrowserLog).await.expect("browser log");
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn screens() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screens");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Saves the page as `NAME.png` and fails on console errors so far.
async fn snap(c: &Client, name: &str, errors: &mut Vec<String>) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screens().join(format!("{name}.png")), png).unwrap();
    for e in console_errors(c).await {
        errors.push(format!("{name}: {e}"));
    }
}

async fn text_of(c: &Client) -> String {
    c.find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text")
}

async fn browse(env: &Env, marker: &str) {
    let caps: serde_json::Map<String, Value> = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000", "--lang=en-US"],
            "prefs": {"intl.accept_languages": "en-US,en"}
        },
        "goog:loggingPrefs": {"browser": "ALL"}
    })
    .as_object()
    .unwrap()
    .clone();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", env.driver_port))
        .await
        .expect("a chromedriver session");
    let base = env.svc.base();
    let mut errors = Vec::new();

    // Sign in.
    c.goto(&format!("{base}/reports")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/login"));
    snap(&c, "login", &mut errors).await;
    let name = c.find(Locator::Id("name")).await.unwrap();
    name.send_keys("admin").await.unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(ADMIN_PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("form.filters"))
        .await
        .unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/reports");

    // The dashboard.
    c.goto(&format!("{base}/")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("svg.chart"))
        .await
        .unwrap();
    snap(&c, "dashboard", &mut errors).await;

    // Find the message by its subject, with the keyboard.
    c.goto(&format!("{base}/reports")).await.unwrap();
    let subject = c.find(Locator::Id("f-subject")).await.unwrap();
    subject.send_keys(marker).await.unwrap();
    subject.send_keys("\u{E007}").await.unwrap(); // Enter
    let link = c
        .wait()
        .for_element(Locator::XPath(&format!(
            "//td[contains(@class,'subject')]/a[contains(., '{marker}')]"
        )))
        .await
        .unwrap();
    snap(&c, "reports", &mut errors).await;
    link.click().await.unwrap();

    // Its preview: the hit highlighted where it stands.
    let mark = c
        .wait()
        .for_element(Locator::Css("pre.part mark"))
        .await
        .unwrap();
    let hit = mark.text().await.unwrap();
    assert!(!hit.is_empty());
    let body = text_of(&c).await;
    assert!(body.contains(marker), "{body}");
    snap(&c, "preview", &mut errors).await;

    // Release it: Postfix delivers it.
    c.find(Locator::Css("button[name=act][value=release]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    snap(&c, "released", &mut errors).await;
    let got = env.delivered(marker);
    assert_eq!(got.len(), 1, "not delivered once:\n{}", env.maillog());

    // Lock an account by hand; its mail is refused; unlock; accepted.
    let (code, t) = env.swaks(
        &HAM.replace("Subject: ", "Subject: before-lock "),
        Some(("carol", "carol-secret")),
    );
    assert_eq!(code, 0, "{t}");
    // The scan history is written once a second: the name the milter saw.
    let deadline = Instant::now() + Duration::from_secs(10);
    let account = loop {
        let history = env.api("/api/history?limit=50");
        let found = history["records"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|r| r["auth_user"].as_str().map(str::to_string));
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no authenticated message in the history: {history}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    c.goto(&format!("{base}/accounts")).await.unwrap();
    c.find(Locator::Id("lock-user"))
        .await
        .unwrap()
        .send_keys(&account)
        .await
        .unwrap();
    c.find(Locator::Id("lock-reason"))
        .await
        .unwrap()
        .send_keys("browser test")
        .await
        .unwrap();
    c.find(Locator::Css("button[name=act][value=lock]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    snap(&c, "accounts", &mut errors).await;
    let (code, t) = env.swaks(
        &HAM.replace("Subject: ", "Subject: while-locked "),
        Some(("carol", "carol-secret")),
    );
    assert_ne!(code, 0, "a locked account's mail was accepted: {t}");
    c.find(Locator::Css("button[name=act][value=unlock]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    let marker2 = format!("{marker}-after-unlock");
    let (code, t) = env.swaks(
        &HAM.replace("Subject: ", &format!("Subject: {marker2} ")),
        Some(("carol", "carol-secret")),
    );
    assert_eq!(code, 0, "refused after the unlock: {t}");
    assert_eq!(env.delivered(&marker2).len(), 1, "{}", env.maillog());

    // An allow entry, applied at once.
    c.goto(&format!("{base}/senders")).await.unwrap();
    c.find(Locator::Id("s-entry"))
        .await
        .unwrap()
        .send_keys("partner@example.net from 198.51.100.0/24")
        .await
        .unwrap();
    c.find(Locator::Css("button[name=act][value=add]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    assert!(
        text_of(&c)
            .await
            .contains("partner@example.net from 198.51.100.0/24")
    );
    snap(&c, "senders", &mut errors).await;
    let lists = env.api("/api/senders");
    assert!(
        lists["allow"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry"] == "partner@example.net from 198.51.100.0/24"),
        "{lists}"
    );

    // The history, and trying a message.
    c.goto(&format!("{base}/history")).await.unwrap();
    snap(&c, "history", &mut errors).await;
    c.goto(&format!("{base}/try")).await.unwrap();
    c.find(Locator::Id("message"))
        .await
        .unwrap()
        .send_keys(MEDIUM)
        .await
        .unwrap();
    c.find(Locator::Css("main form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("pre mark"))
        .await
        .unwrap();
    snap(&c, "try", &mut errors).await;

    // Switch the language.
    c.goto(&format!("{base}/reports")).await.unwrap();
    c.find(Locator::Css("nav.lang a[hreflang=zh-CN]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("html[lang=zh-CN]"))
        .await
        .unwrap();
    assert!(text_of(&c).await.contains("垃圾邮件报告列表"));
    snap(&c, "reports-zh", &mut errors).await;
    c.goto(&format!("{base}/")).await.unwrap();
    snap(&c, "dashboard-zh", &mut errors).await;

    // A phone's width: nothing wider than the screen but the tables' boxes.
    c.set_window_size(375, 800).await.unwrap();
    for (path, name) in [
        ("/", "dashboard-375"),
        ("/reports", "reports-375"),
        ("/accounts", "accounts-375"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let width = c
            .execute("return document.documentElement.scrollWidth;", vec![])
            .await
            .unwrap();
        let inner = c
            .execute("return window.innerWidth;", vec![])
            .await
            .unwrap();
        assert!(
            width.as_f64().unwrap_or(9999.0) <= inner.as_f64().unwrap_or(0.0),
            "{path} is {width} px wide in a {inner} px window"
        );
        snap(&c, name, &mut errors).await;
    }
    let _ = c.close().await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

#[test]
fn the_console_in_a_real_browser() {
    let Some(env) = Env::start("the_console_in_a_real_browser") else {
        return;
    };
    let marker = format!("console-{}", std::process::id());
    let raw = MEDIUM.replacen(
        "Subject: =?utf-8?B?5LyY5oOg5rS75Yqo?=",
        &format!("Subject: =?utf-8?B?5LyY5oOg5rS75Yqo?= {marker}"),
        1,
    );
    assert_ne!(raw, MEDIUM);
    let (code, t) = env.swaks(&raw, None);
    assert_eq!(code, 0, "{t}");
    // Discarded, kept in the quarantine, not delivered.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = env.api(&format!("/api/quarantine?subject={marker}"));
        if v["entries"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not kept: {v}\n{}",
            env.svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(browse(&env, &marker));
}
