//! Two chaff services sharing one real Redis (`[state] backend`, issue 12):
//! locks made through one are refused by the other, a rate limit holds across
//! both, an unlock on either counts on both, and Redis killed mid-run leaves
//! every message answered by the configured policy, with the lock changes made
//! meanwhile written back when it returns. Skipped when redis-server is missing
//! (CI installs it).

mod milter_support;

use chaff_milter::ServiceConfig;
use chaff_milter::client::{Client, Submission};
use chaff_milter::config::StateFail;
use chaff_milter::server::ServerHandle;
use milter_support::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
    cluster: bool,
}

impl Redis {
    fn start(dir: &std::path::Path, port: u16) -> Redis {
        Redis::start_as(dir, port, false)
    }

    fn start_as(dir: &std::path::Path, port: u16, cluster: bool) -> Redis {
        let mut r = Redis {
            child: None,
            port,
            dir: dir.to_path_buf(),
            cluster,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(self.dir.join("nodes.conf"));
        }
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let o = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn missing_redis() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
    }
    !found
}

/// A service on `redis` with its own files in `sub` of the fixture's directory.
fn service(
    f: &Fixture,
    sub: &str,
    redis: &str,
    tweak: impl Fn(&mut ServiceConfig),
) -> ServerHandle {
    let mut c = f.config.clone();
    let d = f.dir.path().join(sub);
    std::fs::create_dir_all(&d).unwrap();
    c.accounts.db = d.join("accounts.redb");
    c.state.path = d.join("state.redb");
    c.state.backend = redis.to_string();
    c.state.timeout_ms = 200;
    tweak(&mut c);
    start(&c)
}

fn send(addr: &str, user: Option<&str>, body: &str) -> (&'static str, Option<String>) {
    let mut c = Client::connect(addr).unwrap();
    let env = Submission {
        sender: "alice@example.com",
        recipients: vec!["bob@example.org"],
        auth_user: user,
        queue_id: Some("QRED"),
    };
    let a = c.message(&env, body.as_bytes()).unwrap();
    (a.action(), a.reply())
}

#[test]
fn two_hosts_share_locks_and_limits_and_survive_redis_going_away() {
    if missing_redis() {
        return;
    }
    let f = fixture();
    let mut redis = Redis::start(f.dir.path(), free_port());
    let url = redis.url();
    let limits = |c: &mut ServiceConfig| {
        c.ratelimit.account = vec![chaff_milter::state::ratelimit::Window {
            window: Duration::from_secs(60),
            messages: 10,
            recipients: 0,
        }];
    };
    let a = service(&f, "a", &url, limits);
    let b = service(&f, "b", &url, limits);

    // A rate limit of 10 a minute lets exactly 10 through across both hosts.
    // (Fixed windows are minutes of Redis's clock: start well inside one.)
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 > 45 {
        std::thread::sleep(Duration::from_secs(62 - secs % 60));
    }
    let mut through = 0;
    let mut limited = 0;
    for i in 0..30 {
        let h = if i % 2 == 0 { &a } else { &b };
        match send(h.addr(), Some("carol"), HAM) {
            ("deliver", _) => through += 1,
            ("tempfail", Some(r)) if r.contains("sending rate limit exceeded") => limited += 1,
            other => panic!("message {i}: {other:?}"),
        }
    }
    assert_eq!((through, limited), (10, 20));
    // Noted for `chaff accounts list`, off the answer's path.
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.cli(&["ZRANGE", "chaff:limited", "0", "-1"]) != "carol" {
        assert!(Instant::now() < deadline, "carol not noted as limited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let usage = a
        .service()
        .locks()
        .unwrap()
        .usage(
            &a.service().current().settings.ratelimit,
            None,
            &chaff_milter::state::ratelimit::Subject::Account("carol".into()),
        )
        .unwrap();
    assert_eq!(usage[0].2, 10);
    let m = scrape(&a);
    assert!(
        metric(&m, "chaff_milter_rate_limited_total").unwrap() >= 10.0,
        "{m}"
    );
    assert_eq!(metric(&m, "chaff_milter_state_backend_up"), Some(1.0));

    // Spam from dave through the first host locks him (lock_after = 3); the
    // second refuses him within one second.
    for _ in 0..3 {
        assert_eq!(send(a.addr(), Some("dave"), SPAM).0, "reject");
    }
    let locked_at = Instant::now();
    assert_eq!(send(b.addr(), Some("dave"), HAM).0, "reject");
    assert!(locked_at.elapsed() < Duration::from_secs(1));
    assert_eq!(redis.cli(&["SISMEMBER", "chaff:locks", "dave"]), "1");
    // Every key chaff wrote has a TTL, except the bounded lock and its index.
    for key in redis.cli(&["--scan"]).lines() {
        let ttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
        assert!(
            ttl > 0 || key == "chaff:locks" || key.ends_with(":lock"),
            "{key} has no TTL"
        );
    }

    // Unlocked through the second host's admin view: the first lets him send.
    let locks = b.service().locks().unwrap();
    let listed = locks.list().unwrap();
    assert_eq!(listed.len(), 1);
    // The lock record keeps the three rejected messages that caused it.
    let msgs = &listed[0].1.messages;
    assert_eq!(msgs.len(), 3, "{listed:?}");
    assert!(
        msgs.iter()
            .all(|m| m.queue_id.as_deref() == Some("QRED") && m.score.is_some_and(|s| s > 0.0)),
        "{listed:?}"
    );
    // A reject list written by an older version (bare times) still counts, and
    // its entries go into the lock as what is known of them.
    let now = chaff_milter::accounts::now_secs().to_string();
    for _ in 0..2 {
        redis.cli(&["RPUSH", "chaff:{a:olga}:rej", &now]);
    }
    redis.cli(&["EXPIRE", "chaff:{a:olga}:rej", "600"]);
    assert_eq!(send(a.addr(), Some("olga"), SPAM).0, "reject");
    let olga = locks.lock_of("olga").unwrap().expect("olga locked");
    assert_eq!(olga.messages.len(), 3, "{olga:?}");
    assert_eq!(olga.messages[0].queue_id, None);
    assert_eq!(olga.messages[2].queue_id.as_deref(), Some("QRED"));
    assert!(locks.unlock("olga").unwrap());
    assert!(locks.unlock("Dave").unwrap());
    assert_eq!(send(a.addr(), Some("dave"), HAM).0, "deliver");

    // Redis killed: every message is still answered, by the `open` policy on
    // the first host (memory) and `tempfail` on a third.
    let t = service(&f, "t", &url, |c| {
        limits(c);
        c.state.fail = StateFail::Tempfail;
    });
    assert!(
        a.service()
            .locks()
            .unwrap()
            .lock("erin", 1, "by hand")
            .unwrap()
    );
    std::thread::sleep(Duration::from_millis(100));
    redis.kill();
    let started = Instant::now();
    for i in 0..8 {
        assert_eq!(send(a.addr(), Some("frank"), HAM).0, "deliver", "{i}");
        assert_eq!(send(a.addr(), None, HAM).0, "deliver");
    }
    // Known locks stay enforced from memory.
    assert_eq!(send(a.addr(), Some("erin"), HAM).0, "reject");
    let (action, reply) = send(t.addr(), Some("frank"), HAM);
    assert_eq!(action, "tempfail");
    assert!(reply.unwrap().starts_with("451 4.3.0"));
    // Unauthenticated mail needs no state: scanned as usual.
    assert_eq!(send(t.addr(), None, HAM).0, "deliver");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answers waited on Redis"
    );
    let m = scrape(&a);
    assert_eq!(
        metric(&m, "chaff_milter_state_backend_up"),
        Some(0.0),
        "{m}"
    );
    // While away: an unlock and a lock, journalled.
    assert!(a.service().locks().unwrap().unlock("erin").unwrap());
    assert!(
        a.service()
            .locks()
            .unwrap()
            .lock("gina", 2, "while away")
            .unwrap()
    );
    assert_eq!(a.service().shared().unwrap().journal_len(), 2);

    // Redis back (empty: no persistence): the journal is written back and the
    // other host sees gina locked.
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(40);
    while a.service().shared().unwrap().journal_len() > 0 {
        assert!(Instant::now() < deadline, "journal not written back");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The second host notices the new Redis at its next call (its connection
    // broke) and is back within its backoff.
    let deadline = Instant::now() + Duration::from_secs(40);
    while send(b.addr(), Some("gina"), HAM).0 != "reject" {
        assert!(
            Instant::now() < deadline,
            "second host did not see gina's lock"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(b.service().shared().unwrap().is_up());
    assert_eq!(send(b.addr(), Some("erin"), HAM).0, "deliver");
    // Counters resume: hank gets his 10 again.
    let mut through = 0;
    for _ in 0..12 {
        if send(b.addr(), Some("hank"), HAM).0 == "deliver" {
            through += 1;
        }
    }
    assert_eq!(through, 10);
    let m = scrape(&a);
    assert!(
        metric(&m, "chaff_milter_state_replayed_total").unwrap() >= 2.0,
        "{m}"
    );
    a.shutdown();
    b.shutdown();
    t.shutdown();
}

#[test]
fn a_redis_that_may_evict_locks_is_refused_at_start() {
    if missing_redis() {
        return;
    }
    let f = fixture();
    let redis = Redis::start(f.dir.path(), free_port());
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let mut c = f.config.clone();
    c.state.backend = redis.url();
    let started = chaff_milter::server::spawn(
        &c,
        chaff_milter::server::ServeOptions {
            listen: chaff_milter::server::ListenAddr::Inet("127.0.0.1:0".into()),
            metrics: None,
            config_path: None,
            http: None,
        },
    );
    let Err(e) = started else {
        panic!("a Redis with allkeys-lru was accepted")
    };
    assert!(e.to_string().contains("allkeys-lru"), "{e}");
}

#[test]
fn two_hosts_share_locks_and_limits_on_a_redis_cluster() {
    if missing_redis() {
        return;
    }
    let f = fixture();
    let nodes: Vec<Redis> = (0..3)
        .map(|i| {
            let d = f.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&d).unwrap();
            Redis::start_as(&d, free_port(), true)
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let made = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "the cluster did not form");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("redis+cluster://{}", addrs.join(","));
    let limits = |c: &mut ServiceConfig| {
        c.ratelimit.account = vec![chaff_milter::state::ratelimit::Window {
            window: Duration::from_secs(60),
            messages: 10,
            recipients: 0,
        }];
        c.ratelimit.client = vec![chaff_milter::state::ratelimit::Window {
            window: Duration::from_secs(60),
            messages: 1000,
            recipients: 0,
        }];
    };
    let a = service(&f, "a", &url, limits);
    let b = service(&f, "b", &url, limits);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 > 45 {
        std::thread::sleep(Duration::from_secs(62 - secs % 60));
    }
    // Subjects in different slots (the account, the client address): counted
    // by one call each.
    let mut through = 0;
    for i in 0..24 {
        let h = if i % 2 == 0 { &a } else { &b };
        if send(h.addr(), Some("carol"), HAM).0 == "deliver" {
            through += 1;
        }
    }
    assert_eq!(through, 10);
    for _ in 0..3 {
        assert_eq!(send(a.addr(), Some("dave"), SPAM).0, "reject");
    }
    assert_eq!(send(b.addr(), Some("dave"), HAM).0, "reject");
    assert!(b.service().locks().unwrap().unlock("dave").unwrap());
    assert_eq!(send(a.addr(), Some("dave"), HAM).0, "deliver");
    assert_eq!(a.service().locks().unwrap().list().unwrap(), vec![]);
    a.shutdown();
    b.shutdown();
}

#[test]
fn redis_killed_during_a_load_run_leaves_every_message_answered_once() {
    if missing_redis() {
        return;
    }
    let f = fixture();
    let mut redis = Redis::start(f.dir.path(), free_port());
    let url = redis.url();
    let a = service(&f, "a", &url, |c| {
        c.ratelimit.account = vec![chaff_milter::state::ratelimit::Window {
            window: Duration::from_secs(3600),
            messages: 100_000,
            recipients: 0,
        }];
    });
    let addr = a.addr().to_string();
    const THREADS: usize = 8;
    const EACH: usize = 60;
    let answers: Vec<std::thread::JoinHandle<Vec<&'static str>>> = (0..THREADS)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let user = format!("load{t}");
                let mut c = Client::connect(&addr).unwrap();
                let mut out = Vec::new();
                for _ in 0..EACH {
                    let env = Submission {
                        sender: "alice@example.com",
                        recipients: vec!["bob@example.org"],
                        auth_user: Some(&user),
                        queue_id: Some("QLOAD"),
                    };
                    let ans = c.message(&env, HAM.as_bytes()).unwrap();
                    // One final answer per message.
                    out.push(ans.action());
                }
                out
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    redis.kill();
    let all: Vec<&str> = answers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len(), THREADS * EACH);
    // fail = "open": every message scanned and delivered, none deferred.
    assert!(all.iter().all(|a| *a == "deliver"), "{all:?}");
    let m = scrape(&a);
    let delivered = metric(&m, "chaff_milter_messages_total{action=\"deliver\"}").unwrap();
    assert_eq!(delivered as usize, THREADS * EACH, "{m}");
    // Back: counting resumes in Redis.
    redis.spawn();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        send(a.addr(), Some("ivy"), HAM);
        if a.service().shared().unwrap().is_up()
            && !redis
                .cli(&["--scan", "--pattern", "chaff:{a:ivy}:r:*"])
                .is_empty()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counting did not resume in Redis"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a.shutdown();
}

#[test]
fn state_migrate_moves_locks_to_redis_and_back() {
    if missing_redis() {
        return;
    }
    let f = fixture();
    let redis = Redis::start(f.dir.path(), free_port());
    let config = f.dir.path().join("chaff.toml");
    write_toml(&config, &f.config, "");
    {
        let store = chaff_milter::accounts::AccountStore::open(&f.config.accounts.db).unwrap();
        assert!(store.lock("mallory", 1_000, "spam run").unwrap());
        assert!(store.lock("oscar", 2_000, "by hand").unwrap());
    }
    let chaff = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_chaff"))
            .arg("state")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let out = chaff(&["migrate", "--to", &redis.url()]);
    assert!(out.contains("2 of 2 locks copied"), "{out}");
    assert!(
        redis
            .cli(&["GET", "chaff:{a:mallory}:lock"])
            .contains("spam run")
    );
    assert_eq!(redis.cli(&["SCARD", "chaff:locks"]), "2");
    // Again: nothing new.
    assert!(chaff(&["migrate", "--to", &redis.url()]).contains("0 of 2"));
    // `chaff accounts` on the Redis backend.
    let shared = f.dir.path().join("shared.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[state]\n",
        &format!(
            "[ratelimit]\naccount = [{{ window = \"1m\", messages = 5 }}]\n\n[state]\nbackend = {:?}\n",
            redis.url()
        ),
    );
    std::fs::write(&shared, text).unwrap();
    let accounts = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_chaff"))
            .arg("accounts")
            .arg("--config")
            .arg(&shared)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    let (code, out) = accounts(&["list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("mallory") && out.contains("spam run"), "{out}");
    assert!(out.contains("0/5 messages per 60 s"), "{out}");
    assert_eq!(accounts(&["unlock", "Oscar"]).0, Some(0));
    assert_eq!(accounts(&["unlock", "oscar"]).0, Some(1));
    assert_eq!(accounts(&["lock", "oscar"]).0, Some(0));
    let (code, out) = accounts(&["limits", "oscar"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("account oscar  0/5 messages per 60 s"),
        "{out}"
    );
    assert_eq!(accounts(&["limits", "oscar", "--reset"]).0, Some(0));
    // And back, into a fresh store.
    std::fs::remove_file(&f.config.accounts.db).unwrap();
    let out = chaff(&["migrate", "--to", "embedded", "--from", &redis.url()]);
    assert!(out.contains("2 of 2 locks copied"), "{out}");
    let store = chaff_milter::accounts::AccountStore::open(&f.config.accounts.db).unwrap();
    let rows = store.list().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].1.locked_at, rows[0].1.reason.as_str()),
        (1_000, "spam run")
    );
}

#[test]
fn changes_journalled_while_redis_is_away_survive_a_restart() {
    if missing_redis() {
        return;
    }
    let f = fixture();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    // Redis not there at start: the service starts on its own memory.
    let a = service(&f, "a", &url, |_| {});
    let shared = a.service().shared().unwrap();
    assert!(!shared.is_up());
    assert_eq!(send(a.addr(), Some("kim"), HAM).0, "deliver");
    assert!(
        a.service()
            .locks()
            .unwrap()
            .lock("kim", 5, "while away")
            .unwrap()
    );
    assert_eq!(send(a.addr(), Some("kim"), HAM).0, "reject");
    assert_eq!(shared.journal_len(), 1);
    a.shutdown();
    // Redis comes; the restarted service writes the journal back at start.
    let redis = Redis::start(f.dir.path(), port);
    let a = service(&f, "a", &url, |_| {});
    assert!(a.service().shared().unwrap().is_up());
    assert_eq!(a.service().shared().unwrap().journal_len(), 0);
    assert!(
        redis
            .cli(&["GET", "chaff:{a:kim}:lock"])
            .contains("while away")
    );
    assert_eq!(send(a.addr(), Some("kim"), HAM).0, "reject");
    a.shutdown();
}
