//! `GET /`: the dashboard. Messages per action per day and per hour over the
//! last 7 days (charts and a table), the top hit keywords and quarantined
//! senders, the model's version and last learn, and the service's health
//! (milter connections, scan latency, the state store). The figures are the
//! API's `GET /api/stats` and `GET /api/stats/hourly`, from the same functions.

use super::chart::{Bar, SERIES, stacked};
use super::explain::action_name;
use super::form::query;
use super::layout::{Nav, page};
use super::request::Signed;
use crate::http::api::stats;
use crate::http::auth::Reader;
use crate::http::state::HttpState;
use axum::extract::State;
use axum::response::Response;
use maud::html;
use std::collections::BTreeMap;
use std::sync::Arc;

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `GET /`.
pub async fn show(s: Signed, State(state): State<Arc<HttpState>>) -> Response {
    let l = s.lang;
    let who = || Reader(s.user.principal());
    let summary = stats::summary(who(), State(Arc::clone(&state))).await;
    let hourly = stats::hourly(who(), State(Arc::clone(&state))).await;
    let (summary, hourly) = match (summary, hourly) {
        (Ok(a), Ok(b)) => (a.0, b.0),
        (Err(e), _) | (_, Err(e)) => return super::layout::error_page(&s, e.status, &e.message),
    };
    let day_bars: Vec<Bar<'_>> = hourly
        .days
        .iter()
        .map(|d| Bar {
            label: &d.day_utc[5..],
            labelled: true,
            counts: &d.counts,
        })
        .collect();
    // "11-30 02h" in each bar's tooltip; the day under the first hour of each day.
    let hour_labels: Vec<(String, String)> = hourly
        .hours
        .iter()
        .map(|h| {
            let day = h.hour_utc.get(5..10).unwrap_or("").to_string();
            let hour = h.hour_utc.get(11..13).unwrap_or("");
            (format!("{day} {hour}h"), day)
        })
        .collect();
    let hour_bars: Vec<Bar<'_>> = hourly
        .hours
        .iter()
        .zip(&hour_labels)
        .map(|(h, (full, day))| {
            let first = h.hour % 86_400 == 0;
            Bar {
                label: if first { day } else { full },
                labelled: first,
                counts: &h.counts,
            }
        })
        .collect();
    let actions: Vec<String> = {
        let mut all: BTreeMap<&str, ()> = SERIES.iter().map(|s| (*s, ())).collect();
        for d in &hourly.days {
            for k in d.counts.keys() {
                all.insert(k, ());
            }
        }
        all.keys().map(|k| k.to_string()).collect()
    };
    let windows = [
        ("dash.today", &summary.counts.today),
        ("dash.last_24h", &summary.counts.last_24h),
        ("dash.last_7d", &summary.counts.last_7d),
    ];
    let body = html! {
        div.cards {
            @for (key, counts) in windows {
                section.card {
                    h2 { (l.t(key)) }
                    dl.facts {
                        @for a in &actions {
                            dt { (action_name(l, a)) } dd { (counts.get(a.as_str()).copied().unwrap_or(0)) }
                        }
                    }
                }
            }
            section.card {
                h2 { (l.t("dash.health")) }
                dl.facts {
                    dt { (l.t("dash.connections")) } dd { (summary.milter.connections) }
                    dt { (l.t("dash.latency")) } dd {
                        (format!("{:.1} ms", summary.scan_latency.mean_ms))
                        @if let Some(p) = summary.scan_latency.p99_at_most_ms { " · p99 ≤ " (format!("{p:.1} ms")) }
                    }
                    dt { (l.t("dash.scans")) } dd { (summary.scan_latency.count) }
                    dt { (l.t("dash.store")) } dd {
                        @if summary.store.healthy { (l.t("dash.healthy")) } @else { span.score-high { (l.t("dash.unhealthy")) } }
                        " · " (summary.store.file_bytes.map(bytes).unwrap_or_else(|| "–".into()))
                    }
                    dt { (l.t("dash.entries")) } dd { (summary.store.entries) " · " (bytes(summary.store.bytes)) }
                }
            }
            section.card {
                h2 { (l.t("dash.model")) }
                @match &summary.model {
                    Some(m) => {
                        dl.facts {
                            dt { (l.t("dash.model_version")) } dd { "chaff " (m.chaff_version) " · v" (m.features_version) }
                            dt { (l.t("dash.model_learned")) } dd { (m.updated_utc) }
                            dt { (l.t("dash.model_trained")) } dd { (m.trained_spam) " / " (m.trained_ham) }
                            dt { (l.t("dash.model_since")) } dd { (m.learned_spam) " / " (m.learned_ham) }
                        }
                        @if let Some(e) = &m.reload_error { p.warning { (e) } }
                    }
                    None => { p.muted { (l.t("dash.no_model")) } }
                }
            }
        }
        h2 { (l.t("dash.per_day")) }
        div.legend aria-hidden="true" {
            @for a in SERIES { span class=(a) { (action_name(l, a)) } }
            span.other { (l.t("dash.other")) }
        }
        (stacked(l.t("dash.per_day"), &day_bars))
        h2 { (l.t("dash.per_hour")) }
        (stacked(l.t("dash.per_hour"), &hour_bars))
        details {
            summary { (l.t("dash.table")) }
            div.table { table {
                thead { tr { th { (l.t("dash.day")) } @for a in &actions { th.num { (action_name(l, a)) } } } }
                tbody { @for d in &hourly.days { tr {
                    td { (d.day_utc) }
                    @for a in &actions { td.num { (d.counts.get(a.as_str()).copied().unwrap_or(0)) } }
                } } }
            } }
        }
        div.cards {
            section.card {
                h2 { (l.t("dash.top_hits")) }
                @if summary.tops.top_hits.is_empty() { p.muted { (l.t("dash.none")) } }
                ol { @for c in &summary.tops.top_hits { li { (c.name) " · " (c.count) } } }
            }
            section.card {
                h2 { (l.t("dash.top_senders")) }
                @if summary.tops.top_senders.is_empty() { p.muted { (l.t("dash.none")) } }
                ol { @for c in &summary.tops.top_senders { li {
                    a href={ "/reports?" (query(&[("sender", &c.name)])) } { (c.name) } " · " (c.count)
                } } }
            }
        }
        p.muted { (l.t("dash.computed")) " " (crate::accounts::format_time(summary.tops.computed_at)) }
    };
    page(&s, Nav::Dashboard, l.t("nav.dashboard"), body)
}
