//! The service at its edges (issue 14): a second instance on a live Unix socket.

mod milter_support;

use chaff_milter::client::{Client, Submission};
use chaff_milter::server::{self, ListenAddr, ServeOptions};
use milter_support::*;

fn submission() -> Submission<'static> {
    Submission {
        sender: "a@example.com",
        recipients: vec!["b@example.org"],
        auth_user: None,
        queue_id: Some("QEDGE"),
    }
}

#[test]
fn a_second_instance_on_a_live_unix_socket_refuses_to_start() {
    let f = fixture();
    let sock = f.dir.path().join("milter.sock");
    let opts = ServeOptions {
        listen: ListenAddr::Unix(sock.clone()),
        metrics: None,
        config_path: None,
    };
    let first = server::spawn(&f.config, opts.clone()).expect("first starts");
    let e = server::spawn(&f.config, opts.clone())
        .map(|_| ())
        .expect_err("the second must not start");
    assert!(e.to_string().contains("already running"), "{e}");
    // The first still answers on its socket.
    let addr = format!("unix:{}", sock.display());
    let mut c = Client::connect(&addr).unwrap();
    assert_eq!(
        c.message(&submission(), HAM.as_bytes()).unwrap().action(),
        "deliver"
    );
    drop(c);
    first.shutdown();
    // A socket nothing answers on (left by a crash) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(f.dir.path().join("stale.sock")).unwrap();
    drop(stale);
    let again = server::spawn(
        &f.config,
        ServeOptions {
            listen: ListenAddr::Unix(f.dir.path().join("stale.sock")),
            ..opts
        },
    )
    .expect("a stale socket is replaced");
    again.shutdown();
}
