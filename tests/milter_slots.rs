//! Connection slots and deadlines (issue 14): connections that never negotiate,
//! trickle a packet or sit idle must not keep a normal message from being answered,
//! and a new connection is never left waiting in the listen backlog.

mod milter_support;

use chaff_milter::client::{Client, POSTFIX_OFFER, Submission};
use chaff_milter::protocol::Command;
use milter_support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn raw_conn(addr: &str) -> TcpStream {
    TcpStream::connect(addr.strip_prefix("inet:").expect("inet address")).expect("connect")
}

/// True when the server closes `c` within `within` (anything it sends first is
/// read and dropped).
fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut b = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        c.set_read_timeout(Some(left)).expect("timeout");
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// A normal message on a new connection; returns how long it took to be answered,
/// or why it was not (each read waits 3 s at most).
fn timed_message(addr: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let mut c = Client::connect_with(addr, POSTFIX_OFFER, Duration::from_secs(3))
        .map_err(|e| format!("negotiation: {e}"))?;
    let sub = Submission {
        sender: "sender@example.com",
        recipients: vec!["rcpt@example.org"],
        auth_user: None,
        queue_id: Some("QSLOT"),
    };
    let a = c
        .message(&sub, HAM.as_bytes())
        .map_err(|e| format!("message: {e}"))?;
    let took = t.elapsed();
    if a.action() != "deliver" {
        return Err(format!("unexpected answer {a:?}"));
    }
    let _ = c.quit();
    Ok(took)
}

fn assert_answered_quickly(addr: &str) {
    match timed_message(addr) {
        Ok(took) => assert!(took < Duration::from_secs(1), "answered in {took:?}"),
        Err(e) => panic!("a normal message was not answered: {e}"),
    }
}

/// A negotiated connection that then sends the first byte of a packet announcing
/// `len` bytes; `trickle` sends the next one.
fn negotiated_trickler(addr: &str) -> TcpStream {
    let c = Client::connect_with(addr, POSTFIX_OFFER, Duration::from_secs(3)).expect("negotiate");
    let mut s = c.into_tcp().expect("tcp");
    s.write_all(&[0]).expect("first byte");
    s
}

/// Sends the `i`-th byte (from 1) of a packet announcing 1000 bytes of body.
fn trickle(s: &mut TcpStream, i: usize) -> std::io::Result<()> {
    let header = 1000u32.to_be_bytes();
    let b = header.get(i).copied().unwrap_or(b'B');
    s.write_all(&[b])
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

fn counter(h: &chaff_milter::server::ServerHandle, name: &str) -> f64 {
    metric(&scrape(h), name).unwrap_or(0.0)
}

#[test]
fn connections_that_never_negotiate_do_not_stop_scanning() {
    let mut f = fixture();
    f.config.milter.max_connections = 64;
    let h = start(&f.config);
    let idle: Vec<TcpStream> = (0..80).map(|_| raw_conn(h.addr())).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_answered_quickly(h.addr());
    let evicted = counter(
        &h,
        "chaff_milter_connections_evicted_total{reason=\"unnegotiated\"}",
    );
    assert!(evicted >= 17.0, "evicted {evicted}");
    drop(idle);
    h.shutdown();
}

#[test]
fn trickling_connections_do_not_stop_scanning() {
    let mut f = fixture();
    f.config.milter.max_connections = 64;
    let h = start(&f.config);
    let mut tricklers: Vec<TcpStream> = (0..64).map(|_| negotiated_trickler(h.addr())).collect();
    // A byte every 300 ms: each read is quick, the packet never completes.
    for i in 1..5 {
        std::thread::sleep(Duration::from_millis(300));
        for s in &mut tricklers {
            let _ = trickle(s, i);
        }
    }
    assert_answered_quickly(h.addr());
    let evicted = counter(
        &h,
        "chaff_milter_connections_evicted_total{reason=\"trickle\"}",
    );
    assert!(evicted >= 1.0, "evicted {evicted}");
    drop(tricklers);
    h.shutdown();
}

#[test]
fn a_long_idle_negotiated_connection_gives_its_slot_and_a_recent_one_keeps_it() {
    let mut f = fixture();
    f.config.milter.max_connections = 2;
    f.config.milter.evict_idle_after_secs = 1;
    let h = start(&f.config);
    let old = Client::connect(h.addr()).expect("old");
    std::thread::sleep(Duration::from_millis(1500));
    let mut recent = Client::connect(h.addr()).expect("recent");
    // Full: the old, idle connection makes room for the new one.
    assert_answered_quickly(h.addr());
    let mut old = old.into_tcp().expect("tcp");
    assert!(closed_within(&mut old, Duration::from_secs(2)));
    assert_eq!(
        counter(
            &h,
            "chaff_milter_connections_evicted_total{reason=\"idle\"}"
        ),
        1.0
    );
    // The recent one still works.
    let sub = Submission {
        sender: "a@example.com",
        recipients: vec!["b@example.org"],
        auth_user: None,
        queue_id: Some("QRECENT"),
    };
    assert_eq!(
        recent
            .message(&sub, HAM.as_bytes())
            .expect("recent")
            .action(),
        "deliver"
    );
    // Two recent connections hold both slots: a third is closed at once, not left
    // waiting in the backlog.
    let mut second = Client::connect(h.addr()).expect("second");
    let t = Instant::now();
    let mut third = raw_conn(h.addr());
    assert!(closed_within(&mut third, Duration::from_secs(2)));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let m = wait_metric(
        &h,
        "chaff_milter_connections_refused_total{reason=\"full\"}",
        1.0,
    );
    assert_eq!(
        metric(
            &m,
            "chaff_milter_connections_refused_total{reason=\"full\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // Both recent connections were kept.
    assert_eq!(
        second
            .message(&sub, HAM.as_bytes())
            .expect("second")
            .action(),
        "deliver"
    );
    assert_eq!(
        recent
            .message(&sub, HAM.as_bytes())
            .expect("recent")
            .action(),
        "deliver"
    );
    h.shutdown();
}

#[test]
fn negotiation_packet_and_message_deadlines_close_the_connection() {
    let mut f = fixture();
    f.config.milter.negotiate_timeout_secs = 1;
    f.config.milter.packet_timeout_secs = 1;
    f.config.milter.message_timeout_secs = 2;
    let h = start(&f.config);

    // Silent from the start: closed after the negotiation deadline.
    let mut silent = raw_conn(h.addr());
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(4)));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // A packet trickled a byte every 300 ms: closed after the packet deadline.
    let mut s = negotiated_trickler(h.addr());
    let t = Instant::now();
    let mut cut = false;
    for i in 1..20 {
        std::thread::sleep(Duration::from_millis(300));
        if trickle(&mut s, i).is_err() {
            cut = true;
            break;
        }
        s.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 16];
        let r = s.read(&mut b);
        s.set_nonblocking(false).expect("blocking");
        if matches!(r, Ok(0))
            || matches!(r, Err(ref e) if e.kind() != std::io::ErrorKind::WouldBlock)
        {
            cut = true;
            break;
        }
    }
    let waited = t.elapsed();
    assert!(cut, "a trickled packet was never cut");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // A message whose packets keep coming, each quickly, but never ends: closed
    // after the message deadline.
    let mut c = Client::connect(h.addr()).expect("connect");
    c.send(&Command::Mail(vec![b"<a@b>"])).expect("mail");
    let t = Instant::now();
    let mut cut = false;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(200));
        if c.send(&Command::Header {
            name: b"X-Slow",
            value: b" one more",
        })
        .is_err()
        {
            cut = true;
            break;
        }
        if t.elapsed() > Duration::from_millis(2500) {
            // Once past the deadline, the server must have closed: a read ends.
            cut = c.read_response().is_err();
            break;
        }
    }
    let waited = t.elapsed();
    assert!(cut, "a never-ending message was never cut");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let m = wait_metric(&h, "chaff_milter_errors_total{kind=\"timeout\"}", 3.0);
    assert_eq!(
        metric(&m, "chaff_milter_errors_total{kind=\"timeout\"}"),
        Some(3.0),
        "{m}"
    );
    h.shutdown();
}

#[test]
fn two_thousand_idle_and_trickling_connections_do_not_stop_scanning() {
    raise_fd_limit();
    let f = fixture();
    assert_eq!(f.config.milter.max_connections, 1024);
    let h = start(&f.config);
    let t = Instant::now();
    let mut tricklers: Vec<TcpStream> = (0..1000).map(|_| negotiated_trickler(h.addr())).collect();
    let idle: Vec<TcpStream> = (0..1000).map(|_| raw_conn(h.addr())).collect();
    for s in &mut tricklers {
        let _ = trickle(s, 1);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_answered_quickly(h.addr());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    drop(idle);
    drop(tricklers);
    h.shutdown();
}
