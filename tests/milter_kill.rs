//! Issue 14: kill it under load, with a real Postfix.
//!
//! A throwaway Postfix on loopback (`scripts/postfix-testenv.sh`, with
//! `milter_default_action = tempfail`) has the `chaff milter` binary behind
//! `smtpd_milters`. Four client threads send the bundled corpus (ham and spam, each
//! copy with a unique token header) over SMTP, retrying a message after a short
//! pause whenever it gets a 4xx, as a sending MTA would; meanwhile another thread
//! kills chaff with SIGKILL ten times, spread over the load, and restarts it on the
//! same port. At the end every message has exactly one final outcome: accepted
//! with 250 (then it is in the Maildir exactly once, or in the hold queue when
//! chaff quarantined it) or refused with a 5xx (then it is nowhere). Nothing is
//! lost and nothing is delivered twice; the deferrals are counted.
//!
//! Needs root and the Debian package postfix; skipped with a message otherwise.
//! The SMTP client is written here with `std::net` (no swaks, to keep it fast).

mod milter_support;

use chaff::{Action, Engine, Envelope};
use chaff_milter::ServiceConfig;
use milter_support::{free_port, missing_postfix_prerequisite, testenv_script, write_toml};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many messages are sent.
const MESSAGES: usize = 300;
/// How many times chaff is killed.
const KILLS: usize = 10;
/// How many SMTP clients send at once.
const SENDERS: usize = 4;

/// A small xorshift generator: random-ish timings, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Stops Postfix and chaff however the test ends.
struct Env {
    dir: PathBuf,
    config: PathBuf,
    milter_port: u16,
    smtp_port: u16,
    chaff: Mutex<Option<Child>>,
    postfix_started: bool,
}

impl Env {
    fn pf(&self) -> PathBuf {
        self.dir.join("pf")
    }

    /// Starts `chaff milter` and waits until its port accepts connections.
    fn start_chaff(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("chaff.log"))
            .expect("chaff log");
        let child = Command::new(env!("CARGO_BIN_EXE_chaff"))
            .arg("milter")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("inet:127.0.0.1:{}", self.milter_port))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chaff milter");
        *self.chaff.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.milter_port)).is_err() {
            let exited = self
                .chaff
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "chaff did not start ({exited:?}):\n{}",
                self.log("chaff.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    fn kill_chaff(&self) {
        if let Some(mut c) = self.chaff.lock().unwrap().take() {
            c.kill().expect("kill -9 chaff");
            c.wait().expect("reap chaff");
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn maillog(&self) -> String {
        self.log("pf/log/maillog")
    }

    /// Every queue entry: (queue name, queue id).
    fn queue(&self) -> Vec<(String, String)> {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(self.pf().join("etc"))
            .arg("-j")
            .output()
            .expect("postqueue");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["queue_name"].as_str().unwrap_or_default().to_string(),
                    v["queue_id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// How many delivered copies of each token the Maildir holds.
    fn delivered(&self) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.pf().join("mail/inbox").join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                let token = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Kill-Token: "))
                    .unwrap_or("(none)")
                    .trim()
                    .to_string();
                *seen.entry(token).or_insert(0) += 1;
            }
        }
        seen
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let chaff = self.chaff.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = chaff.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.postfix_started {
            let _ = Command::new(testenv_script())
                .arg("stop")
                .arg(self.pf())
                .status();
        }
    }
}

/// A message's final outcome at the SMTP client.
#[derive(Debug, Clone)]
enum Outcome {
    /// 250 at end of data, with Postfix's queue id.
    Accepted(String),
    /// A 5xx reply.
    Refused(String),
}

/// One attempt's result: final, or deferred with a 4xx (the stage and reply).
enum Attempt {
    Final(Outcome),
    Deferred(String),
}

struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn connect(port: u16) -> io::Result<Smtp> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        Ok(Smtp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// A (possibly multi-line) reply: its code and text.
    fn reply(&mut self) -> io::Result<(u16, String)> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {text:?}"),
                ));
            }
            text.push_str(&line);
            let b = line.as_bytes();
            if b.len() < 4 || !b[..3].iter().all(u8::is_ascii_digit) {
                return Err(io::Error::other(format!("malformed reply {line:?}")));
            }
            if b[3] == b' ' || b[3] == b'\r' || b[3] == b'\n' {
                let code = line[..3].parse().unwrap();
                return Ok((code, text.trim_end().to_string()));
            }
        }
    }

    fn command(&mut self, line: &[u8]) -> io::Result<(u16, String)> {
        self.writer.write_all(line)?;
        self.reply()
    }
}

/// One SMTP session for one message. `data` is dot-stuffed, CRLF, and ends with
/// the `.` line.
fn attempt(port: u16, data: &[u8]) -> io::Result<Attempt> {
    let mut smtp = Smtp::connect(port)?;
    let steps: [(&str, Option<&[u8]>); 6] = [
        ("banner", None),
        ("EHLO", Some(b"EHLO client.test\r\n")),
        ("MAIL", Some(b"MAIL FROM:<sender@example.com>\r\n")),
        ("RCPT", Some(b"RCPT TO:<b@example.org>\r\n")),
        ("DATA", Some(b"DATA\r\n")),
        ("end of data", Some(data)),
    ];
    for (stage, line) in steps {
        let (code, text) = match line {
            None => smtp.reply()?,
            Some(l) => smtp.command(l)?,
        };
        match code / 100 {
            2 | 3 if stage != "end of data" => continue,
            2 => {
                let _ = smtp.command(b"QUIT\r\n");
                let id = text
                    .split("queued as ")
                    .nth(1)
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| io::Error::other(format!("no queue id in {text:?}")))?;
                return Ok(Attempt::Final(Outcome::Accepted(id)));
            }
            4 => {
                let _ = smtp.command(b"QUIT\r\n");
                return Ok(Attempt::Deferred(format!("{stage}: {text}")));
            }
            5 => {
                let _ = smtp.command(b"QUIT\r\n");
                return Ok(Attempt::Final(Outcome::Refused(format!("{stage}: {text}"))));
            }
            _ => return Err(io::Error::other(format!("{stage}: unexpected {text:?}"))),
        }
    }
    unreachable!("the last step returns")
}

/// The corpus message with a token header, as CRLF lines.
fn with_token(raw: &[u8], token: &str) -> Vec<u8> {
    let mut out = format!("X-Kill-Token: {token}\r\n").into_bytes();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// SMTP DATA: dot-stuffed, with the final `.` line.
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Tells the senders to give up when the killing thread panics.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

struct Sent {
    token: String,
    expected: Action,
    outcome: Option<Outcome>,
    deferrals: Vec<String>,
}

#[test]
fn kill_9_under_load_loses_nothing_and_delivers_nothing_twice() {
    if let Some(why) =
        missing_postfix_prerequisite(&["postfix", "postconf", "postqueue"], "postfix")
    {
        eprintln!("SKIPPED milter_kill: {why}");
        return;
    }
    let started = Instant::now();
    // Postfix's daemons run as `postfix` and must reach the directory.
    let root = tempfile::Builder::new()
        .prefix("chaff-kill-")
        .tempdir_in("/tmp")
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dir = root.path().to_path_buf();
    let mut config = ServiceConfig::default();
    config.accounts.db = dir.join("accounts.redb");
    config.state.path = dir.join("state.redb");
    let config_path = dir.join("chaff.toml");
    write_toml(&config_path, &config, "");
    let engine = Engine::new(&config.engine).expect("engine");

    // The messages: the corpus, over and over, each copy with its own token; the
    // engine tells what chaff should answer.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut files: Vec<PathBuf> = ["ham", "spam"]
        .iter()
        .flat_map(|d| std::fs::read_dir(corpus.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let run = format!("{:08x}", seed as u32);
    let mut data = Vec::with_capacity(MESSAGES);
    let mut sent = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let raw = std::fs::read(&files[i % files.len()]).unwrap();
        let token = format!("kill-{run}-{i:04}");
        let message = with_token(&raw, &token);
        let expected = engine.scan(&message, &Envelope::default()).action;
        data.push(dot_stuffed(&message));
        sent.push(Mutex::new(Sent {
            token,
            expected,
            outcome: None,
            deferrals: Vec::new(),
        }));
    }
    let count = |a: Action| {
        sent.iter()
            .filter(|s| s.lock().unwrap().expected == a)
            .count()
    };
    assert!(
        count(Action::Reject) > 0 && count(Action::Deliver) > 0,
        "the corpus should give both ham and spam"
    );

    let mut env = Env {
        dir: dir.clone(),
        config: config_path,
        milter_port: free_port(),
        smtp_port: free_port(),
        chaff: Mutex::new(None),
        postfix_started: false,
    };
    env.start_chaff();
    let status = Command::new(testenv_script())
        .arg("start")
        .arg(env.pf())
        .arg(env.smtp_port.to_string())
        .arg(format!("inet:127.0.0.1:{}", env.milter_port))
        .env(
            "PF_MAIN_CF_EXTRA",
            "milter_default_action = tempfail\nin_flow_delay = 0s\n",
        )
        .status()
        .expect("run postfix-testenv.sh");
    env.postfix_started = true;
    assert!(
        status.success(),
        "postfix did not start:\n{}",
        env.maillog()
    );

    // The load, and the kills.
    let deadline = Instant::now() + Duration::from_secs(100);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let senders_left = AtomicUsize::new(SENDERS);
    let stop = AtomicBool::new(false);
    let io_errors = Mutex::new(Vec::<String>::new());
    let mut kills_during_load = 0;
    std::thread::scope(|s| {
        for t in 0..SENDERS {
            let (env, data, sent) = (&env, &data, &sent);
            let (next, done, stop, io_errors) = (&next, &done, &stop, &io_errors);
            let senders_left = &senders_left;
            s.spawn(move || {
                let mut rng = Rng(seed.rotate_left(8 * t as u32 + 8) | 1);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= MESSAGES {
                        break;
                    }
                    loop {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            stop.store(true, Ordering::SeqCst);
                            senders_left.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                        match attempt(env.smtp_port, &data[i]) {
                            Ok(Attempt::Final(outcome)) => {
                                sent[i].lock().unwrap().outcome = Some(outcome);
                                break;
                            }
                            Ok(Attempt::Deferred(why)) => {
                                sent[i].lock().unwrap().deferrals.push(why)
                            }
                            // Postfix never drops a session when the milter dies: an
                            // error here is a finding, retried like a sending MTA would.
                            Err(e) => io_errors.lock().unwrap().push(format!("message {i}: {e}")),
                        }
                        // A sending MTA waits before trying again.
                        std::thread::sleep(Duration::from_millis(50 + rng.below(150)));
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                senders_left.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let _stop_senders = StopOnPanic(&stop);
        // Kill k happens once about (k + 1) / (KILLS + 2) of the messages are
        // done, a random-ish moment later, so every kill falls within the load.
        let mut rng = Rng(seed);
        for k in 0..KILLS {
            let at = (k + 1) * MESSAGES / (KILLS + 2) + rng.below(MESSAGES as u64 / 24) as usize;
            while done.load(Ordering::SeqCst) < at
                && senders_left.load(Ordering::SeqCst) > 0
                && !stop.load(Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(rng.below(40)));
            if senders_left.load(Ordering::SeqCst) > 0 {
                kills_during_load += 1;
            }
            env.kill_chaff();
            // Down for a moment: new sessions meet a closed port.
            std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
            env.start_chaff();
        }
    });
    assert!(
        !stop.load(Ordering::SeqCst),
        "the load did not finish in time\n{}",
        env.maillog()
    );

    // Let Postfix deliver everything that is not held.
    let sent: Vec<Sent> = sent.into_iter().map(|m| m.into_inner().unwrap()).collect();
    let mut accepted = BTreeMap::new();
    for s in &sent {
        if let Some(Outcome::Accepted(id)) = &s.outcome {
            assert!(
                accepted.insert(id.clone(), s.token.clone()).is_none(),
                "queue id {id} given twice"
            );
        }
    }
    let to_deliver: BTreeSet<&str> = sent
        .iter()
        .filter(|s| {
            matches!(s.outcome, Some(Outcome::Accepted(_))) && s.expected != Action::Quarantine
        })
        .map(|s| s.token.as_str())
        .collect();
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy = env.queue().iter().filter(|(q, _)| q != "hold").count();
        if busy == 0 && env.delivered().values().sum::<usize>() >= to_deliver.len() {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "Postfix did not deliver everything: {busy} in its queues\n{}",
            env.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered = env.delivered();
    let queue = env.queue();
    let held: BTreeSet<String> = queue
        .iter()
        .filter(|(q, _)| q == "hold")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(
        queue.len(),
        held.len(),
        "left in Postfix's queues: {queue:?}"
    );

    // Every message: exactly one final outcome, matching chaff's verdict, and
    // where it says.
    let mut problems = Vec::new();
    let (mut n_delivered, mut n_held, mut n_refused, mut n_deferred, mut n_retries) =
        (0, 0, 0, 0, 0);
    for s in &sent {
        let copies = delivered.get(&s.token).copied().unwrap_or(0);
        n_deferred += usize::from(!s.deferrals.is_empty());
        n_retries += s.deferrals.len();
        match &s.outcome {
            None => problems.push(format!("{}: no final outcome", s.token)),
            Some(Outcome::Accepted(id)) => match s.expected {
                Action::Reject => problems.push(format!("{}: spam accepted as {id}", s.token)),
                Action::Quarantine => {
                    n_held += 1;
                    if !held.contains(id) || copies != 0 {
                        problems.push(format!(
                            "{}: quarantined as {id}: held {}, delivered {copies} times",
                            s.token,
                            held.contains(id)
                        ));
                    }
                }
                Action::Deliver => {
                    n_delivered += 1;
                    if copies != 1 || held.contains(id) {
                        problems.push(format!(
                            "{}: accepted as {id}, delivered {copies} times",
                            s.token
                        ));
                    }
                }
            },
            Some(Outcome::Refused(reply)) => {
                n_refused += 1;
                if s.expected != Action::Reject || !reply.starts_with("end of data: 557 5.7.1 ") {
                    problems.push(format!("{}: {:?} refused: {reply}", s.token, s.expected));
                }
                if copies != 0 {
                    problems.push(format!(
                        "{}: refused, yet delivered {copies} times",
                        s.token
                    ));
                }
            }
        }
    }
    let tokens: BTreeSet<&str> = sent.iter().map(|s| s.token.as_str()).collect();
    for (token, copies) in &delivered {
        if !tokens.contains(token.as_str()) {
            problems.push(format!("{copies} delivered message(s) not sent: {token}"));
        }
    }
    for id in &held {
        if !accepted.contains_key(id) {
            problems.push(format!("held {id} was never accepted"));
        }
    }
    let io_errors = io_errors.into_inner().unwrap();
    let stages: BTreeMap<&str, usize> =
        sent.iter()
            .flat_map(|s| &s.deferrals)
            .fold(BTreeMap::new(), |mut m, d| {
                *m.entry(d.split(':').next().unwrap_or("")).or_insert(0) += 1;
                m
            });
    println!(
        "milter_kill: {MESSAGES} messages, {KILLS} kills ({kills_during_load} during the load) \
         in {:.1} s: {n_delivered} delivered once, {n_held} held, {n_refused} refused; \
         {n_deferred} deferred and accepted or refused on retry ({n_retries} 4xx replies, \
         by stage {stages:?}); {} connection errors; seed {seed}",
        started.elapsed().as_secs_f64(),
        io_errors.len()
    );
    assert!(
        problems.is_empty() && io_errors.is_empty(),
        "{} problems:\n{}\nconnection errors: {io_errors:?}\n--- chaff\n{}\n--- maillog\n{}",
        problems.len(),
        problems.join("\n"),
        env.log("chaff.log"),
        env.maillog()
    );
    assert_eq!(
        kills_during_load, KILLS,
        "every kill should fall within the load"
    );
    assert!(
        n_deferred > 0,
        "no message was deferred: the kills went unnoticed"
    );
    assert_eq!(n_delivered + n_held + n_refused, MESSAGES);
}
