//! The `chaff milter` binary and the `chaff accounts` command sharing the lock
//! store (issue 14): the store file deleted under a running service, reading
//! commands on a mistyped path, a relative `--config` reloaded by SIGHUP.

mod milter_support;

use chaff_milter::client::{Client, Submission};
use milter_support::*;
use std::path::Path;
use std::process::{Child, Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

struct Service {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, config: &Path) -> Service {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let log = dir.join("milter.log");
    let child = Process::new(env!("CARGO_BIN_EXE_chaff"))
        .current_dir(dir)
        .arg("milter")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("inet:127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chaff milter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Service {
        child,
        addr: format!("inet:127.0.0.1:{port}"),
        log,
    }
}

fn action(addr: &str, user: &str) -> &'static str {
    let mut c = Client::connect(addr).unwrap();
    let env = Submission {
        sender: "a@example.com",
        recipients: vec!["b@example.org"],
        auth_user: Some(user),
        queue_id: Some("QACC"),
    };
    let a = c.message(&env, HAM.as_bytes()).unwrap();
    a.action()
}

fn accounts(config: &Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_chaff"))
        .arg("accounts")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_deleted_store_is_recreated_by_the_service_with_the_locks_it_holds() {
    let f = fixture();
    let config = f.dir.path().join("chaff.toml");
    write_toml(&config, &f.config, "");
    let svc = start(f.dir.path(), &config);
    let db = &f.config.accounts.db;
    assert!(accounts(&config, &["lock", "mallory"]).status.success());
    assert_eq!(action(&svc.addr, "mallory"), "reject");
    std::fs::remove_file(db).unwrap();
    // The service notices within a second of its next use of the store.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(action(&svc.addr, "mallory"), "reject");
    assert!(db.exists(), "the service did not recreate the store");
    let log = std::fs::read_to_string(&svc.log).unwrap();
    assert!(log.contains("lock store file changed"), "{log}");
    let list = accounts(&config, &["list"]);
    assert!(text(&list).contains("mallory"), "{}", text(&list));
    // The command and the service share the new file.
    assert!(accounts(&config, &["lock", "eve"]).status.success());
    assert_eq!(action(&svc.addr, "eve"), "reject");
    let unlock = accounts(&config, &["unlock", "mallory"]);
    assert!(unlock.status.success(), "{}", text(&unlock));
    assert_eq!(action(&svc.addr, "mallory"), "deliver");
}

#[test]
fn reading_commands_do_not_create_a_store() {
    let f = fixture();
    let config = f.dir.path().join("chaff.toml");
    write_toml(&config, &f.config, "");
    let typo = f.dir.path().join("typo/dir/accounts.redb");
    for args in [&["list"][..], &["list", "--all"], &["unlock", "bob"]] {
        let mut all = vec!["--db", typo.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = accounts(&config, &all);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("no lock store"), "{}", text(&out));
        assert!(!f.dir.path().join("typo").exists(), "{args:?} created it");
    }
    // `list` reads a store it may not write.
    assert!(accounts(&config, &["lock", "bob"]).status.success());
    let db = &f.config.accounts.db;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let list = accounts(&config, &["list"]);
    assert!(list.status.success(), "{}", text(&list));
    assert!(text(&list).contains("bob"), "{}", text(&list));
}

#[test]
fn sighup_with_a_relative_config_does_not_warn_that_the_db_changed() {
    let f = fixture();
    let mut config = f.config.clone();
    config.accounts.db = "accounts.redb".into();
    write_toml(&f.dir.path().join("chaff.toml"), &config, "");
    let svc = start(f.dir.path(), Path::new("chaff.toml"));
    let ok = Process::new("kill")
        .arg("-HUP")
        .arg(svc.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let l = std::fs::read_to_string(&svc.log).unwrap_or_default();
        if l.contains("configuration reloaded") {
            break l;
        }
        assert!(Instant::now() < deadline, "no reload:\n{l}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!log.contains("accounts.db changed"), "{log}");
}

#[test]
fn lock_keys_ignore_case_and_the_configured_realm() {
    let f = fixture();
    let config = f.dir.path().join("chaff.toml");
    write_toml(&config, &f.config, "");
    // `[accounts]` is the file's last table.
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("realm = \"example.com\"\n");
    std::fs::write(&config, toml).unwrap();
    let svc = start(f.dir.path(), &config);
    assert!(accounts(&config, &["lock", "mallory"]).status.success());
    for user in [
        "mallory",
        "MALLORY",
        "Mallory@Example.COM",
        "mallory@example.com",
    ] {
        assert_eq!(action(&svc.addr, user), "reject", "{user}");
    }
    // Another realm is another account.
    assert_eq!(action(&svc.addr, "mallory@example.org"), "deliver");
    let list = accounts(&config, &["list"]);
    assert!(text(&list).contains("mallory"), "{}", text(&list));
    let unlock = accounts(&config, &["unlock", "MALLORY@example.com"]);
    assert!(unlock.status.success(), "{}", text(&unlock));
    assert_eq!(action(&svc.addr, "Mallory"), "deliver");
}
