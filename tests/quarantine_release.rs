//! `chaff quarantine release` and `resolve` (the real binary) with a real
//! Postfix on loopback and two real `chaff milter` services behind it (issue
//! 10, "Resend (release)"):
//!
//! - **store mode** (one milter, `[quarantine] mode = "store"`): spam sent by
//!   swaks is discarded (not in the mailbox) and kept; `release` delivers it
//!   once per original recipient with the original Return-Path, unscanned (the
//!   milter logs "released", no second entry is kept); a second `release` exits
//!   non-zero saying who released it and when; two `release` processes started
//!   at once deliver once; `--learn-ham` lowers the message's score in the
//!   model; `--allow-sender` adds `SENDER from ADDR`, shown by `chaff senders
//!   list`;
//! - **failures**: with the relay down (a wrong `release_relay` port) the
//!   entry stays held, the reason logged, exit status non-zero; a relay that
//!   drops the connection after the end of the message leaves the entry in
//!   doubt, refused without `--force`, settled by `resolve`;
//! - **hold mode** (the other milter, on a second SMTP port of the same
//!   Postfix): spam waits in Postfix's hold queue (`postqueue -j`) and is kept;
//!   `release` as root frees it (`postsuper -H`) and it is delivered once.
//!
//! One Postfix for the file (`scripts/postfix-testenv.sh`; its instance is named
//! to the commands by `MAIL_CONFIG`, as for Postfix's own), each milter with its
//! own `[state] path` and release key in the test's temporary directory. Needs
//! root and the Debian packages postfix and swaks; skipped with a message
//! otherwise.

mod milter_support;

use chaff_milter::config::QuarantineMode;
use chaff_milter::quarantine::{EntryState, Filter, StateStore, Summary, Told};
use milter_support::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One `chaff milter`, killed when dropped.
struct Milter {
    child: Child,
    log: PathBuf,
    /// Its configuration file.
    config: PathBuf,
    /// Its state store.
    state: PathBuf,
}

impl Drop for Milter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Milter {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn store(&self) -> StateStore {
        StateStore::open_existing(&self.state).expect("the service's store")
    }
}

/// Postfix and the two milters, stopped however the test ends (the milters
/// are dropped after Postfix is stopped: fields drop in order, `Drop` first).
struct Env {
    _root: tempfile::TempDir,
    dir: PathBuf,
    /// The store-mode milter's SMTP port (and the release relay).
    smtp_store: u16,
    /// The hold-mode milter's SMTP port.
    smtp_hold: u16,
    store: Milter,
    hold: Milter,
    postfix_started: bool,
    /// The fixture's configuration (thresholds between HAM, MEDIUM and SPAM).
    base: chaff_milter::ServiceConfig,
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.postfix_started {
            let _ = Command::new(testenv_script())
                .arg("stop")
                .arg(self.dir.join("pf"))
                .status();
        }
    }
}

fn wait_for_port(port: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start: {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `chaff milter` in `mode` with its files under `dir/NAME/`.
fn start_milter(
    dir: &Path,
    name: &str,
    base: &chaff_milter::ServiceConfig,
    mode: QuarantineMode,
    relay_port: u16,
) -> Milter {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let mut config = base.clone();
    config.accounts.db = home.join("accounts.redb");
    config.state.path = home.join("state.redb");
    config.quarantine.release_key = Some(home.join("release.key"));
    config.quarantine.mode = mode;
    config.quarantine.release_relay = Some(format!("127.0.0.1:{relay_port}"));
    let config_path = home.join("chaff.toml");
    write_toml(&config_path, &config, "");
    let port = free_port();
    let log = home.join("milter.log");
    let child = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("milter")
        .arg("--config")
        .arg(&config_path)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start chaff milter");
    let m = Milter {
        child,
        log,
        config: config_path,
        state: config.state.path.clone(),
    };
    wait_for_port(port, "chaff milter", || m.log());
    // The port goes in Postfix's configuration.
    std::fs::write(home.join("port"), port.to_string()).unwrap();
    m
}

impl Env {
    fn start(name: &str) -> Option<Env> {
        if let Some(why) = missing_postfix_prerequisite(
            &["postfix", "postqueue", "postsuper", "swaks"],
            "postfix swaks",
        ) {
            eprintln!("SKIPPED {name}: {why}");
            return None;
        }
        let f = fixture();
        let root = tempfile::Builder::new()
            .prefix("chaff-qrelease-")
            .tempdir_in("/tmp")
            .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            // Postfix's daemons run as `postfix` and must reach the directory.
            std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = root.path().to_path_buf();
        let (smtp_store, smtp_hold) = (free_port(), free_port());
        let store = start_milter(&dir, "store", &f.config, QuarantineMode::Store, smtp_store);
        let hold = start_milter(&dir, "hold", &f.config, QuarantineMode::Hold, smtp_store);
        let port_of = |name: &str| std::fs::read_to_string(dir.join(name).join("port")).unwrap();
        let mut env = Env {
            _root: root,
            dir: dir.clone(),
            smtp_store,
            smtp_hold,
            store,
            hold,
            postfix_started: false,
            base: f.config.clone(),
        };
        let status = Command::new(testenv_script())
            .arg("start")
            .arg(dir.join("pf"))
            .arg(smtp_store.to_string())
            .arg(format!("inet:127.0.0.1:{}", port_of("store")))
            .status()
            .expect("run postfix-testenv.sh");
        env.postfix_started = true;
        assert!(
            status.success(),
            "postfix did not start:\n{}",
            env.maillog()
        );
        // A second SMTP server of the same instance, with the hold-mode milter.
        let mut master = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("pf/etc/master.cf"))
            .unwrap();
        writeln!(
            master,
            "127.0.0.1:{smtp_hold} inet n - n - - smtpd -o smtpd_milters=inet:127.0.0.1:{}",
            port_of("hold")
        )
        .unwrap();
        let out = Command::new("postfix")
            .arg("-c")
            .arg(dir.join("pf/etc"))
            .arg("reload")
            .output()
            .expect("postfix reload");
        assert!(out.status.success(), "{out:?}");
        wait_for_port(smtp_hold, "the second smtpd", || env.maillog());
        Some(env)
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.join("pf/log/maillog")).unwrap_or_default()
    }

    /// Queue files of every queue, as `postqueue -j` lists them.
    fn queue(&self) -> Vec<serde_json::Value> {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(self.dir.join("pf/etc"))
            .arg("-j")
            .output()
            .expect("postqueue");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// True when no message is on its way (the hold queue does not count).
    fn nothing_in_flight(&self) -> bool {
        self.queue().iter().all(|e| e["queue_name"] == "hold")
    }

    /// The delivered messages containing `marker` now.
    fn mailbox(&self, marker: &str) -> Vec<String> {
        std::fs::read_dir(self.dir.join("pf/mail/inbox/new"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .filter(|t| t.contains(marker))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The delivered messages containing `marker`, once `want` of them have
    /// arrived and nothing else is on its way (so a second copy would have
    /// arrived too), or after 20 seconds.
    fn delivered(&self, marker: &str, want: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.mailbox(marker);
            if (found.len() >= want && self.nothing_in_flight()) || Instant::now() > deadline {
                return self.mailbox(marker);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `raw` (with `marker` in a header) by swaks to `port`; the queue id
    /// Postfix gave it.
    fn swaks(&self, port: u16, from: &str, to: &[&str], raw: &str, marker: &str) -> String {
        let file = self.dir.join(format!("{marker}.eml"));
        std::fs::write(&file, with_marker(raw, marker)).unwrap();
        let out = Command::new("swaks")
            .arg("--server")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--helo", "client.test", "--from", from])
            .arg("--to")
            .arg(to.join(","))
            .args(["--timeout", "60", "--data"])
            .arg(&file)
            .output()
            .expect("swaks");
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{t}\n{}", self.maillog());
        t.lines()
            .find_map(|l| l.split("queued as ").nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("no queue id:\n{t}"))
    }

    /// The one entry `milter` kept for queue id `qid`.
    fn entry(&self, milter: &Milter, qid: &str) -> Summary {
        let page = milter
            .store()
            .list(&Filter::default(), 1000, None, now())
            .unwrap();
        let found: Vec<Summary> = page
            .entries
            .into_iter()
            .filter(|s| s.queue_id.as_deref() == Some(qid))
            .collect();
        assert_eq!(found.len(), 1, "entries of {qid}: {found:?}");
        found.into_iter().next().unwrap()
    }

    /// `chaff ARGS --config CONFIG`, with the test's Postfix instance named.
    fn chaff(&self, args: &[&str], config: &Path) -> Output {
        self.spawn(args, config).wait_with_output().unwrap()
    }

    fn spawn(&self, args: &[&str], config: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_chaff"))
            .args(args)
            .arg("--config")
            .arg(config)
            .env("MAIL_CONFIG", self.dir.join("pf/etc"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A copy of the store-mode milter's configuration with another relay and
    /// `prefix` in front (top-level keys such as `model`).
    fn store_config_variant(&self, name: &str, relay_port: u16, prefix: &str) -> PathBuf {
        let mut config = self.base.clone();
        let home = self.dir.join("store");
        config.accounts.db = home.join("accounts.redb");
        config.state.path = self.store.state.clone();
        config.quarantine.release_key = Some(home.join("release.key"));
        config.quarantine.mode = QuarantineMode::Store;
        config.quarantine.release_relay = Some(format!("127.0.0.1:{relay_port}"));
        let path = self.dir.join(format!("{name}.toml"));
        write_toml(&path, &config, "");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{prefix}{text}")).unwrap();
        path
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn with_marker(raw: &str, marker: &str) -> String {
    raw.replacen(
        "Subject: ",
        &format!("X-Test-Marker: {marker}\r\nSubject: "),
        1,
    )
}

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .collect()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An SMTP server that takes a whole message and then drops the connection
/// without answering the end of it: the release cannot know whether it was
/// delivered. Serves connections until the test ends.
fn relay_that_loses_the_answer() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut w) = conn else { continue };
            let Ok(r) = w.try_clone() else { continue };
            let mut r = BufReader::new(r);
            let _ = w.write_all(b"220 lossy.test ESMTP\r\n");
            let mut line = String::new();
            let mut in_data = false;
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if in_data {
                    if line == ".\r\n" {
                        // The message is sent; its answer never comes.
                        let _ = w.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    continue;
                }
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" | "HELO" => b"250-lossy.test\r\n250 8BITMIME\r\n",
                    "DATA" => {
                        in_data = true;
                        b"354 go ahead\r\n"
                    }
                    "QUIT" => b"221 bye\r\n",
                    _ => b"250 ok\r\n",
                };
                if w.write_all(reply).is_err() {
                    break;
                }
            }
        }
    });
    port
}

#[test]
fn release_and_resolve_through_a_real_postfix() {
    let Some(env) = Env::start("release_and_resolve_through_a_real_postfix") else {
        return;
    };
    store_mode_release(&env);
    concurrent_releases_deliver_once(&env);
    learn_ham_and_allow_sender(&env);
    relay_down_leaves_the_entry_held(&env);
    in_doubt_is_refused_without_force(&env);
    hold_mode_release(&env);
}

fn store_mode_release(env: &Env) {
    let store_config = &env.store.config;
    let qid = env.swaks(
        env.smtp_store,
        "shop@example.com",
        &["b@example.org", "c@example.org"],
        MEDIUM,
        "store-1",
    );
    // Discarded by Postfix and kept by chaff, with its envelope.
    let e = env.entry(&env.store, &qid);
    assert_eq!(e.told, Told::Discard);
    assert_eq!(e.state, EntryState::Held);
    assert_eq!(e.sender, "shop@example.com");
    assert_eq!(e.recipients, ["b@example.org", "c@example.org"]);
    assert_eq!(e.client_addr.as_deref(), Some("127.0.0.1"));
    assert!(
        env.delivered("store-1", 0).is_empty(),
        "discarded spam arrived"
    );
    let kept_before = env.store.store().totals().unwrap().entries;
    let id = e.id.to_string();

    let out = env.chaff(&["quarantine", "release", &id], store_config);
    assert!(out.status.success(), "{}\n{}", text(&out), env.maillog());
    let said = text(&out);
    assert!(
        said.contains(&format!("{id}: released: delivered: 250")),
        "{said}"
    );

    // Once per original recipient, with the original envelope sender, unscanned.
    let got = env.delivered("store-1", 2);
    assert_eq!(got.len(), 2, "one copy per recipient\n{}", env.maillog());
    let mut to: Vec<&str> = got.iter().flat_map(|m| header(m, "Delivered-To")).collect();
    to.sort_unstable();
    assert_eq!(to, ["b@example.org", "c@example.org"]);
    for m in &got {
        assert_eq!(header(m, "Return-Path"), ["<shop@example.com>"], "{m}");
        assert!(!m.contains("X-Chaff-Release"), "token delivered:\n{m}");
        assert!(!m.contains("X-Spam-Status"), "scanned again:\n{m}");
    }
    // Not filtered again: the milter let it through as released, kept nothing new.
    assert!(
        env.store.log().contains(&format!("released {id}")),
        "{}",
        env.store.log()
    );
    assert_eq!(env.store.store().totals().unwrap().entries, kept_before);
    let after = env.store.store().get(e.id).unwrap().unwrap().summary;
    let EntryState::Released { by, how, .. } = &after.state else {
        panic!("{:?}", after.state)
    };
    assert!(by.starts_with("cli:"), "{by}");
    assert!(how.starts_with("delivered: 250"), "{how}");

    // Again: refused, saying who released it and when; nothing delivered.
    let out = env.chaff(&["quarantine", "release", &id], store_config);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("{id}: was already released by {by} at 20")),
        "{said}"
    );
    assert_eq!(env.delivered("store-1", 2).len(), 2);
}

fn concurrent_releases_deliver_once(env: &Env) {
    let qid = env.swaks(
        env.smtp_store,
        "shop@example.com",
        &["b@example.org"],
        MEDIUM,
        "race-1",
    );
    let id = env.entry(&env.store, &qid).id.to_string();
    let children: Vec<Child> = (0..2)
        .map(|_| env.spawn(&["quarantine", "release", &id], &env.store.config))
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<&Output> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(
        (won.len(), lost.len()),
        (1, 1),
        "{}\n---\n{}",
        text(&outs[0]),
        text(&outs[1])
    );
    let said = text(lost[0]);
    assert!(
        said.contains("being released by cli:") || said.contains("already released by cli:"),
        "the loser says who has it: {said}"
    );
    assert_eq!(env.delivered("race-1", 1).len(), 1, "{}", env.maillog());
}

fn learn_ham_and_allow_sender(env: &Env) {
    let model = env.dir.join("chaff.model");
    let out = Command::new(env!("CARGO_BIN_EXE_chaff"))
        .args(["train", "--jobs", "1", "-o"])
        .arg(&model)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/index"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let with_model = env.store_config_variant(
        "with-model",
        env.smtp_store,
        &format!("model = {:?}\n\n", model.display().to_string()),
    );
    let qid = env.swaks(
        env.smtp_store,
        "news@example.net",
        &["b@example.org"],
        MEDIUM,
        "learn-1",
    );
    let id = env.entry(&env.store, &qid).id.to_string();
    let raw = env.chaff(&["quarantine", "show", &id, "--raw"], &with_model);
    assert!(raw.status.success(), "{}", text(&raw));
    let message = env.dir.join("learn-1.kept.eml");
    std::fs::write(&message, &raw.stdout).unwrap();
    let score = || {
        let out = Command::new(env!("CARGO_BIN_EXE_chaff"))
            .args(["score", "--format", "json", "--config"])
            .arg(&with_model)
            .arg(&message)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
        v["score"].as_f64().unwrap()
    };
    let before = score();

    let out = env.chaff(
        &[
            "quarantine",
            "release",
            &id,
            "--learn-ham",
            "--allow-sender",
        ],
        &with_model,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("{id}: learned as ham: score")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "{id}: allowed: news@example.net from 127.0.0.1/32"
        )),
        "{said}"
    );
    let after = score();
    assert!(
        after < before,
        "learning as ham should lower the score: {before} -> {after}"
    );
    assert_eq!(env.delivered("learn-1", 1).len(), 1);

    let out = env.chaff(&["senders", "list"], &env.store.config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("news@example.net from 127.0.0.1/32"),
        "{}",
        text(&out)
    );
    // Both logged with who.
    let log = env.store.store().actions(20).unwrap();
    for what in ["learn-ham", "allow-sender", "allow-add"] {
        let a = log
            .iter()
            .find(|a| a.what == what)
            .unwrap_or_else(|| panic!("no {what} in {log:?}"));
        assert!(a.by.starts_with("cli:"), "{a:?}");
    }
}

fn relay_down_leaves_the_entry_held(env: &Env) {
    let down = env.store_config_variant("relay-down", free_port(), "");
    let qid = env.swaks(
        env.smtp_store,
        "shop@example.com",
        &["b@example.org"],
        MEDIUM,
        "down-1",
    );
    let e = env.entry(&env.store, &qid);
    let id = e.id.to_string();
    let out = env.chaff(&["quarantine", "release", &id], &down);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("not delivered") && said.contains("held again"),
        "{said}"
    );
    let store = env.store.store();
    assert_eq!(
        store.get(e.id).unwrap().unwrap().summary.state,
        EntryState::Held
    );
    let last = &store.actions(1).unwrap()[0];
    assert_eq!(
        (last.what.as_str(), last.id),
        ("release-failed", Some(e.id))
    );
    assert!(last.by.starts_with("cli:"), "{last:?}");
    assert!(last.detail.contains("connect"), "the reason: {last:?}");
    drop(store);
    // Nothing went out; with the relay back it is released, once.
    assert!(env.mailbox("down-1").is_empty());
    let out = env.chaff(&["quarantine", "release", &id], &env.store.config);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.delivered("down-1", 1).len(), 1);
}

fn in_doubt_is_refused_without_force(env: &Env) {
    let lossy = env.store_config_variant("lossy", relay_that_loses_the_answer(), "");
    let good = &env.store.config;
    for (marker, settle) in [("doubt-1", "--force"), ("doubt-2", "--not-delivered")] {
        let qid = env.swaks(
            env.smtp_store,
            "shop@example.com",
            &["b@example.org"],
            MEDIUM,
            marker,
        );
        let e = env.entry(&env.store, &qid);
        let id = e.id.to_string();
        // The answer to the message is lost: in doubt at once.
        let out = env.chaff(&["quarantine", "release", &id], &lossy);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("in doubt"), "{}", text(&out));
        let store = env.store.store();
        let s = store.get(e.id).unwrap().unwrap().summary;
        assert_eq!(s.state.name(now()), "in_doubt", "{:?}", s.state);
        assert_eq!(store.actions(1).unwrap()[0].what, "release-in-doubt");
        drop(store);
        // Not released again without being asked to explicitly.
        let out = env.chaff(&["quarantine", "release", &id], good);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("in doubt") && said.contains("ended uncertain"),
            "{said}"
        );
        assert!(env.mailbox(marker).is_empty());
        if settle == "--force" {
            let out = env.chaff(&["quarantine", "release", &id, "--force"], good);
            assert!(out.status.success(), "{}", text(&out));
        } else {
            let out = env.chaff(&["quarantine", "resolve", &id, "--not-delivered"], good);
            assert!(out.status.success(), "{}", text(&out));
            assert!(
                text(&out).contains(&format!("{id}: held")),
                "{}",
                text(&out)
            );
            // Settled: no longer in doubt, so resolving again is refused.
            let out = env.chaff(&["quarantine", "resolve", &id, "--delivered"], good);
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            let out = env.chaff(&["quarantine", "release", &id], good);
            assert!(out.status.success(), "{}", text(&out));
        }
        assert_eq!(env.delivered(marker, 1).len(), 1, "{marker}");
    }
}

fn hold_mode_release(env: &Env) {
    let qid = env.swaks(
        env.smtp_hold,
        "shop@example.com",
        &["b@example.org", "c@example.org"],
        MEDIUM,
        "held-1",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .queue()
        .iter()
        .any(|q| q["queue_id"] == qid.as_str() && q["queue_name"] == "hold")
    {
        assert!(
            Instant::now() < deadline,
            "{qid} not on hold\n{}",
            env.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let e = env.entry(&env.hold, &qid);
    assert_eq!(e.told, Told::Hold);
    assert_eq!(e.queue_id.as_deref(), Some(qid.as_str()));
    assert!(env.mailbox("held-1").is_empty());
    let id = e.id.to_string();

    let out = env.chaff(&["quarantine", "release", &id], &env.hold.config);
    let said = text(&out);
    assert!(out.status.success(), "{said}\n{}", env.maillog());
    assert!(
        said.contains(&format!("{id}: released: released from the hold queue")),
        "{said}"
    );
    let got = env.delivered("held-1", 2);
    assert_eq!(got.len(), 2, "{}", env.maillog());
    for m in &got {
        assert_eq!(header(m, "Return-Path"), ["<shop@example.com>"], "{m}");
        // Scanned once, when it arrived: its headers say quarantine.
        assert!(m.contains("action=quarantine"), "{m}");
    }
    assert!(!env.queue().iter().any(|q| q["queue_id"] == qid.as_str()));
    let s = env.hold.store().get(e.id).unwrap().unwrap().summary;
    assert!(matches!(s.state, EntryState::Released { .. }), "{s:?}");
    let out = env.chaff(&["quarantine", "release", &id], &env.hold.config);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already released"), "{}", text(&out));
}
