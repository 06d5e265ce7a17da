//! Shared by the console's tests: a `chaff milter` with its HTTP listener and
//! users with passwords, a small HTTP client that keeps the console's cookies,
//! and signing in.
#![allow(dead_code)]

use crate::milter_support::{Fixture, fixture, free_port, write_toml};
use chaff_milter::client::{Answer, Client, Submission};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHAFF: &str = env!("CARGO_BIN_EXE_chaff");
pub const ADMIN_PASSWORD: &str = "correct horse battery";
pub const VIEWER_PASSWORD: &str = "viewer password 123";

/// A `chaff milter` with its HTTP listener; killed when dropped.
pub struct Service {
    pub child: Child,
    pub milter: String,
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds a user with a password (and a token, printed) to `users`; the token.
pub fn add_user(users: &Path, name: &str, role: &str, password: &str) -> String {
    let mut child = Command::new(CHAFF)
        .arg("users")
        .arg("--file")
        .arg(users)
        .args(["add", name, "--role", role, "--token", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The fixture with users `admin` and `viewer` (read), keeping rejected mail,
/// `extra` appended to chaff.toml; the config file and the admin's token.
pub fn setup(extra: &str, edit: impl FnOnce(&mut Fixture)) -> (Fixture, PathBuf, String) {
    let mut f = fixture();
    f.config.quarantine.keep_rejected = true;
    edit(&mut f);
    let dir = f.dir.path();
    let users = dir.join("users.toml");
    let token = add_user(&users, "admin", "admin", ADMIN_PASSWORD);
    add_user(&users, "viewer", "read", VIEWER_PASSWORD);
    let config = dir.join("chaff.toml");
    write_toml(&config, &f.config, "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[users]\nfile = {:?}\n{extra}",
        users.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();
    (f, config, token)
}

impl Service {
    pub fn start(dir: &Path, config: &Path) -> Service {
        Service::start_on(dir, config, free_port())
    }

    pub fn start_on(dir: &Path, config: &Path, milter: u16) -> Service {
        let port = free_port();
        let log = dir.join(format!("milter-{port}.log"));
        let child = Command::new(CHAFF)
            .arg("milter")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{milter}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Service {
            child,
            milter: format!("inet:127.0.0.1:{milter}"),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || TcpStream::connect(("127.0.0.1", milter)).is_err()
        {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("chaff milter exited ({status}):\n{}", s.log_text());
            }
            assert!(Instant::now() < deadline, "chaff milter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends `raw` through the milter as the MTA would.
    pub fn send(&self, sender: &str, rcpts: &[&str], qid: &str, raw: &str) -> Answer {
        self.send_as(sender, rcpts, qid, None, raw)
    }

    /// Sends `raw` as SMTP AUTH user `auth`.
    pub fn send_as(
        &self,
        sender: &str,
        rcpts: &[&str],
        qid: &str,
        auth: Option<&str>,
        raw: &str,
    ) -> Answer {
        let mut c = Client::connect(&self.milter).expect("connect");
        c.smtp_connect("client.test", "192.0.2.10")
            .expect("connect info");
        let env = Submission {
            sender,
            recipients: rcpts.to_vec(),
            auth_user: auth,
            queue_id: Some(qid),
        };
        let a = c.message(&env, raw.as_bytes()).expect("message");
        let _ = c.quit();
        a
    }
}

/// An HTTP answer: status, head (lowercased), body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lowercased.
    pub head: String,
    /// As sent.
    pub raw_head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Vec<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.raw_head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
            .collect()
    }
}

/// A browser without a browser: cookies kept by name.
#[derive(Debug, Default, Clone)]
pub struct Agent {
    pub port: u16,
    pub cookies: Vec<(String, String)>,
    pub accept_language: Option<String>,
}

impl Agent {
    pub fn new(port: u16) -> Agent {
        Agent {
            port,
            ..Agent::default()
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Reply {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        if let Some(l) = &self.accept_language {
            req.push_str(&format!("Accept-Language: {l}\r\n"));
        }
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        match body {
            Some((kind, b)) => req.push_str(&format!(
                "Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => req.push_str("\r\n"),
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer to {method} {path}"));
        let raw_head = String::from_utf8_lossy(&out[..split]).into_owned();
        let head = raw_head.to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        // Cookies keep their case.
        for line in raw_head.lines() {
            if let Some(v) = line
                .strip_prefix("set-cookie:")
                .or_else(|| line.strip_prefix("Set-Cookie:"))
            {
                let first = v.trim().split(';').next().unwrap_or("");
                if let Some((k, val)) = first.split_once('=') {
                    self.cookies.retain(|(n, _)| n != k);
                    let expired = v.to_ascii_lowercase().contains("max-age=0");
                    if !expired {
                        self.cookies.push((k.to_string(), val.to_string()));
                    }
                }
            }
        }
        let mut body = out[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        Reply {
            status,
            head,
            raw_head,
            body,
        }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.call("GET", path, &[], None)
    }

    /// POSTs a form of `pairs`.
    pub fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        let body = s.finish();
        self.call(
            "POST",
            path,
            &[],
            Some(("application/x-www-form-urlencoded", &body)),
        )
    }

    /// Signs in as `name`; the login's answer.
    pub fn login(&mut self, name: &str, password: &str) -> Reply {
        let page = self.get("/login");
        assert_eq!(page.status, 200, "{}", page.text());
        let token = hidden(&page.text(), "csrf").expect("login form's token");
        self.post_form(
            "/login",
            &[
                ("csrf", &token),
                ("name", name),
                ("password", password),
                ("next", "/"),
            ],
        )
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}

/// The value of the first hidden field `name` in `html`.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let at = html.find(&needle)? + needle.len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_string())
}
