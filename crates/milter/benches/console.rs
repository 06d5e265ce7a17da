//! The admin console's server time per page (a benchmark, not a timed
//! assertion): every page rendered through the HTTP listener's router (the
//! console's handlers, the API functions they call, the state store) with
//! 100,000 entries in the spam report list and 10,000 scan records in the
//! history, as a signed-in admin. The issue asks for at most 100 ms a page.
//!
//! The dashboard's top lists are computed at most once a minute and shared
//! (`http::api::stats`): the first request after start pays for the walk (its
//! time is printed), the others reuse it, as a console polling every second
//! does.
//!
//! Run: `cargo bench -p chaff-milter --bench console`. `CHAFF_BENCH_ENTRIES`
//! changes the 100,000.

use axum::body::Body;
use axum::http::{Request, header};
use chaff::{Action, Hit, Reason, Verdict};
use chaff_milter::ServiceConfig;
use chaff_milter::http::{HttpState, router};
use chaff_milter::quarantine::{NewEntry, ScanRecord, StateStore, StoredEnvelope, Told, now_ms};
use chaff_milter::service::Service;
use chaff_milter::users::{Role, UserEntry, UsersFile, hash_password};
use criterion::Criterion;
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_service::Service as _;

const RECIPIENTS: u64 = 1000;

fn verdict(score: f64) -> Verdict {
    Verdict {
        action: Action::Quarantine,
        score,
        reply: None,
        reason: Reason::Score {
            quarantine: 9.0,
            reject: 15.0,
        },
        hits: (0..5)
            .map(|i| Hit {
                keyword: format!("关键词{i}"),
                category: "money".into(),
                weight: 2.0,
                count: 2,
                contribution: 3.0,
                locations: vec![],
            })
            .collect(),
        tokens: Vec::new(),
        truncated: false,
    }
}

fn entry(i: u64, time_ms: u64) -> NewEntry {
    let raw = format!(
        "From: sender{}@bulk{}.test\r\nTo: user{}@corp.test\r\nSubject: offer number {i} 优惠\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n代开发票 免费 offer {i} meeting 会议 \
         shipping price today.\r\n",
        i % 5000,
        i % 50,
        i % RECIPIENTS
    );
    NewEntry::new(
        time_ms,
        "mx.bench",
        StoredEnvelope {
            sender: format!("sender{}@bulk{}.test", i % 5000, i % 50),
            recipients: vec![format!("user{}@corp.test", i % RECIPIENTS)],
            client_addr: Some("192.0.2.1".into()),
            queue_id: Some(format!("Q{i:08}")),
            ..StoredEnvelope::default()
        },
        &verdict(9.0 + (i % 600) as f64 / 100.0),
        Told::Discard,
        raw.as_bytes(),
    )
    .expect("entry")
}

/// One request through the router; status and body length.
async fn call(app: &mut axum::Router, path: &str, cookie: &str) -> (u16, usize) {
    let req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let r = app.call(req).await.unwrap();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, body.len())
}

fn main() {
    let n: u64 = std::env::var("CHAFF_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.redb");
    let now = now_ms();
    let first_id;
    {
        let store = StateStore::open(&state_path).unwrap();
        let t = Instant::now();
        let mut ids = Vec::new();
        // One entry a second up to now: 100,000 span the last 28 hours.
        for chunk in 0..n.div_ceil(1000) {
            let batch: Vec<NewEntry> = (chunk * 1000..((chunk + 1) * 1000).min(n))
                .map(|i| entry(i, now - (n - i) * 1000))
                .collect();
            ids.extend(store.put_batch(&batch).unwrap());
        }
        first_id = *ids.last().unwrap();
        let secs = now / 1000;
        let records: Vec<ScanRecord> = (0..10_000u64)
            .map(|i| ScanRecord {
                time: secs - 10_000 + i,
                queue_id: Some(format!("Q{i}")),
                sender: format!("s{}@spam.test", i % 500),
                recipients: vec![format!("user{}@corp.test", i % RECIPIENTS)],
                recipient_count: 1,
                client_addr: None,
                helo: None,
                auth_user: None,
                action: "quarantine".into(),
                score: Some(10.0),
                hits: (0..5)
                    .map(|k| (format!("关键词{}", (i + k) % 40), 2))
                    .collect(),
                size: 2000,
                entry: None,
            })
            .collect();
        let mut counts: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
        for h in 0..168u64 {
            let hour = secs - secs % 3600 - h * 3600;
            counts.insert(
                hour,
                [
                    ("deliver".to_string(), 900 + h),
                    ("quarantine".to_string(), 40 + h % 7),
                ]
                .into(),
            );
        }
        store.record_scans(&records, &counts, 10_000, secs).unwrap();
        println!(
            "filled {n} entries and 10,000 scan records in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let users = dir.path().join("users.toml");
    let mut f = UsersFile::default();
    f.add(
        "admin",
        UserEntry {
            role: Role::Admin,
            password: Some(hash_password("bench password").unwrap()),
            token: None,
        },
    )
    .unwrap();
    f.save(&users).unwrap();
    let mut config = ServiceConfig::default();
    config.state.path = state_path;
    config.accounts.db = dir.path().join("accounts.redb");
    config.quarantine.release_key = Some(dir.path().join("release.key"));
    config.users.file = Some(users);
    let service = Arc::new(Service::new(&config, None).expect("service"));
    let state = HttpState::new(Arc::clone(&service)).expect("state");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut app = router::router(state);
    // Sign in once (Argon2id), as a browser does.
    let cookie = rt.block_on(async {
        let req = Request::post("/login")
            .header(header::COOKIE, "chaff_login=t")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                "csrf=t&name=admin&password=bench+password&next=%2F",
            ))
            .unwrap();
        let r = app.call(req).await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "login");
        r.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("chaff_session="))
            .map(|v| v.split(';').next().unwrap().to_string())
            .expect("session cookie")
    });
    let t = Instant::now();
    let (status, _) = rt.block_on(call(&mut app, "/", &cookie));
    assert_eq!(status, 200);
    println!(
        "dashboard, first request after start (computes the top lists): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let pages = [
        ("dashboard", "/".to_string()),
        ("report list, first page", "/reports".to_string()),
        (
            "report list by recipient",
            "/reports?rcpt=user123%40corp.test".to_string(),
        ),
        (
            "report list by sender domain",
            "/reports?sender=bulk7.test".to_string(),
        ),
        (
            "report list, min score and date",
            format!(
                "/reports?min_score=14&since={}",
                chaff_milter::accounts::format_time(now / 1000 - 86_400)
                    .get(..10)
                    .unwrap_or("")
            ),
        ),
        (
            "report list, subject matching nothing (stops after 20,000 summaries)",
            "/reports?subject=no+such+subject".to_string(),
        ),
        ("report preview", format!("/reports/{first_id}")),
        ("locked accounts", "/accounts".to_string()),
        ("allow and block lists", "/senders".to_string()),
        ("history", "/history".to_string()),
        ("try a message (form)", "/try".to_string()),
    ];
    for (name, path) in &pages {
        let (status, len) = rt.block_on(call(&mut app, path, &cookie));
        assert_eq!(status, 200, "{name}: {path}");
        println!("{name}: {len} bytes");
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    let mut g = c.benchmark_group(format!("console page, {n} entries"));
    for (name, path) in &pages {
        g.bench_function(*name, |b| {
            b.iter(|| rt.block_on(call(&mut app, path, &cookie)))
        });
    }
    g.finish();
    c.final_summary();
    drop(app);
    service.stop_state();
}
