//! The milter service over real sockets, driven by chaff's MTA-side client speaking
//! as Postfix does: every action, the envelope, locked accounts, and peers that
//! misbehave (garbage, oversized packets, early disconnects, silence).

mod milter_support;

use chaff::{Engine, Envelope};
use chaff_milter::client::{Answer, Client, POSTFIX_OFFER, Submission};
use chaff_milter::protocol::{Command, OptNeg, Response, actions, proto};
use milter_support::*;
use std::io::Read;
use std::time::{Duration, Instant};

fn env<'a>(auth: Option<&'a str>, qid: &'a str) -> Submission<'a> {
    Submission {
        sender: "sender@example.com",
        recipients: vec!["rcpt@example.org"],
        auth_user: auth,
        queue_id: Some(qid),
    }
}

fn send(addr: &str, auth: Option<&str>, raw: &str) -> Answer {
    let mut c = Client::connect(addr).expect("connect");
    c.smtp_connect("client.test", "192.0.2.10")
        .expect("connect info");
    let a = c
        .message(&env(auth, "QTEST"), raw.as_bytes())
        .expect("message");
    let _ = c.quit();
    a
}

#[test]
fn deliver_quarantine_and_reject_with_the_exact_reply() {
    let f = fixture();
    let h = start(&f.config);
    let engine = Engine::new(&f.config.engine).unwrap();

    let ham = send(h.addr(), None, HAM);
    assert_eq!(ham.action(), "deliver", "{ham:?}");
    let want = engine.scan(HAM.as_bytes(), &Envelope::default());
    assert_eq!(
        ham.header("X-Spam-Score"),
        Some(&*format!("{:.2}", want.score))
    );
    let status = ham.header("X-Spam-Status").expect("status header");
    assert!(status.starts_with("No, score="), "{status}");

    let medium = send(h.addr(), None, MEDIUM);
    assert_eq!(medium.action(), "quarantine", "{medium:?}");
    assert!(medium.header("X-Spam-Status").unwrap().starts_with("Yes,"));
    let reason = medium.responses.iter().find_map(|r| match r {
        Response::Quarantine(t) => Some(t.clone()),
        _ => None,
    });
    assert!(reason.unwrap().starts_with("chaff: score "));

    let spam = send(h.addr(), None, SPAM);
    assert_eq!(spam.action(), "reject");
    assert_eq!(
        spam.last(),
        Some(&Response::ReplyCode(
            "557 5.7.1 forbid to send spam mail".into()
        ))
    );
    assert_eq!(spam.stage, "BODYEOB");

    let m = scrape(&h);
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"deliver\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"quarantine\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"reject\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "chaff_milter_scan_seconds_count"), Some(3.0));
    h.shutdown();
}

#[test]
fn negotiation_grants_what_chaff_needs_and_pipelines_the_envelope() {
    let f = fixture();
    let h = start(&f.config);
    let c = Client::connect(h.addr()).unwrap();
    let n = c.negotiated();
    assert_eq!(n.version, 6);
    for a in [
        actions::ADDHDRS,
        actions::CHGHDRS,
        actions::QUARANTINE,
        actions::SETSYMLIST,
    ] {
        assert!(n.actions & a != 0, "action {a:#x} not requested");
    }
    for p in [
        proto::NR_MAIL,
        proto::NR_RCPT,
        proto::NR_HDR,
        proto::NR_HELO,
    ] {
        assert!(n.protocol & p != 0, "flag {p:#x} not requested");
    }
    // HELO is sent (unanswered): the quarantine and the history record it.
    assert_eq!(n.protocol & proto::NOHELO, 0);
    assert!(
        c.requested_macros()
            .iter()
            .any(|(_, names)| names.contains("{auth_authen}"))
    );
    // An MTA that offers nothing optional (protocol version 2) is still served.
    let c = Client::connect_with(
        h.addr(),
        OptNeg {
            version: 2,
            actions: actions::ADDHDRS,
            protocol: 0,
        },
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(c.negotiated().version, 2);
    assert_eq!(c.negotiated().protocol, 0);
    let mut c = c;
    let a = c.message(&env(None, "Q2"), SPAM.as_bytes()).unwrap();
    assert_eq!(a.action(), "reject");
    h.shutdown();
}

#[test]
fn forged_status_headers_are_removed_before_chaff_adds_its_own() {
    let f = fixture();
    let h = start(&f.config);
    let forged = format!("X-Spam-Status: No, trust me\r\nX-Spam-Score: -100\r\n{HAM}");
    let a = send(h.addr(), None, &forged);
    assert_eq!(a.action(), "deliver");
    assert!(a.responses.contains(&Response::ChangeHeader {
        index: 1,
        name: "X-Spam-Status".into(),
        value: String::new()
    }));
    assert!(a.responses.contains(&Response::ChangeHeader {
        index: 1,
        name: "X-Spam-Score".into(),
        value: String::new()
    }));
    h.shutdown();
}

#[test]
fn percent_in_the_reply_is_doubled_on_the_wire() {
    let mut f = fixture();
    f.config.engine.reject_reply = "550 5.7.1 100% spam".parse().unwrap();
    let h = start(&f.config);
    let a = send(h.addr(), None, SPAM);
    assert_eq!(
        a.last(),
        Some(&Response::ReplyCode("550 5.7.1 100%% spam".into()))
    );
    assert_eq!(a.reply().as_deref(), Some("550 5.7.1 100% spam"));
    h.shutdown();
}

#[test]
fn an_account_that_keeps_sending_spam_is_locked_until_unlocked() {
    let f = fixture();
    let h = start(&f.config);
    for i in 0..3 {
        let a = send(h.addr(), Some("mallory"), SPAM);
        assert_eq!(a.action(), "reject", "spam {i}");
    }
    // Locked: even clean mail is refused with the reject reply.
    let a = send(h.addr(), Some("mallory"), HAM);
    assert_eq!(
        a.reply().as_deref(),
        Some("557 5.7.1 forbid to send spam mail")
    );
    // Other accounts and unauthenticated mail are not affected.
    assert_eq!(send(h.addr(), Some("alice"), HAM).action(), "deliver");
    assert_eq!(send(h.addr(), None, HAM).action(), "deliver");

    let store = h.service().store().unwrap();
    let locks = store.list().unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].0, "mallory");
    assert!(
        locks[0]
            .1
            .reason
            .starts_with("3 rejected messages within 3600 s; last: queue id QTEST")
    );
    let m = scrape(&h);
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"locked\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "chaff_milter_locked_accounts"), Some(1.0));

    // The admin command opens the same file while the service runs.
    let admin = chaff_milter::accounts::AccountStore::open(&f.config.accounts.db).unwrap();
    assert!(admin.unlock("mallory").unwrap());
    assert_eq!(send(h.addr(), Some("mallory"), HAM).action(), "deliver");
    h.shutdown();
}

/// Issue 14: an allow entry trusts no forged envelope sender, and an account
/// claiming an allowed sender is counted and locked as any other.
#[test]
fn allowed_senders_need_proof_and_accounts_are_judged_by_themselves() {
    let mut f = fixture();
    f.config.engine.allow = vec![chaff::config::AllowEntry::parse("sender@example.com").unwrap()];
    f.config.engine.authserv_ids = vec!["mx.site.test".into()];
    let h = start(&f.config);
    let signed = |id: &str| {
        format!("Authentication-Results: {id};\r\n\tdkim=pass header.d=example.com\r\n{SPAM}")
    };

    // A forged MAIL FROM:<sender@example.com>, or a header from outside: spam.
    assert_eq!(send(h.addr(), None, SPAM).action(), "reject");
    let foreign = send(h.addr(), None, &signed("mx.attacker.test"));
    assert_eq!(foreign.action(), "reject");
    // The site's MTA vouches for it: scanned, delivered, the status says why.
    let proven = send(h.addr(), None, &signed("mx.site.test"));
    assert_eq!(proven.action(), "deliver", "{proven:?}");
    let status = proven.header("X-Spam-Status").expect("status header");
    let status = status.replace("\n ", " ");
    assert!(status.starts_with("No, score="), "{status}");
    assert!(
        status.contains("allow=sender@example.com proof=dkim"),
        "{status}"
    );
    let score: f64 = proven.header("X-Spam-Score").unwrap().parse().unwrap();
    assert!(score >= f.config.engine.thresholds.reject, "{score}");

    // An authenticated account claiming the allowed sender is judged by itself.
    for i in 0..3 {
        let a = send(h.addr(), Some("mallory"), &signed("mx.site.test"));
        assert_eq!(a.action(), "reject", "spam {i}");
    }
    let a = send(h.addr(), Some("mallory"), HAM);
    assert_eq!(
        a.reply().as_deref(),
        Some("557 5.7.1 forbid to send spam mail")
    );
    let locks = h.service().store().unwrap().list().unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].0, "mallory");
    h.shutdown();
}

#[test]
fn oversize_mail_gets_552_at_the_chunk_that_crosses_the_limit() {
    let mut f = fixture();
    f.config.engine.max_message_size = 100_000;
    f.config.milter.refuse_oversize_early = true;
    let h = start(&f.config);
    let big = format!("{HAM}{}", "x".repeat(200) + "\r\n").repeat(2000);
    let a = send(h.addr(), None, &big);
    assert_eq!(a.stage, "BODY", "refused before end of message");
    assert_eq!(
        a.reply().as_deref(),
        Some("552 5.3.4 Message size exceeds fixed limit")
    );
    // The connection is still usable for the next message.
    let mut c = Client::connect(h.addr()).unwrap();
    assert_eq!(
        c.message(&env(None, "A"), big.as_bytes()).unwrap().stage,
        "BODY"
    );
    assert_eq!(
        c.message(&env(None, "B"), HAM.as_bytes()).unwrap().action(),
        "deliver"
    );
    let m = scrape(&h);
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"oversize\"}"),
        Some(2.0)
    );
    h.shutdown();
}

fn closed_by_server(c: &mut std::net::TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

fn raw_conn(addr: &str) -> std::net::TcpStream {
    std::net::TcpStream::connect(addr.strip_prefix("inet:").unwrap()).unwrap()
}

#[test]
fn by_default_oversize_mail_gets_552_at_end_of_message() {
    let mut f = fixture();
    f.config.engine.max_message_size = 100_000;
    let h = start(&f.config);
    let big = format!("{HAM}{}", "x".repeat(200) + "\r\n").repeat(2000);
    let a = send(h.addr(), None, &big);
    assert_eq!(a.stage, "BODYEOB");
    assert_eq!(
        a.reply().as_deref(),
        Some("552 5.3.4 Message size exceeds fixed limit")
    );
    h.shutdown();
}

#[test]
fn garbage_oversized_packets_and_early_disconnects_are_dropped_cleanly() {
    use std::io::Write;
    let f = fixture();
    let h = start(&f.config);

    // Random bytes: an unknown command is a protocol error; the peer is dropped.
    let mut c = raw_conn(h.addr());
    c.write_all(b"\0\0\0\x05Zjunk").unwrap();
    assert!(closed_by_server(&mut c));

    // HTTP instead of milter: the "length" is huge and is refused from its 4 bytes.
    let mut c = raw_conn(h.addr());
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut c));

    // A packet announcing 100 MB is refused before any of it is read.
    let mut c = raw_conn(h.addr());
    c.write_all(&100_000_000u32.to_be_bytes()).unwrap();
    c.write_all(b"B").unwrap();
    assert!(closed_by_server(&mut c));

    // A malformed but known command.
    let mut c = Client::connect(h.addr()).unwrap();
    c.send_raw(b"\0\0\0\x03Mab").unwrap(); // MAIL without its NUL
    assert!(c.read_response().is_err());

    // A command before negotiation.
    let mut c = raw_conn(h.addr());
    let mut out = Vec::new();
    Command::Data.encode(&mut out);
    c.write_all(&out).unwrap();
    assert!(closed_by_server(&mut c));

    // Disconnect in the middle of a message, and in the middle of a packet.
    let mut c = Client::connect(h.addr()).unwrap();
    c.queue(&Command::Mail(vec![b"<a@b>"]));
    c.queue(&Command::Header {
        name: b"Subject",
        value: b" half a message",
    });
    c.flush().unwrap();
    drop(c);
    let mut c = raw_conn(h.addr());
    c.write_all(b"\0\0\0\x0dO\0\0\0").unwrap();
    drop(c);

    // The service keeps serving.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(send(h.addr(), None, SPAM).action(), "reject");
    let m = wait_metric(&h, "chaff_milter_connections_active", 0.0);
    assert!(
        metric(&m, "chaff_milter_errors_total{kind=\"protocol\"}").unwrap() >= 5.0,
        "{m}"
    );
    assert!(
        metric(&m, "chaff_milter_errors_total{kind=\"disconnect\"}").unwrap() >= 2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "chaff_milter_connections_active"), Some(0.0));
    h.shutdown();
}

#[test]
fn a_silent_peer_is_dropped_after_the_read_timeout() {
    let mut f = fixture();
    f.config.milter.read_timeout_secs = 1;
    let h = start(&f.config);
    // Negotiated, then silent (a connection that never negotiates has its own,
    // shorter deadline: tests/milter_slots.rs).
    let c = Client::connect(h.addr()).unwrap();
    let mut c = c.into_tcp().unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut c));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    let m = wait_metric(&h, "chaff_milter_errors_total{kind=\"timeout\"}", 1.0);
    assert_eq!(
        metric(&m, "chaff_milter_errors_total{kind=\"timeout\"}"),
        Some(1.0)
    );
    h.shutdown();
}

#[test]
fn a_scan_over_its_time_limit_gets_the_fallback_answer() {
    let mut f = fixture();
    f.config.milter.scan_timeout_ms = 1;
    f.config.milter.fallback = chaff_milter::config::Fallback::Tempfail;
    let h = start(&f.config);
    // Several megabytes of text take far longer than a millisecond to scan.
    let big = format!(
        "{SPAM}{}",
        "代开发票，优惠特价，免费咨询。\r\n".repeat(150_000)
    );
    let t = Instant::now();
    let a = send(h.addr(), None, &big);
    assert_eq!(a.last(), Some(&Response::Tempfail), "{:?}", a.last());
    assert!(t.elapsed() < Duration::from_secs(10));
    // The service still answers normally afterwards (a small message may still be
    // within 1 ms; either way it is answered, never hung).
    let a = send(h.addr(), None, HAM);
    assert!(matches!(a.action(), "deliver" | "tempfail"));
    let m = scrape(&h);
    assert!(metric(&m, "chaff_milter_messages_total{action=\"fallback\"}").unwrap() >= 1.0);
    assert!(metric(&m, "chaff_milter_errors_total{kind=\"scan\"}").unwrap() >= 1.0);
    h.shutdown();
}

#[test]
fn reload_swaps_the_configuration_and_refuses_a_broken_one() {
    let f = fixture();
    let path = f.dir.path().join("chaff.toml");
    write_toml(&path, &f.config, "");
    let config = chaff_milter::ServiceConfig::load(&path).unwrap();
    let h = start_with(&config, Some(&path), true);
    assert_eq!(send(h.addr(), None, MEDIUM).action(), "quarantine");

    // New thresholds and header name: both apply to the next message.
    let mut changed = f.config.clone();
    changed.engine.thresholds.quarantine = f.scores[2] + 1.0;
    changed.engine.thresholds.reject = f.scores[2] + 2.0;
    write_toml(&path, &changed, "score_header = \"X-Chaff-Score\"");
    h.reload().expect("reload");
    let a = send(h.addr(), None, SPAM);
    assert_eq!(a.action(), "deliver");
    assert!(a.header("X-Chaff-Score").is_some());

    // A broken file is refused; the previous configuration keeps serving.
    std::fs::write(&path, "[thresholds]\nquarantine = \"high\"\n").unwrap();
    let e = h.reload().unwrap_err();
    assert!(e.contains("chaff.toml"), "{e}");
    write_toml(&path, &changed, "score_header = \"bad header\"");
    let e = h.reload().unwrap_err();
    assert!(e.contains("milter.score_header"), "{e}");
    assert!(send(h.addr(), None, SPAM).header("X-Chaff-Score").is_some());
    let m = scrape(&h);
    assert_eq!(metric(&m, "chaff_milter_reloads_total"), Some(1.0));
    assert_eq!(metric(&m, "chaff_milter_reload_failures_total"), Some(2.0));
    h.shutdown();
}

#[test]
fn shutdown_lets_the_message_in_flight_finish() {
    let f = fixture();
    let h = start_with(&f.config, None, false);
    let addr = h.addr().to_string();
    let mut c = Client::connect(&addr).unwrap();
    c.queue(&Command::Mail(vec![b"<a@b>"]));
    c.queue(&Command::Header {
        name: b"Subject",
        value: b" test",
    });
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let stopper = std::thread::spawn(move || h.shutdown());
    std::thread::sleep(Duration::from_millis(200));
    // New connections are no longer accepted...
    assert!(
        Client::connect_with(&addr, POSTFIX_OFFER, Duration::from_millis(500)).is_err(),
        "accepted a new connection while draining"
    );
    // ...but the message in flight is answered.
    assert_eq!(
        c.command(&Command::Eoh).unwrap(),
        None,
        "no reply asked for"
    );
    c.queue(&Command::Body(b"hello\r\n"));
    c.queue(&Command::Eob(b""));
    let mut last = c.read_response().unwrap();
    while !last.is_final() {
        last = c.read_response().unwrap();
    }
    assert_eq!(last, Response::Continue);
    // Then the connection is closed and the service stops.
    assert!(c.read_response().is_err());
    stopper.join().unwrap();
}

#[test]
fn many_connections_at_once_each_get_their_own_verdicts() {
    let f = fixture();
    let h = start(&f.config);
    let addr = h.addr().to_string();
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr).unwrap();
                c.smtp_connect("client.test", "192.0.2.1").unwrap();
                for i in 0..15 {
                    let (raw, want) =
                        [(HAM, "deliver"), (MEDIUM, "quarantine"), (SPAM, "reject")][(t + i) % 3];
                    let qid = format!("Q{t}x{i}");
                    let a = c.message(&env(None, &qid), raw.as_bytes()).unwrap();
                    assert_eq!(a.action(), want, "{qid}");
                }
                c.quit().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = scrape(&h);
    let total: f64 = ["deliver", "quarantine", "reject"]
        .iter()
        .map(|a| {
            metric(
                &m,
                &format!("chaff_milter_messages_total{{action=\"{a}\"}}"),
            )
            .unwrap()
        })
        .sum();
    assert_eq!(total, 32.0 * 15.0);
    h.shutdown();
}

#[test]
fn a_large_message_being_scanned_does_not_stall_other_connections() {
    let mut f = fixture();
    // Every connection on one network thread: the small messages below share it
    // with the large one, which goes to the scan threads.
    f.config.milter.network_threads = 1;
    let h = start(&f.config);
    let big = format!(
        "{SPAM}{}",
        "代开发票，优惠特价，免费咨询。\r\n".repeat(150_000)
    );
    assert!(big.len() > f.config.milter.inline_scan_max_bytes);
    let len = big.len() as f64;
    let addr = h.addr().to_string();
    let large = std::thread::spawn(move || send(&addr, None, &big).action());
    // Once all of it is buffered, it is being scanned (for a second or more in a
    // debug build) until it is answered.
    let buffered = wait_metric_at_least(&h, "chaff_milter_buffered_bytes", len * 0.99);
    assert!(buffered >= len * 0.99, "{buffered}");
    let mut c = Client::connect(h.addr()).unwrap();
    c.smtp_connect("client.test", "192.0.2.11").unwrap();
    for (i, (raw, want)) in [(HAM, "deliver"), (MEDIUM, "quarantine"), (SPAM, "reject")]
        .into_iter()
        .enumerate()
    {
        let a = c
            .message(&env(None, &format!("S{i}")), raw.as_bytes())
            .unwrap();
        assert_eq!(a.action(), want);
    }
    assert!(
        !large.is_finished(),
        "the large message was answered before the small ones: the test proves nothing"
    );
    c.quit().unwrap();
    assert_eq!(large.join().unwrap(), "reject");
    h.shutdown();
}

#[test]
fn inline_and_scan_thread_answers_are_the_same() {
    let f = fixture();
    let mut pooled = f.config.clone();
    pooled.milter.inline_scan_max_bytes = 0;
    let (inline, pooled) = (start(&f.config), start(&pooled));
    for raw in [HAM, MEDIUM, SPAM] {
        let (a, b) = (
            send(inline.addr(), None, raw),
            send(pooled.addr(), None, raw),
        );
        assert_eq!(a.responses, b.responses);
    }
    inline.shutdown();
    pooled.shutdown();
}

#[test]
fn unix_socket_listener() {
    use chaff_milter::server::{ListenAddr, ServeOptions, spawn};
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let sock = f.dir.path().join("milter.sock");
    // A stale socket from a previous run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let h = spawn(
        &f.config,
        ServeOptions {
            listen: ListenAddr::Unix(sock.clone()),
            metrics: None,
            config_path: None,
            http: None,
        },
    )
    .unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let mut c = Client::connect(&format!("unix:{}", sock.display())).unwrap();
    assert_eq!(
        c.message(&env(None, "U1"), SPAM.as_bytes())
            .unwrap()
            .action(),
        "reject"
    );
    drop(c);
    h.shutdown();
    assert!(!sock.exists(), "socket left behind");
}

/// Starts a message of `body_bytes` bytes of body on a new connection and leaves it
/// unfinished, so its bytes stay buffered in the milter.
fn hold_message(addr: &str, body_bytes: usize) -> Client {
    let mut c = Client::connect(addr).unwrap();
    let leadspc = c.negotiated().protocol & proto::HDR_LEADSPC != 0;
    let subject: &[u8] = if leadspc { b" held" } else { b"held" };
    let body = "x".repeat(78) + "\r\n";
    let body = body.repeat(body_bytes / body.len());
    for cmd in [
        Command::Mail(vec![b"<held@example.com>"]),
        Command::Header {
            name: b"Subject",
            value: subject,
        },
        Command::Eoh,
        Command::Body(body.as_bytes()),
    ] {
        let r = c.command(&cmd).unwrap();
        assert!(matches!(r, None | Some(Response::Continue)), "{r:?}");
    }
    c.flush().unwrap();
    c
}

/// Scrapes until `name` is at least `want`, for up to five seconds.
fn wait_metric_at_least(h: &chaff_milter::server::ServerHandle, name: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = metric(&scrape(h), name).unwrap_or(0.0);
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connections that together buffer more than `max_buffered_bytes`: the message
/// that would go over gets the 451 TEMPFAIL (at end of message, or with
/// `refuse_oversize_early` at the body chunk that crossed), the others are served,
/// and once they finish, or their connection drops, the budget is back.
fn buffer_budget(early: bool) {
    let mut f = fixture();
    f.config.engine.max_message_size = 100_000;
    f.config.milter.max_buffered_bytes = 150_000;
    f.config.milter.refuse_oversize_early = early;
    let h = start(&f.config);
    let busy = "451 4.3.2 chaff: too much mail in flight, try again later";

    // Two connections hold 60 KB each.
    let mut a = hold_message(h.addr(), 60_000);
    let b = hold_message(h.addr(), 60_000);
    let held = wait_metric_at_least(&h, "chaff_milter_buffered_bytes", 120_000.0);
    assert!((120_000.0..121_000.0).contains(&held), "{held}");

    // A third message of 40 KB does not fit: deferred, not lost.
    let forty = format!("{HAM}{}", ("y".repeat(78) + "\r\n").repeat(500));
    let mut c = Client::connect(h.addr()).unwrap();
    let answer = c.message(&env(None, "QBUSY"), forty.as_bytes()).unwrap();
    assert_eq!(answer.action(), "tempfail", "{answer:?}");
    assert_eq!(answer.reply().as_deref(), Some(busy));
    assert_eq!(answer.stage, if early { "BODY" } else { "BODYEOB" });
    let m = scrape(&h);
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"busy\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "chaff_milter_buffered_bytes"), Some(held));
    assert_eq!(
        metric(&m, "chaff_milter_max_buffered_bytes"),
        Some(150_000.0)
    );

    // One held message finishes (and is delivered), the other's connection drops.
    a.queue(&Command::Eob(b""));
    let mut last = a.read_response().unwrap();
    while !last.is_final() {
        last = a.read_response().unwrap();
    }
    assert_eq!(last, Response::Continue);
    drop(b);
    let m = wait_metric(&h, "chaff_milter_buffered_bytes", 0.0);
    assert_eq!(metric(&m, "chaff_milter_buffered_bytes"), Some(0.0), "{m}");

    // The budget is back: the same message on the same connection goes through.
    let answer = c.message(&env(None, "QRETRY"), forty.as_bytes()).unwrap();
    assert_eq!(answer.action(), "deliver", "{answer:?}");
    assert!(answer.header("X-Spam-Score").is_some());
    let m = wait_metric(&h, "chaff_milter_buffered_bytes", 0.0);
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"busy\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"deliver\"}"),
        Some(2.0)
    );
    assert_eq!(metric(&m, "chaff_milter_buffered_bytes"), Some(0.0));
    h.shutdown();
}

#[test]
fn mail_over_the_buffer_budget_gets_451_at_end_of_message_and_the_budget_comes_back() {
    buffer_budget(false);
}

#[test]
fn answered_early_mail_over_the_buffer_budget_gets_451_at_its_chunk() {
    buffer_budget(true);
}

/// A model trained on the repository's corpus (`corpus/index`), saved in `dir`.
fn corpus_model(dir: &std::path::Path) -> std::path::PathBuf {
    use chaff::classify::ClassifierConfig;
    use chaff_train::{Trainer, prepare};
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let engine = Engine::new(&chaff::Config::default()).unwrap();
    let cfg = ClassifierConfig {
        bits: 18,
        ..ClassifierConfig::default()
    };
    let mut trainer = Trainer::new(&cfg);
    let index = std::fs::read_to_string(corpus.join("index")).unwrap();
    for (label, path) in index.lines().filter_map(|l| l.split_once(' ')) {
        let raw = std::fs::read(corpus.join(path.trim())).unwrap();
        trainer.add(prepare(
            &engine,
            &cfg.feature_config(),
            &raw,
            label == "spam",
        ));
    }
    let model = trainer.finish(engine.keywords()).0;
    let path = dir.join("chaff.model");
    chaff::classify::format::save(&model, &path).unwrap();
    path
}

/// A header value as a mail reader shows it: unfolded, RFC 2047 words decoded
/// (leniently, also right after `key=`), the space between two encoded words
/// dropped; chaff's own header decoder reads it that way.
fn shown(value: &str) -> String {
    chaff::decode::header::decode(value.as_bytes())
}

#[test]
fn with_a_model_the_status_header_names_the_classifiers_tokens() {
    use chaff_milter::client::as_milter_sees;
    use chaff_milter::policy::status_value;
    let mut f = fixture();
    f.config.engine.model = Some(corpus_model(f.dir.path()));
    // Everything is delivered, so every verdict comes back as headers.
    f.config.engine.thresholds.quarantine = 1000.0;
    f.config.engine.thresholds.reject = 2000.0;
    let h = start(&f.config);
    let engine = Engine::new(&f.config.engine).unwrap();
    for (raw, way) in [(SPAM, ":+"), (HAM, ":-")] {
        let a = send(h.addr(), None, raw);
        assert_eq!(a.action(), "deliver", "{a:?}");
        let status = a.header("X-Spam-Status").expect("status header");
        // What the engine says of the message as Postfix hands it over, with the
        // default three tokens each way, folded into lines of at most 78.
        let v = engine.scan(&as_milter_sees(raw.as_bytes()), &Envelope::default());
        assert!(!v.tokens.is_empty(), "the model explains nothing: {v:?}");
        assert_eq!(status.replace('\n', ""), status_value(&v, 5, 3));
        let lines: Vec<&str> = status.split('\n').collect();
        assert!("X-Spam-Status: ".len() + lines[0].len() <= 78, "{status}");
        assert!(
            lines[1..]
                .iter()
                .all(|l| l.starts_with(' ') && l.len() <= 78)
        );
        // Read as a mail reader shows it, tokens weigh the right way.
        let shown = shown(status);
        let tokens = shown.split(" tokens=").nth(1).expect("tokens listed");
        assert!(
            tokens.split(' ').any(|t| t.contains(way)),
            "no {way} token: {shown}"
        );
        let n = tokens.split(' ').count();
        assert!((1..=6).contains(&n), "{shown}");
    }
    h.shutdown();
}

#[test]
fn a_refused_model_replacement_is_counted_once_and_the_old_model_keeps_serving() {
    let mut f = fixture();
    let path = corpus_model(f.dir.path());
    f.config.engine.model = Some(path.clone());
    f.config.engine.classifier.reload_interval_ms = 0;
    let h = start(&f.config);
    let before = send(h.addr(), None, SPAM);
    assert_eq!(
        metric(&scrape(&h), "chaff_milter_model_refusals_total"),
        Some(0.0)
    );
    // A broken file replaces the model: refused, counted once however many
    // messages follow, and the verdicts stay those of the previous model.
    std::fs::write(&path, b"not a model").unwrap();
    for _ in 0..3 {
        let after = send(h.addr(), None, SPAM);
        assert_eq!(after.action(), before.action());
        assert_eq!(after.header("X-Spam-Score"), before.header("X-Spam-Score"));
    }
    assert_eq!(
        metric(&scrape(&h), "chaff_milter_model_refusals_total"),
        Some(1.0)
    );
    h.shutdown();
}
