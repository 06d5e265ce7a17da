//! Sending-rate limits on the embedded backend (`[ratelimit]`, issue 12): the
//! limit's reply, the lock after repeated refusals, exemptions, and the counters
//! as the admin sees and resets them. (The Redis backend: `milter_redis.rs`.)

mod milter_support;

use chaff_milter::client::{Client, Submission};
use chaff_milter::state::ratelimit::{Measure, Subject, Window};
use milter_support::*;
use std::time::Duration;

fn send(addr: &str, user: &str, rcpts: Vec<&str>) -> (&'static str, Option<String>) {
    let mut c = Client::connect(addr).unwrap();
    let env = Submission {
        sender: "alice@example.com",
        recipients: rcpts,
        auth_user: Some(user),
        queue_id: Some("QRATE"),
    };
    let a = c.message(&env, HAM.as_bytes()).unwrap();
    (a.action(), a.reply())
}

#[test]
fn an_account_over_its_limit_is_deferred_then_locked_for_rate() {
    let mut f = fixture();
    f.config.ratelimit.account = vec![Window {
        window: Duration::from_secs(3600),
        messages: 3,
        recipients: 5,
    }];
    f.config.ratelimit.lock_after = 2;
    f.config.ratelimit.exempt_accounts = vec!["boss".into()];
    let h = start(&f.config);
    // Four recipients, then two: the second is over the recipient limit.
    assert_eq!(
        send(
            h.addr(),
            "carol",
            vec!["a@x.org", "b@x.org", "c@x.org", "d@x.org"]
        )
        .0,
        "deliver"
    );
    let (action, reply) = send(h.addr(), "carol", vec!["a@x.org", "b@x.org"]);
    assert_eq!(action, "tempfail");
    assert_eq!(
        reply.as_deref(),
        Some("451 4.7.1 sending rate limit exceeded, try again later")
    );
    let locks = h.service().locks().unwrap();
    let cfg = h.service().current().settings.ratelimit.clone();
    let usage = locks
        .usage(
            &cfg,
            Some(h.service().limiter()),
            &Subject::Account("carol".into()),
        )
        .unwrap();
    assert_eq!(
        usage,
        vec![
            (Duration::from_secs(3600), Measure::Messages, 1, 3),
            (Duration::from_secs(3600), Measure::Recipients, 4, 5)
        ]
    );
    // The second refusal locks her, as a spam sender is, for "rate".
    let (action, reply) = send(h.addr(), "carol", vec!["a@x.org", "b@x.org"]);
    assert_eq!(action, "reject");
    assert!(reply.unwrap().starts_with("557"));
    let lock = locks.lock_of("carol").unwrap().expect("locked");
    assert!(lock.reason.starts_with("rate:"), "{}", lock.reason);
    assert_eq!(send(h.addr(), "carol", vec!["a@x.org"]).0, "reject");
    // Exempt: never limited.
    for _ in 0..5 {
        assert_eq!(
            send(h.addr(), "boss", vec!["a@x.org", "b@x.org"]).0,
            "deliver"
        );
    }
    // Another account: its own counters; reset gives the limit back.
    for _ in 0..3 {
        assert_eq!(send(h.addr(), "dave", vec!["a@x.org"]).0, "deliver");
    }
    assert_eq!(send(h.addr(), "dave", vec!["a@x.org"]).0, "tempfail");
    locks
        .reset(
            &cfg,
            Some(h.service().limiter()),
            &Subject::Account("dave".into()),
        )
        .unwrap();
    assert_eq!(send(h.addr(), "dave", vec!["a@x.org"]).0, "deliver");
    let m = scrape(&h);
    assert_eq!(
        metric(&m, "chaff_milter_rate_limited_total"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "chaff_milter_messages_total{action=\"rate_limited\"}"),
        Some(2.0),
        "{m}"
    );
    h.shutdown();
}
