//! One hand-written sample per format (crates/engine/tests/bounces/, no real
//! person's mail), each explained with its cause, codes and server.

use super::*;
use proptest::prelude::*;

macro_rules! sample {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/bounces/", $name))
    };
}

/// Every sample, for the benchmark-like and property tests.
pub(crate) const SAMPLES: &[(&str, &[u8])] = &[
    (
        "postfix-dsn-unknown-user.eml",
        sample!("postfix-dsn-unknown-user.eml"),
    ),
    ("chaff-557-dsn.eml", sample!("chaff-557-dsn.eml")),
    ("chaff-552-dsn.eml", sample!("chaff-552-dsn.eml")),
    ("postfix-text-relay.eml", sample!("postfix-text-relay.eml")),
    ("exim-mailbox-full.eml", sample!("exim-mailbox-full.eml")),
    (
        "sendmail-unknown-user.eml",
        sample!("sendmail-unknown-user.eml"),
    ),
    ("exchange-ndr.eml", sample!("exchange-ndr.eml")),
    ("qmail-too-big.eml", sample!("qmail-too-big.eml")),
    ("tentatives.eml", sample!("tentatives.eml")),
    ("chinese-html.eml", sample!("chinese-html.eml")),
    ("chinese-auth.eml", sample!("chinese-auth.eml")),
    ("dsn-unknown-status.eml", sample!("dsn-unknown-status.eml")),
    ("control-chars.eml", sample!("control-chars.eml")),
    ("not-a-bounce.eml", sample!("not-a-bounce.eml")),
    (
        "postfix-real-unknown-user.eml",
        sample!("postfix-real-unknown-user.eml"),
    ),
    ("postfix-real-relay.eml", sample!("postfix-real-relay.eml")),
    (
        "postfix-real-size-limit.eml",
        sample!("postfix-real-size-limit.eml"),
    ),
    (
        "postfix-real-chaff-552.eml",
        sample!("postfix-real-chaff-552.eml"),
    ),
    (
        "postfix-real-chaff-557.eml",
        sample!("postfix-real-chaff-557.eml"),
    ),
];

fn explain(raw: &[u8], lang: Lang) -> Explanation {
    let kb = KnowledgeBase::embedded();
    Explainer::new(&kb, lang).explain(raw)
}

/// (format, address, reply, status, remote MTA, cause id) of the only recipient.
fn one(raw: &[u8]) -> (String, Explanation) {
    let e = explain(raw, Lang::En);
    assert!(e.bounce, "{e:?}");
    assert_eq!(e.recipients.len(), 1, "{e:#?}");
    (e.format.clone(), e)
}

#[track_caller]
fn check(
    raw: &[u8],
    format: &str,
    address: Option<&str>,
    reply: Option<&str>,
    status: Option<&str>,
    remote: Option<&str>,
    cause: &str,
) -> Explanation {
    let (f, e) = one(raw);
    let r = &e.recipients[0];
    assert_eq!(f, format, "{e:#?}");
    assert_eq!(r.address.as_deref(), address, "{e:#?}");
    assert_eq!(r.reply.as_deref(), reply, "{e:#?}");
    assert_eq!(r.status.as_deref(), status, "{e:#?}");
    assert_eq!(r.remote_mta.as_deref(), remote, "{e:#?}");
    assert_eq!(r.cause_id, cause, "{e:#?}");
    e
}

#[test]
fn postfix_dsn() {
    let e = check(
        sample!("postfix-dsn-unknown-user.eml"),
        "dsn",
        Some("nobody@example.org"),
        Some("550"),
        Some("5.1.1"),
        Some("mx.example.org"),
        "unknown-user",
    );
    assert_eq!(e.reporting_mta.as_deref(), Some("mx.example.net"));
    assert_eq!(e.original_subject.as_deref(), Some("产品报价单"));
    assert_eq!(
        e.original_date.as_deref(),
        Some("Tue, 3 Mar 2026 10:15:00 +0800")
    );
    let r = &e.recipients[0];
    assert!(r.known);
    assert_eq!(r.who, Who::Sender);
    assert!(
        r.diagnostic
            .contains("User unknown in virtual mailbox table")
    );
}

/// Written by Postfix 3.7 in tests/bounce_postfix.rs (`CHAFF_KEEP_BOUNCES=DIR`).
#[test]
fn real_postfix_notifications() {
    for (raw, address, reply, status, cause) in [
        (
            &sample!("postfix-real-unknown-user.eml")[..],
            "nobody@example.org",
            Some("550"),
            "5.1.1",
            "unknown-user",
        ),
        (
            sample!("postfix-real-relay.eml"),
            "someone@elsewhere.test",
            Some("554"),
            "5.7.1",
            "relay-denied",
        ),
        (
            sample!("postfix-real-size-limit.eml"),
            "c@example.org",
            None,
            "5.3.4",
            "message-too-large",
        ),
        (
            sample!("postfix-real-chaff-552.eml"),
            "d@example.org",
            Some("552"),
            "5.3.4",
            "message-too-large",
        ),
        (
            sample!("postfix-real-chaff-557.eml"),
            "b@example.org",
            Some("557"),
            "5.7.1",
            "spam-account-locked",
        ),
    ] {
        let e = check(
            raw,
            "dsn",
            Some(address),
            reply,
            Some(status),
            Some("127.0.0.1"),
            cause,
        );
        assert_eq!(e.reporting_mta.as_deref(), Some("sender.localdomain"));
        assert!(
            e.original_subject.is_some() && e.original_date.is_some(),
            "{e:#?}"
        );
    }
}

#[test]
fn chaffs_own_replies() {
    let e = check(
        sample!("chaff-557-dsn.eml"),
        "dsn",
        Some("carol@example.org"),
        Some("557"),
        Some("5.7.1"),
        Some("mx.example.org"),
        "spam-account-locked",
    );
    assert_eq!(e.original_subject.as_deref(), Some("Cheap offer"));
    assert!(e.recipients[0].fix.contains("password"));
    check(
        sample!("chaff-552-dsn.eml"),
        "dsn",
        Some("dave@example.org"),
        Some("552"),
        Some("5.3.4"),
        Some("mx.example.org"),
        "message-too-large",
    );
}

#[test]
fn free_text_forms() {
    let e = check(
        sample!("postfix-text-relay.eml"),
        "postfix",
        Some("erin@elsewhere.example"),
        Some("554"),
        Some("5.7.1"),
        Some("mail.example.com"),
        "relay-denied",
    );
    assert_eq!(e.reporting_mta.as_deref(), Some("relay.example.net"));
    assert_eq!(
        e.recipients[0].diagnostic,
        "554 5.7.1 <erin@elsewhere.example>: Relay access denied (in reply to RCPT TO command)"
    );
    let e = check(
        sample!("exim-mailbox-full.eml"),
        "exim",
        Some("grace@example.org"),
        Some("552"),
        Some("5.2.2"),
        Some("mx1.example.org"),
        "mailbox-full",
    );
    assert_eq!(e.original_subject.as_deref(), Some("Holiday photos"));
    assert_eq!(e.recipients[0].who, Who::Recipient);
    let e = check(
        sample!("sendmail-unknown-user.eml"),
        "sendmail",
        Some("ivan@example.org"),
        Some("550"),
        Some("5.1.1"),
        Some("mx.example.org"),
        "unknown-user",
    );
    assert_eq!(
        e.recipients[0].diagnostic,
        "550 5.1.1 <ivan@example.org>... User unknown"
    );
    assert_eq!(e.original_subject.as_deref(), Some("Meeting notes"));
    let e = check(
        sample!("exchange-ndr.eml"),
        "exchange",
        Some("mallory@example.org"),
        Some("550"),
        Some("5.1.10"),
        Some("EXCH01.example.net"),
        "unknown-user",
    );
    assert_eq!(e.original_subject.as_deref(), Some("Quarterly report"));
    assert!(e.recipients[0].diagnostic.ends_with("lookup"), "{e:#?}");
    let e = check(
        sample!("qmail-too-big.eml"),
        "qmail",
        Some("oscar@example.org"),
        Some("552"),
        None,
        Some("198.51.100.77"),
        "message-too-large",
    );
    assert_eq!(
        e.original_date.as_deref(),
        Some("Sun, 8 Mar 2026 07:00:00 +0000")
    );
    check(
        sample!("tentatives.eml"),
        "generic",
        Some("trent@example.invalid.example"),
        None,
        None,
        None,
        "domain-or-network",
    );
}

#[test]
fn chinese_pages() {
    let e = check(
        sample!("chinese-html.eml"),
        "chinese-html",
        Some("victor@example.org"),
        Some("550"),
        None,
        Some("mx.example.org"),
        "unknown-user",
    );
    assert_eq!(e.original_subject.as_deref(), Some("合同草稿"));
    assert_eq!(e.original_date.as_deref(), Some("2026-03-09 14:20:11"));
    let zh = explain(sample!("chinese-html.eml"), Lang::Zh);
    assert!(
        zh.recipients[0].cause.contains("收件人地址不存在"),
        "{zh:#?}"
    );
    assert_eq!(zh.recipients[0].who_text, "发件人");
    let e = check(
        sample!("chinese-auth.eml"),
        "chinese-html",
        Some("walter@example.org"),
        Some("503"),
        None,
        None,
        "auth-failed",
    );
    assert_eq!(e.original_subject.as_deref(), Some("周报"));
}

#[test]
fn unknown_causes_fall_back_on_the_status_code() {
    let e = check(
        sample!("dsn-unknown-status.eml"),
        "dsn",
        Some("xavier@example.org"),
        Some("554"),
        Some("5.6.9"),
        None,
        "status-5",
    );
    let r = &e.recipients[0];
    assert!(!r.known);
    assert!(r.cause.starts_with("Permanent failure"), "{}", r.cause);
    assert!(r.cause.contains("content"), "{}", r.cause);
    assert!(r.cause.contains("not in the knowledge base"), "{}", r.cause);
    let zh = explain(sample!("dsn-unknown-status.eml"), Lang::Zh);
    assert!(zh.recipients[0].cause.contains("知识库中没有"), "{zh:#?}");
}

#[test]
fn not_a_bounce_and_garbage() {
    for raw in [
        &sample!("not-a-bounce.eml")[..],
        b"",
        b"\xff\xfe\x00garbage",
        b"Subject: Undelivered Mail Returned to Sender\r\n\r\nNo details at all.\r\n",
    ] {
        let e = explain(raw, Lang::En);
        assert!(!e.bounce, "{e:#?}");
        assert!(e.recipients.is_empty());
    }
}

#[test]
fn control_characters_are_escaped() {
    let e = explain(sample!("control-chars.eml"), Lang::En);
    let d = &e.recipients[0].diagnostic;
    assert!(d.contains("\\u{1b}[31mred"), "{d}");
    assert!(d.contains("\\u{202e}evil"), "{d}");
    assert!(!d.chars().any(char::is_control));
    assert_eq!(
        clean(&"x".repeat(1000)).chars().count(),
        MAX_FIELD_CHARS + 1
    );
}

#[test]
fn every_sample_is_read_as_expected() {
    for (name, raw) in SAMPLES {
        let e = explain(raw, Lang::Zh);
        assert_eq!(e.bounce, *name != "not-a-bounce.eml", "{name}");
        for r in &e.recipients {
            assert!(!r.cause.is_empty() && !r.fix.is_empty(), "{name}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn explaining_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let e = explain(&bytes, Lang::En);
        for r in &e.recipients {
            prop_assert!(!r.diagnostic.chars().any(char::is_control));
        }
    }

    #[test]
    fn mutated_samples_never_panic(
        which in 0..SAMPLES.len(),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        truncate in any::<prop::sample::Index>(),
    ) {
        let mut raw = SAMPLES[which].1.to_vec();
        for (at, byte) in cuts {
            let i = at.index(raw.len().max(1));
            if i < raw.len() {
                raw[i] = byte;
            }
        }
        raw.truncate(truncate.index(raw.len() + 1));
        let e = explain(&raw, Lang::Zh);
        for r in &e.recipients {
            prop_assert!(!r.address.as_deref().unwrap_or("").chars().any(char::is_control));
        }
    }
}
