//! Tests of the state store: entries, the state machine under races, the list
//! and its indexes, retention, history and counts, sender lists, the keeper's
//! group commit, and what a crash leaves.

use super::*;
use chaff::{Action, Hit, Reason, Verdict};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const T0: u64 = 1_700_000_000_000;

fn verdict(score: f64, action: Action) -> Verdict {
    Verdict {
        action,
        score,
        reply: (action == Action::Reject)
            .then(|| "557 5.7.1 forbid to send spam mail".parse().unwrap()),
        reason: Reason::Score {
            quarantine: 9.0,
            reject: 15.0,
        },
        hits: vec![Hit {
            keyword: "代开".into(),
            category: "money".into(),
            weight: 4.0,
            count: 2,
            contribution: 6.0,
            locations: vec![],
        }],
        tokens: Vec::new(),
        truncated: false,
    }
}

fn raw(subject: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!("From: x@example.com\r\nSubject: {subject}\r\n\r\n").into_bytes();
    m.extend(std::iter::repeat_n(b'a', body_len));
    m
}

fn entry(time_ms: u64, sender: &str, rcpts: &[&str], score: f64, subject: &str) -> NewEntry {
    NewEntry::new(
        time_ms,
        "mx.test",
        StoredEnvelope {
            sender: sender.into(),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            client_addr: Some("192.0.2.1".into()),
            queue_id: Some(format!("Q{time_ms}")),
            ..StoredEnvelope::default()
        },
        &verdict(score, Action::Quarantine),
        Told::Discard,
        &raw(subject, 1000),
    )
    .unwrap()
}

fn store() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("sub/state.redb")).unwrap();
    (dir, s)
}

#[test]
fn an_entry_is_kept_whole_and_read_back() {
    let (_d, s) = store();
    let e = entry(
        T0,
        "Spammer@Example.com",
        &["a@example.org", "b@example.org"],
        12.5,
        "buy now",
    );
    let id = s.put(&e).unwrap();
    assert_eq!(id.time_ms(), T0);
    let got = s.get(id).unwrap().unwrap();
    assert_eq!(got.summary.subject, "buy now");
    assert_eq!(got.summary.state, EntryState::Held);
    assert_eq!(got.summary.told, Told::Discard);
    assert_eq!(got.summary.recipients.len(), 2);
    assert_eq!(got.detail.verdict.hits[0].keyword, "代开");
    assert_eq!(
        got.detail.envelope.queue_id.as_deref(),
        Some("Q1700000000000")
    );
    assert_eq!(s.message(id).unwrap().unwrap(), raw("buy now", 1000));
    let t = s.totals().unwrap();
    assert_eq!((t.entries, t.bytes), (1, e.compressed.len() as u64));
    assert!(s.verify().unwrap().is_empty());
    // Unknown ids.
    let other = EntryId::new(T0 + 1, 0);
    assert!(s.get(other).unwrap().is_none());
    assert!(s.message(other).unwrap().is_none());
    // Two entries of the same millisecond with the same random part still get
    // two ids.
    let ids = s.put_batch(&[e.clone(), e.clone(), e]).unwrap();
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        3
    );
}

#[test]
fn release_is_a_compare_and_set_with_who_and_when() {
    let (_d, s) = store();
    let id = s
        .put(&entry(T0, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    let now = 2_000_000_000;
    let t = s.begin_release(id, "alice", false, now).unwrap();
    assert_eq!(t.message, raw("s", 1000));
    assert_eq!(t.envelope.recipients, ["r@y.test"]);
    // A second release while the first runs: refused, naming alice.
    let e = s.begin_release(id, "bob", false, now + 1).unwrap_err();
    assert!(
        matches!(&e, StateError::Conflict { state: EntryState::Releasing { by, .. }, .. } if by == "alice"),
        "{e}"
    );
    assert!(e.to_string().contains("being released by alice"), "{e}");
    // Nor can it be deleted meanwhile.
    assert!(matches!(
        s.delete(id, "bob", now + 1),
        Err(StateError::Conflict { .. })
    ));
    let done = s
        .finish_release(&t, "250 2.0.0 Ok: queued as ABC", now + 2)
        .unwrap();
    assert!(
        matches!(done.state, EntryState::Released { ref by, at, .. } if by == "alice" && at == now + 2)
    );
    // Released: a new release is refused with who, when and how (HTTP 409).
    let e = s.begin_release(id, "bob", true, now + 3).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("already released by alice") && text.contains("queued as ABC"),
        "{text}"
    );
    // The same ticket cannot finish or abandon twice.
    assert!(s.finish_release(&t, "again", now + 4).is_err());
    assert!(s.abandon_release(&t, "x", now + 4).is_err());
    // A failed delivery puts the entry back.
    let id2 = s
        .put(&entry(T0 + 5, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    let t2 = s.begin_release(id2, "carol", false, now).unwrap();
    assert_eq!(
        s.abandon_release(&t2, "relay said 451", now + 1)
            .unwrap()
            .state,
        EntryState::Held
    );
    let log = s.actions(10).unwrap();
    let whats: Vec<&str> = log.iter().map(|a| a.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "release-failed",
            "release-begin",
            "release",
            "release-begin"
        ]
    );
    assert_eq!(log[0].detail, "relay said 451");
    assert_eq!(log[0].id, Some(id2));
    assert!(matches!(
        s.begin_release(EntryId::new(1, 1), "x", false, now),
        Err(StateError::NotFound(_))
    ));
}

#[test]
fn an_unfinished_release_is_in_doubt_and_only_an_admin_settles_it() {
    let (_d, s) = store();
    let id = s
        .put(&entry(T0, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    let now = 2_000_000_000;
    let crashed = s.begin_release(id, "alice", false, now).unwrap();
    // Not yet in doubt: even force is refused.
    assert!(s.begin_release(id, "bob", true, now + 10).is_err());
    let later = now + RELEASE_IN_DOUBT_AFTER;
    let e = s.begin_release(id, "bob", false, later).unwrap_err();
    assert!(e.to_string().contains("in doubt"), "{e}");
    let page = s
        .list(
            &Filter {
                state: Some(StateFilter::InDoubt),
                ..Filter::default()
            },
            10,
            None,
            later,
        )
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    // Forced: a new attempt; the crashed one can no longer finish it.
    let retry = s.begin_release(id, "bob", true, later).unwrap();
    assert_ne!(retry.attempt, crashed.attempt);
    assert!(s.finish_release(&crashed, "late", later + 1).is_err());
    s.finish_release(&retry, "250 ok", later + 1).unwrap();
    // Or settled by hand.
    let id2 = s
        .put(&entry(T0 + 1, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    s.begin_release(id2, "alice", false, now).unwrap();
    assert!(s.resolve_in_doubt(id2, "bob", true, now + 1).is_err());
    let r = s.resolve_in_doubt(id2, "bob", true, later).unwrap();
    assert!(matches!(r.state, EntryState::Released { .. }));
}

#[test]
fn a_release_marked_in_doubt_is_refused_until_forced_or_settled() {
    let (_d, s) = store();
    let id = s
        .put(&entry(T0, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    let now = 2_000_000_000;
    let t = s.begin_release(id, "alice", false, now).unwrap();
    let marked = s
        .mark_in_doubt(&t, "no answer to the end of the message", now + 1)
        .unwrap();
    // In doubt at once, not only after RELEASE_IN_DOUBT_AFTER.
    assert!(marked.state.in_doubt(now + 1));
    assert_eq!(marked.state.name(now + 1), "in_doubt");
    let e = s.begin_release(id, "bob", false, now + 2).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("in doubt") && text.contains("no answer to the end of the message"),
        "{text}"
    );
    let page = s
        .list(
            &Filter {
                state: Some(StateFilter::InDoubt),
                ..Filter::default()
            },
            10,
            None,
            now + 2,
        )
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    // Forced, a new attempt starts, and the old ticket cannot mark it.
    let retry = s.begin_release(id, "bob", true, now + 3).unwrap();
    assert!(matches!(
        s.mark_in_doubt(&t, "stale", now + 3),
        Err(StateError::Conflict { .. })
    ));
    assert!(!s.get(id).unwrap().unwrap().summary.state.in_doubt(now + 3));
    s.finish_release(&retry, "250 ok", now + 4).unwrap();
    // Settled by hand: held again, to be released anew.
    let id2 = s
        .put(&entry(T0 + 1, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    let t2 = s.begin_release(id2, "alice", false, now).unwrap();
    s.mark_in_doubt(&t2, "postsuper ran; the queue file was not seen", now)
        .unwrap();
    let r = s.resolve_in_doubt(id2, "bob", false, now + 1).unwrap();
    assert_eq!(r.state, EntryState::Held);
    let whats: Vec<String> = s.actions(3).unwrap().into_iter().map(|a| a.what).collect();
    assert_eq!(whats, ["resolve-held", "release-in-doubt", "release-begin"]);
}

#[test]
fn two_concurrent_releases_one_wins_threads_and_handles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let first = Arc::new(StateStore::open(&path).unwrap());
    // A second handle on the same file, as the CLI or another process has.
    let second = Arc::new(StateStore::open(&path).unwrap());
    for round in 0..20 {
        let id = first
            .put(&entry(T0 + round, "a@x.test", &["r@y.test"], 10.0, "s"))
            .unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = Arc::clone(if i % 2 == 0 { &first } else { &second });
                let b = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    b.wait();
                    s.begin_release(id, &format!("admin{i}"), false, 2_000_000_000)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        let winner = results.iter().find_map(|r| r.as_ref().ok()).unwrap();
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, StateError::Conflict { state: EntryState::Releasing { by, .. }, .. } if *by == winner.by),
                    "{e}"
                );
            }
        }
    }
    assert!(first.verify().unwrap().is_empty());
}

#[test]
fn delete_drops_the_message_and_keeps_the_record() {
    let (_d, s) = store();
    let e = entry(T0, "a@x.test", &["r@y.test"], 10.0, "s");
    let id = s.put(&e).unwrap();
    let d = s.delete(id, "alice", 2_000_000_000).unwrap();
    assert_eq!(d.stored_bytes, 0);
    assert!(matches!(d.state, EntryState::Deleted { ref by, .. } if by == "alice"));
    assert!(s.message(id).unwrap().is_none());
    assert_eq!(
        s.totals().unwrap(),
        Totals {
            entries: 1,
            bytes: 0
        }
    );
    let e = s.delete(id, "bob", 2_000_000_001).unwrap_err();
    assert!(e.to_string().contains("deleted by alice"), "{e}");
    assert!(s.begin_release(id, "bob", true, 2_000_000_001).is_err());
    assert!(s.verify().unwrap().is_empty());
}

fn ids(p: &Page) -> Vec<u64> {
    p.entries.iter().map(|e| e.id.time_ms() - T0).collect()
}

#[test]
fn the_list_filters_pages_and_walks_newest_first() {
    let (_d, s) = store();
    let mut batch = Vec::new();
    for i in 0..100u64 {
        let rcpt = if i % 10 == 0 {
            "boss@corp.test"
        } else {
            "staff@corp.test"
        };
        let sender = if i % 3 == 0 { "" } else { "Bulk@Spam.test" };
        let score = i as f64;
        let subject = if i % 7 == 0 {
            "发票 Invoice"
        } else {
            "hello"
        };
        // One second apart.
        batch.push(entry(
            T0 + i * 1000,
            sender,
            &[rcpt, "other@elsewhere.test"],
            score,
            subject,
        ));
    }
    s.put_batch(&batch).unwrap();
    let now = T0 / 1000 + 1000;
    let all = s.list(&Filter::default(), 10, None, now).unwrap();
    assert_eq!(
        ids(&all),
        (90..100).rev().map(|i| i * 1000).collect::<Vec<_>>()
    );
    let next = s.list(&Filter::default(), 10, all.next, now).unwrap();
    assert_eq!(ids(&next)[0], 89_000);
    // By recipient: the index, paged.
    let f = Filter {
        rcpt: Some("BOSS@corp.test".into()),
        ..Filter::default()
    };
    let p = s.list(&f, 3, None, now).unwrap();
    assert_eq!(ids(&p), [90_000, 80_000, 70_000]);
    // Three, and one more to know there is a next page.
    assert_eq!(p.examined, 4);
    let p2 = s.list(&f, 3, p.next, now).unwrap();
    assert_eq!(ids(&p2), [60_000, 50_000, 40_000]);
    let last = s.list(&f, 10, p2.next, now).unwrap();
    assert_eq!(ids(&last), [30_000, 20_000, 10_000, 0]);
    assert_eq!(last.next, None);
    // A whole domain.
    let f = Filter {
        rcpt: Some("corp.test".into()),
        ..Filter::default()
    };
    assert_eq!(s.list(&f, 1000, None, now).unwrap().entries.len(), 100);
    // Sender, the null sender, and combined conditions.
    let f = Filter {
        sender: Some("<>".into()),
        min_score: Some(50.0),
        ..Filter::default()
    };
    let p = s.list(&f, 1000, None, now).unwrap();
    assert!(
        p.entries
            .iter()
            .all(|e| e.sender.is_empty() && e.score >= 50.0)
    );
    assert_eq!(p.entries.len(), (50..100).filter(|i| i % 3 == 0).count());
    let f = Filter {
        sender: Some("bulk@SPAM.test".into()),
        subject: Some("invoice".into()),
        ..Filter::default()
    };
    let p = s.list(&f, 1000, None, now).unwrap();
    assert_eq!(
        p.entries.len(),
        (0..100).filter(|i| i % 3 != 0 && i % 7 == 0).count()
    );
    let f = Filter {
        subject: Some("发票".into()),
        ..Filter::default()
    };
    assert_eq!(s.list(&f, 1000, None, now).unwrap().entries.len(), 15);
    // Time bounds (seconds).
    let f = Filter {
        since: Some(T0 / 1000 + 10),
        until: Some(T0 / 1000 + 20),
        ..Filter::default()
    };
    assert_eq!(
        ids(&s.list(&f, 1000, None, now).unwrap()),
        (10..20).rev().map(|i| i * 1000).collect::<Vec<_>>()
    );
    // Score floor alone: through the score index.
    let f = Filter {
        min_score: Some(97.0),
        ..Filter::default()
    };
    let p = s.list(&f, 1000, None, now).unwrap();
    assert_eq!(ids(&p), [99_000, 98_000, 97_000]);
    assert_eq!(p.examined, 3);
    // Action and state.
    let f = Filter {
        action: Some("reject".into()),
        ..Filter::default()
    };
    assert!(s.list(&f, 10, None, now).unwrap().entries.is_empty());
    let f = Filter {
        state: Some(StateFilter::Held),
        ..Filter::default()
    };
    assert_eq!(s.list(&f, 1000, None, now).unwrap().entries.len(), 100);
    // Nothing matches: no page after.
    let f = Filter {
        rcpt: Some("nobody@corp.test".into()),
        ..Filter::default()
    };
    let p = s.list(&f, 10, None, now).unwrap();
    assert!(p.entries.is_empty() && p.next.is_none());
}

#[test]
fn a_bounded_list_stops_and_its_cursor_goes_on_without_losing_entries() {
    let (_d, s) = store();
    let batch: Vec<NewEntry> = (0..100u64)
        .map(|i| {
            let subject = if i % 30 == 0 { "needle" } else { "hay" };
            entry(T0 + i, "a@spam.test", &["b@corp.test"], 10.0, subject)
        })
        .collect();
    s.put_batch(&batch).unwrap();
    let now = T0 / 1000 + 1000;
    let f = Filter {
        subject: Some("needle".into()),
        ..Filter::default()
    };
    // Every page reads at most 25 summaries; together they find all 4 (90,
    // 60, 30, 0), newest first, each once.
    let mut found = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let p = s.list_bounded(&f, 10, before, now, 25).unwrap();
        assert!(p.examined <= 25, "{}", p.examined);
        found.extend(ids(&p));
        pages += 1;
        match p.next {
            Some(n) => {
                assert!(p.cut_short || p.entries.len() == 10);
                before = Some(n);
            }
            None => break,
        }
    }
    assert_eq!(found, vec![90, 60, 30, 0]);
    assert_eq!(pages, 4);
    // Unbounded, as before: one page.
    let p = s.list(&f, 10, None, now).unwrap();
    assert_eq!(ids(&p), vec![90, 60, 30, 0]);
    assert!(!p.cut_short && p.next.is_none());
    // By an index too (the recipient's).
    let f = Filter {
        rcpt: Some("b@corp.test".into()),
        subject: Some("needle".into()),
        ..Filter::default()
    };
    let p = s.list_bounded(&f, 10, None, now, 15).unwrap();
    assert!(p.cut_short);
    assert_eq!(ids(&p), vec![90]);
    let p = s.list_bounded(&f, 10, p.next, now, 100).unwrap();
    assert_eq!(ids(&p), vec![60, 30, 0]);
}

#[test]
fn retention_drops_the_oldest_by_age_and_by_bytes() {
    let (_d, s) = store();
    let batch: Vec<NewEntry> = (0..30u64)
        .map(|i| entry(T0 + i * 3_600_000, "a@x.test", &["r@y.test"], 10.0, "s"))
        .collect();
    let each = batch[0].compressed.len() as u64;
    s.put_batch(&batch).unwrap();
    let now = T0 / 1000 + 30 * 3600;
    // By age: entries of more than 10 hours ago.
    let r = s
        .apply_retention(now, Duration::from_secs(10 * 3600), u64::MAX)
        .unwrap();
    assert_eq!(r.entries, 20);
    let left = s.list(&Filter::default(), 100, None, now).unwrap();
    assert_eq!(left.entries.len(), 10);
    assert_eq!(
        left.entries.last().unwrap().id.time_ms(),
        T0 + 20 * 3_600_000
    );
    // By bytes: room for 4 messages.
    let r = s
        .apply_retention(now, Duration::from_secs(1 << 40), 4 * each)
        .unwrap();
    assert_eq!(r.entries, 6);
    assert_eq!(
        s.totals().unwrap(),
        Totals {
            entries: 4,
            bytes: 4 * each
        }
    );
    assert!(s.verify().unwrap().is_empty());
    // Purge, logged.
    let r = s.purge(Duration::from_secs(2 * 3600), "root", now).unwrap();
    assert_eq!(r.entries, 2);
    assert_eq!(s.actions(1).unwrap()[0].what, "purge");
    // A large purge works in chunks.
    let many: Vec<NewEntry> = (0..(RETENTION_CHUNK as u64 * 2 + 7))
        .map(|i| entry(T0 + i, "a@x.test", &["r@y.test"], 1.0, "s"))
        .collect();
    s.put_batch(&many).unwrap();
    // (With them goes the entry of 28 hours after T0, two hours old.)
    let r = s.purge(Duration::from_secs(3600), "root", now).unwrap();
    assert_eq!(r.entries, RETENTION_CHUNK as u64 * 2 + 8);
    assert_eq!(s.totals().unwrap().entries, 1);
    assert!(s.verify().unwrap().is_empty());
}

fn record(time: u64, action: &str) -> ScanRecord {
    ScanRecord {
        time,
        queue_id: Some("Q".into()),
        sender: "a@x.test".into(),
        recipients: (0..20).map(|i| format!("r{i}@y.test")).collect(),
        recipient_count: 20,
        client_addr: None,
        helo: Some("client.test".into()),
        auth_user: None,
        action: action.into(),
        score: Some(3.0),
        hits: (0..9).map(|i| (format!("k{i}"), 1)).collect(),
        size: 100,
        entry: None,
    }
}

#[test]
fn history_is_bounded_and_counts_cover_seven_days() {
    let (_d, s) = store();
    let now = 1_700_000_000u64;
    let recs: Vec<ScanRecord> = (0..50)
        .map(|i| record(now - 50 + i, "deliver").bounded())
        .collect();
    assert_eq!(recs[0].recipients.len(), MAX_HISTORY_RCPTS);
    assert_eq!(recs[0].hits.len(), MAX_HISTORY_HITS);
    s.record_scans(&recs, &BTreeMap::new(), 30, now).unwrap();
    s.record_scans(&recs[..5], &BTreeMap::new(), 30, now)
        .unwrap();
    let h = s.history(100, None).unwrap();
    assert_eq!(h.len(), 30);
    assert_eq!(h[0], recs[4]);
    assert_eq!(s.history(2, Some(now - 5)).unwrap()[0].time, now - 6);
    let mut counts = BTreeMap::new();
    let hour = now / 3600;
    counts.insert(hour, BTreeMap::from([("deliver".to_string(), 5u64)]));
    counts.insert(hour - 200, BTreeMap::from([("reject".to_string(), 1u64)]));
    s.record_scans(&[], &counts, 30, now).unwrap();
    s.record_scans(&[], &counts, 30, now).unwrap();
    let hours = s.hourly_counts(now).unwrap();
    assert_eq!(hours.len() as u64, COUNT_HOURS);
    assert_eq!(hours.last().unwrap().counts["deliver"], 10);
    assert_eq!(hours.last().unwrap().hour, hour * 3600);
    assert!(hours.iter().all(|h| !h.counts.contains_key("reject")));
}

#[test]
fn history_pages_lose_nothing_within_one_second() {
    let (_d, s) = store();
    let now = 1_700_000_000u64;
    // Seven scans in the same second, then three a second later.
    let recs: Vec<ScanRecord> = (0..10)
        .map(|i| {
            let mut r = record(now + u64::from(i >= 7), "deliver");
            r.queue_id = Some(format!("Q{i}"));
            r.bounded()
        })
        .collect();
    s.record_scans(&recs, &BTreeMap::new(), 100, now).unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let p = s.history_page(3, before).unwrap();
        assert!(p.records.len() <= 3);
        seen.extend(p.records.iter().map(|r| r.queue_id.clone().unwrap()));
        match p.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = (0..10).rev().map(|i| format!("Q{i}")).collect();
    assert_eq!(seen, want);
    // A full last page says there is no more.
    let p = s.history_page(10, None).unwrap();
    assert_eq!((p.records.len(), p.next), (10, None));
    assert!(s.history_page(0, None).unwrap().records.is_empty());
}

#[test]
fn sender_entries_are_checked_stored_once_and_logged() {
    let (_d, s) = store();
    let now = 1_700_000_000;
    assert!(
        s.add_sender(
            SenderList::Allow,
            "CEO@Example.com from 203.0.113.0/24 ,192.0.2.7",
            "alice",
            "partner",
            now
        )
        .unwrap()
    );
    assert!(
        !s.add_sender(
            SenderList::Allow,
            "ceo@example.com from 203.0.113.0/24, 192.0.2.7/32",
            "bob",
            "",
            now
        )
        .unwrap()
    );
    assert!(
        s.add_sender(SenderList::Block, "*@Spam.example", "alice", "", now)
            .unwrap()
    );
    for (list, bad) in [
        (SenderList::Allow, "ceo@example.com via 192.0.2.1"),
        (SenderList::Allow, "ceo@example.com from 192.0.2.0/33"),
        (SenderList::Block, "two words"),
        (SenderList::Block, ""),
    ] {
        assert!(
            matches!(
                s.add_sender(list, bad, "x", "", now),
                Err(SendersError::Invalid { .. })
            ),
            "{bad}"
        );
    }
    let got = s.senders().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].entry,
        "ceo@example.com from 203.0.113.0/24, 192.0.2.7/32"
    );
    assert_eq!(
        (got[0].by.as_str(), got[0].comment.as_str()),
        ("alice", "partner")
    );
    let rev = s.senders_revision().unwrap();
    assert_eq!(rev, 2);
    let mut config = chaff::Config::default();
    assert!(apply_senders(&mut config, &got).is_empty());
    assert_eq!(config.allow.len(), 1);
    assert_eq!(config.allow[0].networks.len(), 2);
    assert!(config.block[0].matches("x@spam.example"));
    // Applied by the engine: a block entry refuses the sender.
    let engine = chaff::Engine::new(&config).unwrap();
    let v = engine.scan(
        b"Subject: hi\r\n\r\nhello\r\n",
        &chaff::Envelope {
            sender: Some("x@spam.example".into()),
            ..chaff::Envelope::default()
        },
    );
    assert!(matches!(v.reason, Reason::BlockListed { .. }), "{v:?}");
    assert!(
        s.remove_sender(SenderList::Block, "*@SPAM.example", "bob", now)
            .unwrap()
    );
    assert!(
        !s.remove_sender(SenderList::Block, "*@spam.example", "bob", now)
            .unwrap()
    );
    assert_eq!(s.senders_revision().unwrap(), 3);
    let whats: Vec<String> = s.actions(10).unwrap().into_iter().map(|a| a.what).collect();
    assert_eq!(whats, ["block-remove", "block-add", "allow-add"]);
    // A stored entry that no longer parses is skipped with a warning.
    let odd = SenderEntry {
        list: SenderList::Allow,
        entry: "bad entry".into(),
        by: "x".into(),
        at: 0,
        comment: String::new(),
    };
    assert_eq!(
        apply_senders(&mut chaff::Config::default(), &[odd]).len(),
        1
    );
}

#[test]
fn the_action_log_is_bounded() {
    let (_d, s) = store();
    // Fill past the bound cheaply by writing rows directly.
    s.db.write(|txn| {
        for i in 0..(MAX_ACTIONS + 5) {
            audit::append(
                txn,
                &AdminAction {
                    at: i,
                    by: "x".into(),
                    what: "t".into(),
                    id: None,
                    detail: "d".repeat(3000),
                },
            )?;
        }
        Ok(Ok::<_, ()>(()))
    })
    .unwrap()
    .unwrap();
    let newest = s.actions(1).unwrap();
    assert_eq!(newest[0].at, MAX_ACTIONS + 4);
    assert!(newest[0].detail.len() <= 2000);
    let n =
        s.db.read(|txn| {
            Ok(redb::ReadableTableMetadata::len(
                &txn.open_table(db::ACTIONS)?,
            )?)
        })
        .unwrap();
    assert_eq!(n, MAX_ACTIONS);
}

fn limits() -> KeeperLimits {
    KeeperLimits {
        history: 1000,
        max_age: Duration::from_secs(1 << 40),
        max_bytes: u64::MAX,
    }
}

#[test]
fn the_keeper_commits_concurrent_puts_in_groups() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let keeper = Arc::new(Keeper::start(Arc::clone(&s), limits()).unwrap());
    let threads: Vec<_> = (0..16u64)
        .map(|t| {
            let k = Arc::clone(&keeper);
            std::thread::spawn(move || {
                (0..10u64)
                    .map(|i| {
                        k.keep_blocking(entry(
                            now_ms() + t * 100 + i,
                            "a@x.test",
                            &["r@y.test"],
                            10.0,
                            "s",
                        ))
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<EntryId> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 160);
    // Every id answered is in the file (durable before the answer).
    let other = StateStore::open(s.path()).unwrap();
    for id in &ids {
        assert!(other.get(*id).unwrap().is_some(), "{id}");
    }
    let st = keeper.stats();
    assert_eq!(st.kept, 160);
    assert!(st.commits < 160, "no grouping: {st:?}");
    // History and counts: written in batches, read with what is held.
    let now = now_ms() / 1000;
    for _ in 0..10 {
        keeper.record(record(now, "deliver"));
    }
    let hours = keeper.hourly_counts(now).unwrap();
    assert_eq!(hours.last().unwrap().counts["deliver"], 10);
    keeper.flush().unwrap();
    assert_eq!(s.history(100, None).unwrap().len(), 10);
    assert_eq!(
        s.hourly_counts(now).unwrap().last().unwrap().counts["deliver"],
        10
    );
    // Retention with new limits, run by the keeper.
    keeper.set_limits(KeeperLimits {
        max_bytes: 0,
        ..limits()
    });
    keeper.retain_now().unwrap();
    assert_eq!(s.totals().unwrap().entries, 0);
    keeper.shutdown();
    assert_eq!(
        keeper.keep_blocking(entry(T0, "a@x.test", &[], 1.0, "s")),
        Err(KeepError::Stopped)
    );
}

#[test]
fn a_failed_store_fails_puts_at_once_and_recovers() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let keeper = Keeper::start(Arc::clone(&s), limits()).unwrap();
    s.fail_for_test();
    let e = keeper
        .keep_blocking(entry(T0, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap_err();
    assert!(
        matches!(e, KeepError::Store(ref m) if m.contains("unusable")),
        "{e}"
    );
    assert!(!s.db_stats().healthy);
    std::thread::sleep(db::MIN_REOPEN_BACKOFF + Duration::from_millis(50));
    let id = keeper
        .keep_blocking(entry(T0, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    assert!(s.get(id).unwrap().is_some());
    assert!(s.db_stats().healthy);
    assert_eq!(s.db_stats().reopens, 1);
}

#[test]
fn a_replaced_file_is_reopened_at_its_path() {
    let (_d, s) = store();
    let id = s
        .put(&entry(T0, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    std::fs::remove_file(s.path()).unwrap();
    std::thread::sleep(db::IDENTITY_CHECK_INTERVAL + Duration::from_millis(50));
    // The old file is gone: the store starts a new one at the path.
    assert!(s.get(id).unwrap().is_none());
    let id2 = s
        .put(&entry(T0, "a@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    assert!(
        StateStore::open_existing(s.path())
            .unwrap()
            .get(id2)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_store_reopens_after_drop_under_concurrent_readers_with_every_entry_whole() {
    // What a crash leaves is covered by tests/milter_quarantine_kill.rs (kill -9
    // of the service under load). A copy of the file taken with `cp` while
    // commits run is no such state: it reads pages at different moments, so it
    // can hold a new root over old pages, which no crash produces (the store's
    // own writes are ordered by fsync). So readers here open the live file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let s = Arc::new(StateStore::open(&path).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<NewEntry> = (0..4)
                    .map(|i| {
                        entry(
                            T0 + n * 10 + i,
                            "a@x.test",
                            &["r@y.test", "q@y.test"],
                            10.0,
                            "s",
                        )
                    })
                    .collect();
                s.put_batch(&batch).unwrap();
                n += 1;
            }
            n
        })
    };
    // A second handle (as the `chaff quarantine` command has) sees whole
    // batches only, with every index row in place, while commits are under way.
    let reader = StateStore::open_existing(&path).unwrap();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(30));
        let problems = reader.verify().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            reader.totals().unwrap().entries % 4,
            0,
            "a batch is whole or absent"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches = writer.join().unwrap();
    drop(reader);
    drop(s);
    let again = StateStore::open(&path).unwrap();
    assert_eq!(again.totals().unwrap().entries, batches * 4);
    assert!(again.verify().unwrap().is_empty());
}

#[test]
fn what_a_dead_service_left_in_the_keep_log_is_moved_at_open_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    drop(StateStore::open(&path).unwrap());
    let [a, _] = keep_log::log_paths(&path);
    let (mut log, _) = keep_log::LogFile::take(&a).unwrap();
    let e = entry(T0, "a@x.test", &["r@y.test"], 10.0, "s");
    let id = EntryId::new(T0, 5);
    let mut buf = Vec::new();
    keep_log::encode(id, &e, &mut buf).unwrap();
    log.append(&buf).unwrap();
    // While a live service holds the log, an opener moves what the store lacks
    // (under the id answered), and leaves the log to its owner.
    let s = StateStore::open(&path).unwrap();
    assert_eq!(s.get(id).unwrap().unwrap().summary.sender, "a@x.test");
    drop(s);
    assert!(std::fs::metadata(&a).unwrap().len() > keep_log::MAGIC.len() as u64);
    drop(log);
    // The service is gone: the next opener finds it moved, and empties the log.
    let s = StateStore::open_existing(&path).unwrap();
    assert_eq!(s.totals().unwrap().entries, 1);
    assert_eq!(
        std::fs::metadata(&a).unwrap().len(),
        keep_log::MAGIC.len() as u64
    );
    // Moved a second time (the emptying lost in a crash): nothing changes.
    assert_eq!(s.put_logged(&[(id, e)]).unwrap(), 0);
    assert_eq!(s.totals().unwrap().entries, 1);
    assert!(s.verify().unwrap().is_empty());
}

#[test]
fn the_keeper_answers_from_the_log_and_moves_entries_into_the_store() {
    let (_d, s) = store();
    let s = Arc::new(s);
    let keeper = Keeper::start(Arc::clone(&s), limits()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let id = rt
        .block_on(keeper.keep(entry(T0, "a@x.test", &["r@y.test"], 10.0, "s")))
        .unwrap();
    // Durable when answered: in the log (read here as a restart would), or,
    // when the store's thread was quicker than this test (its 20 ms move can
    // fall right after the answer; a log is emptied only after its move
    // commits), already in the store.
    let [a, b] = keep_log::log_paths(s.path());
    let logged: Vec<u8> = [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()].concat();
    assert!(
        logged.windows(8).any(|w| w == id.as_u64().to_le_bytes()) || s.get(id).unwrap().is_some(),
        "a kept entry answered is neither in the log nor in the store"
    );
    // In the store within the move interval, or at once on a flush.
    keeper.flush().unwrap();
    assert!(s.get(id).unwrap().is_some());
    assert_eq!(keeper.stats().kept, 1);
    // A second keeper on the same store cannot take the log and commits directly.
    let other = Keeper::start(Arc::clone(&s), limits()).unwrap();
    let id2 = other
        .keep_blocking(entry(T0 + 1, "b@x.test", &["r@y.test"], 10.0, "s"))
        .unwrap();
    assert!(s.get(id2).unwrap().is_some());
    other.shutdown();
    keeper.shutdown();
    assert_eq!(s.totals().unwrap().entries, 2);
    assert!(s.verify().unwrap().is_empty());
}
