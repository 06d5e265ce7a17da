//! Property tests of the whole scan: no input makes it panic, and what it says
//! about a message is consistent.

use chaff::{Action, Config, Engine, Envelope};
use proptest::prelude::*;
use std::sync::OnceLock;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&Config::default()).unwrap())
}

/// Message-shaped bytes: headers, MIME bits, encodings, Chinese, evasions, junk.
fn mail_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Subject: =?gb2312?B?w+K30Q==?=\r\n".to_vec()),
        Just(b"Content-Type: multipart/alternative; boundary=\"b\"\r\n".to_vec()),
        Just(b"Content-Type: text/html; charset=gbk\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"--b\r\n".to_vec()),
        Just(b"--b--\r\n".to_vec()),
        Just(
            "代开发票 免 费 ｆｒｅｅ 發財 免\u{200B}费"
                .as_bytes()
                .to_vec()
        ),
        Just(
            b"<b>\xc3\xe2</b><!-- x -->\xb7\xd1 &#20813;&#x8D39; <span style=\"display:none\">"
                .to_vec()
        ),
        Just(b"=C3=E2=B7=D1=\r\n".to_vec()),
        Just(b"w+K30Q".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_bytes_get_a_consistent_verdict(raw in mail_like()) {
        let cfg = engine().config();
        let v = engine().scan(&raw, &Envelope::default());
        prop_assert!(v.score.is_finite());
        let expected = if v.score >= cfg.thresholds.reject {
            Action::Reject
        } else if v.score >= cfg.thresholds.quarantine {
            Action::Quarantine
        } else {
            Action::Deliver
        };
        prop_assert_eq!(v.action, expected);
        prop_assert_eq!(v.reply.is_some(), v.action == Action::Reject);
        let total: f64 = v.hits.iter().map(|h| h.contribution).sum();
        prop_assert!((total - v.score).abs() < 1e-6 * v.score.abs().max(1.0) || !v.tokens.is_empty());
        for h in &v.hits {
            prop_assert!(h.count >= 1);
            prop_assert!(!h.locations.is_empty() && h.locations.len() <= 3);
        }
    }

    #[test]
    fn random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..4096)) {
        let v = engine().scan(&raw, &Envelope::default());
        prop_assert!(v.score.is_finite());
    }
}

#[test]
fn hostile_shapes_are_scanned_in_bounded_time() {
    // Deep nesting, a huge line, many parts: all must come back with a verdict.
    let mut deep = Vec::new();
    for i in 0..200 {
        deep.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    deep.extend_from_slice(
        "Content-Type: text/plain; charset=utf-8\r\n\r\n代开发票\r\n".as_bytes(),
    );
    let huge = format!("Subject: x\r\n\r\n{}代开发票\r\n", "免".repeat(2_000_000));
    let mut many = b"Content-Type: multipart/mixed; boundary=z\r\n\r\n".to_vec();
    for _ in 0..5000 {
        many.extend_from_slice("--z\r\nContent-Type: text/plain\r\n\r\n优惠\r\n".as_bytes());
    }
    for raw in [deep, huge.into_bytes(), many] {
        let v = engine().scan(&raw, &Envelope::default());
        assert!(v.score.is_finite());
    }
}
