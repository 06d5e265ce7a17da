//! Shared fixtures for the milter tests: three messages whose scores the engine
//! orders ham < medium < spam, thresholds set between them (so the tests follow the
//! engine's weights rather than hard-coding them), and a service on a free port.
#![allow(dead_code)]

use chaff::{Config, Engine, Envelope};
use chaff_milter::ServiceConfig;
use chaff_milter::server::{self, ListenAddr, ServeOptions, ServerHandle};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Plain business mail.
pub const HAM: &str = "From: li.wei@example.com\r\nTo: team@example.org\r\n\
Subject: Meeting moved to Thursday\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n\
Hi all,\r\n\r\nThe project review is moved to Thursday at 3pm in room 204.\r\n\
Please bring the quarterly figures.\r\n\r\nRegards,\r\nLi Wei\r\n";

/// A few spam words.
pub const MEDIUM: &str = "From: shop@example.com\r\nTo: you@example.org\r\n\
Subject: =?utf-8?B?5LyY5oOg5rS75Yqo?=\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n\
本周优惠活动，免费送货，特价商品欢迎选购。\r\n";

/// Many strong spam words.
pub const SPAM: &str = "From: boss@example.com\r\nTo: you@example.org\r\n\
Subject: =?utf-8?B?5Luj5byA5Y+R56Wo77yM5LyY5oOg54m55Lu377yM5YWN6LS5?=\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n\
代开发票！代开各类发票，优惠特价，免费咨询，赚钱发财致富，股票基金，创业代理热销，\
成功法宝宝典，直投做主。代开发票优惠，特惠便宜廉价，免费！viagra free sex movie\r\n\
代开发票 代开 代开 优惠 优惠 特价 特惠 免费 免费 赚钱 发财 致富\r\n";

/// A temporary directory, a configuration with thresholds between the three
/// messages' scores, and the scores.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: ServiceConfig,
    pub scores: [f64; 3],
}

pub fn score(config: &Config, raw: &str) -> f64 {
    let engine = Engine::new(config).expect("engine");
    engine.scan(raw.as_bytes(), &Envelope::default()).score
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServiceConfig::default();
    let engine = Engine::new(&config.engine).expect("engine");
    let scores = [HAM, MEDIUM, SPAM].map(|m| engine.scan(m.as_bytes(), &Envelope::default()).score);
    assert!(
        scores[0] < scores[1] && scores[1] < scores[2],
        "the engine should order ham < medium < spam: {scores:?}"
    );
    config.engine.thresholds.quarantine = (scores[0] + scores[1]) / 2.0;
    config.engine.thresholds.reject = (scores[1] + scores[2]) / 2.0;
    config.engine.outbound = None;
    config.accounts.db = dir.path().join("accounts.redb");
    config.state.path = dir.path().join("state.redb");
    config.accounts.lock_after = 3;
    config.accounts.window_secs = 3600;
    Fixture {
        dir,
        config,
        scores,
    }
}

/// Writes `config`'s thresholds, milter, accounts, state and quarantine settings
/// as a chaff.toml.
pub fn write_toml(path: &Path, config: &ServiceConfig, extra_milter: &str) {
    let t = &config.engine.thresholds;
    let a = &config.accounts;
    let q = &config.quarantine;
    // `[accounts]` stays the file's last table: tests append to it.
    let text = format!(
        "[thresholds]\nquarantine = {:?}\nreject = {:?}\n\n[milter]\n{extra_milter}\n\n\
         [state]\npath = {:?}\nhistory = {}\n\n\
         [quarantine]\nmode = {:?}\nkeep_rejected = {}\nmax_age = \"{}\"\nmax_bytes = {}\n{}{}\n\
         [accounts]\nlock_after = {}\nwindow_secs = {}\ndb = {:?}\n",
        t.quarantine,
        t.reject,
        config.state.path.display().to_string(),
        config.state.history,
        q.mode.as_str(),
        q.keep_rejected,
        q.max_age.as_secs(),
        q.max_bytes,
        q.release_key
            .as_ref()
            .map(|k| format!("release_key = {:?}\n", k.display().to_string()))
            .unwrap_or_default(),
        q.release_relay
            .as_ref()
            .map(|r| format!("release_relay = {r:?}\n"))
            .unwrap_or_default(),
        a.lock_after,
        a.window_secs,
        a.db.display().to_string(),
    );
    std::fs::write(path, text).expect("write config");
}

pub fn start(config: &ServiceConfig) -> ServerHandle {
    start_with(config, None, true)
}

pub fn start_with(
    config: &ServiceConfig,
    config_path: Option<&Path>,
    metrics: bool,
) -> ServerHandle {
    server::spawn(
        config,
        ServeOptions {
            listen: ListenAddr::Inet("127.0.0.1:0".into()),
            metrics: metrics.then(|| "127.0.0.1:0".to_string()),
            config_path: config_path.map(Path::to_path_buf),
            http: None,
        },
    )
    .expect("milter starts")
}

/// GETs the metrics page.
pub fn scrape(handle: &ServerHandle) -> String {
    use std::io::{Read, Write};
    let addr = handle.metrics_addr().expect("metrics listener");
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read metrics");
    out
}

/// The value of one metric line, e.g. `chaff_milter_messages_total{action="reject"}`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `name` reads `want` (connections close asynchronously), for up to
/// five seconds; returns the last page.
pub fn wait_metric(handle: &ServerHandle, name: &str, want: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page = scrape(handle);
        if metric(&page, name) == Some(want) || std::time::Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Why the real-Postfix tests cannot run here (not root, or one of `tools`
/// missing; `packages` is what to install), or `None` when they can.
pub fn missing_postfix_prerequisite(tools: &[&str], packages: &str) -> Option<String> {
    // `id -u` tells the effective user without a libc dependency.
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root (Postfix needs it)".into());
    }
    for tool in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "`{tool}` is not installed (apt-get install {packages})"
            ));
        }
    }
    None
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `scripts/postfix-testenv.sh`, which runs throwaway Postfix instances.
pub fn testenv_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postfix-testenv.sh")
}
