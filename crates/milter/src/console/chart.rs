//! The dashboard's chart: messages per action in stacked bars, as inline SVG
//! drawn on the server (no script, no library; the colours are the style
//! sheet's classes, so the policy's `style-src 'self'` holds).

use maud::{Markup, html};
use std::collections::BTreeMap;

/// The series drawn, bottom to top; every other action is `other`.
pub const SERIES: [&str; 3] = ["deliver", "quarantine", "reject"];

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// One bar: its label (shown when `labelled`) and counts per action.
pub struct Bar<'a> {
    /// The label under the bar.
    pub label: &'a str,
    /// Shown under the axis.
    pub labelled: bool,
    /// Messages per action.
    pub counts: &'a BTreeMap<String, u64>,
}

fn split(counts: &BTreeMap<String, u64>) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (k, n) in counts {
        let i = SERIES.iter().position(|s| s == k).unwrap_or(3);
        out[i] = out[i].saturating_add(*n);
    }
    out
}

/// The non-empty series of a bar: index, count, and the count below it.
fn segments(t: &[u64; 4]) -> Vec<(usize, u64, u64)> {
    let mut below = 0;
    let mut out = Vec::new();
    for (i, n) in t.iter().enumerate() {
        if *n > 0 {
            out.push((i, *n, below));
            below += n;
        }
    }
    out
}

/// The chart of `bars`, titled `title` for screen readers.
pub fn stacked(title: &str, bars: &[Bar<'_>]) -> Markup {
    let totals: Vec<[u64; 4]> = bars.iter().map(|b| split(b.counts)).collect();
    let max = totals
        .iter()
        .map(|t| t.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / bars.len().max(1) as f64;
    let bar_w = (step * 0.8).max(1.0);
    let y_of = |n: u64| TOP + plot_h - plot_h * n as f64 / max as f64;
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH - 4.0) y2=(TOP + plot_h) {}
            line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) {}
            text x=(LEFT - 4.0) y=(TOP + 10.0) text-anchor="end" { (max) }
            text x=(LEFT - 4.0) y=(TOP + plot_h) text-anchor="end" { "0" }
            @for (i, (bar, t)) in bars.iter().zip(&totals).enumerate() {
                @let x = LEFT + step * i as f64 + (step - bar_w) / 2.0;
                @for (s, n, below) in segments(t) {
                    @let class = SERIES.get(s).copied().unwrap_or("other");
                    rect class=(class) x=(format!("{x:.1}")) y=(format!("{:.1}", y_of(below + n)))
                        width=(format!("{bar_w:.1}")) height=(format!("{:.1}", y_of(below) - y_of(below + n))) {
                        title { (bar.label) ": " (class) " " (n) }
                    }
                }
                @if bar.labelled {
                    text x=(format!("{:.1}", x + bar_w / 2.0)) y=(HEIGHT - 6.0) text-anchor="middle" { (bar.label) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_by_action_and_scale_to_the_largest() {
        let a: BTreeMap<String, u64> = [("deliver".into(), 6), ("reject".into(), 2)].into();
        let b: BTreeMap<String, u64> = [("locked".into(), 1)].into();
        let empty = BTreeMap::new();
        let svg = stacked(
            "t<x>",
            &[
                Bar {
                    label: "d1",
                    labelled: true,
                    counts: &a,
                },
                Bar {
                    label: "d2",
                    labelled: false,
                    counts: &b,
                },
                Bar {
                    label: "d3",
                    labelled: true,
                    counts: &empty,
                },
            ],
        )
        .into_string();
        assert!(svg.contains("<title>t&lt;x&gt;</title>"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("class=\"deliver\""));
        assert!(svg.contains("class=\"reject\""));
        assert!(svg.contains("class=\"other\""));
        assert!(svg.contains(">8</text>"), "the axis says the largest total");
        assert!(!svg.contains(">d2</text>"));
        assert!(!svg.contains("style="));
    }
}
