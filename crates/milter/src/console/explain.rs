//! A verdict explained (action, score, reason, keyword hits, the classifier's
//! strongest tokens) and a message as an admin reads it: the decoded subject
//! and text parts with every hit in a `<mark>` where it stands, and the header
//! block, all escaped. The message's HTML is never rendered: the preview's
//! `html` parts are the visible text the engine reduced it to.

use super::i18n::Lang;
use crate::quarantine::{Preview, PreviewText, StoredVerdict};
use maud::{Markup, PreEscaped, html};

/// The name of an action in `lang` (`deliver`, `quarantine`, `reject`, and the
/// history's other outcomes), or as given.
pub fn action_name(lang: Lang, action: &str) -> String {
    lang.lookup(&format!("action.{action}"))
        .map_or_else(|| action.to_string(), str::to_string)
}

/// A score with two decimals, or `–`.
pub fn score(s: Option<f64>) -> String {
    s.map_or_else(|| "–".into(), |s| format!("{s:.2}"))
}

/// `text` with its hits marked: the spans that lie on character boundaries
/// (the preview keeps only those), escaped between them.
pub fn marked(t: &PreviewText) -> Markup {
    let text = t.text.as_str();
    let esc = |s: &str| html! { (s) }.into_string();
    let mut out = String::with_capacity(text.len() + 64 * t.hits.len());
    let mut at = 0;
    for m in &t.hits {
        let end = m.offset.saturating_add(m.len);
        if m.offset < at
            || end > text.len()
            || !text.is_char_boundary(m.offset)
            || !text.is_char_boundary(end)
        {
            continue;
        }
        out.push_str(&esc(&text[at..m.offset]));
        out.push_str(
            &html! { mark title=(format!("{} ({})", m.keyword, m.category)) { (&text[m.offset..end]) } }
                .into_string(),
        );
        at = end;
    }
    out.push_str(&esc(&text[at..]));
    PreEscaped(out)
}

/// The verdict, explained.
pub fn verdict(lang: Lang, v: &StoredVerdict) -> Markup {
    html! {
        dl.facts {
            dt { (lang.t("verdict.action")) } dd { (action_name(lang, &v.action)) }
            dt { (lang.t("verdict.score")) } dd { (format!("{:.2}", v.score)) }
            dt { (lang.t("verdict.reason")) } dd { (v.reason) }
            @if let Some(r) = &v.reply { dt { (lang.t("verdict.reply")) } dd { (r) } }
            @if v.truncated { dt { (lang.t("verdict.truncated")) } dd { (lang.t("verdict.truncated.yes")) } }
        }
        h2 { (lang.t("verdict.hits")) }
        @if v.hits.is_empty() {
            p.muted { (lang.t("verdict.no_hits")) }
        } @else {
            div.table { table {
                thead { tr {
                    th { (lang.t("verdict.keyword")) } th { (lang.t("verdict.category")) }
                    th.num { (lang.t("verdict.weight")) } th.num { (lang.t("verdict.count")) }
                    th.num { (lang.t("verdict.contribution")) }
                } }
                tbody { @for h in &v.hits { tr {
                    td { (h.keyword) } td { (h.category) }
                    td.num { (format!("{:.2}", h.weight)) } td.num { (h.count) }
                    td.num { (format!("{:.2}", h.contribution)) }
                } } }
            } }
        }
        @if !v.tokens.is_empty() {
            h2 { (lang.t("verdict.tokens")) }
            div.table { table {
                thead { tr { th { (lang.t("verdict.token")) } th.num { (lang.t("verdict.weight")) } } }
                tbody { @for t in &v.tokens { tr { td { (t.token) } td.num { (format!("{:+.3}", t.weight)) } } } }
            } }
        }
    }
}

/// The message: subject and text parts with hits marked, then the headers.
pub fn preview(lang: Lang, p: &Preview) -> Markup {
    html! {
        h2 { (lang.t("preview.subject")) }
        pre.text.subject { (marked(&p.subject)) }
        @for (i, part) in p.parts.iter().enumerate() {
            h2 { (lang.t("preview.part")) " " (i + 1) " · " (lang.lookup(&format!("preview.source.{}", part.source)).unwrap_or(&part.source)) }
            pre.text.part { (marked(part)) }
        }
        @if p.parts.is_empty() { p.muted { (lang.t("preview.no_text")) } }
        @if p.truncated { p.warning { (lang.t("preview.truncated")) } }
        details {
            summary { (lang.t("preview.headers")) }
            pre.text { (p.headers) }
            @if p.headers_truncated { p.muted { (lang.t("preview.headers_truncated")) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quarantine::Mark;

    #[test]
    fn hits_are_marked_and_everything_is_escaped() {
        let text = "免费<script>x</script> 发票".to_string();
        let at = text.find("发票").unwrap();
        let t = PreviewText {
            source: "text".into(),
            hits: vec![
                Mark {
                    keyword: "免费".into(),
                    category: "ad".into(),
                    offset: 0,
                    len: "免费".len(),
                    char_offset: 0,
                    char_len: 2,
                },
                Mark {
                    keyword: "发票".into(),
                    category: "invoice\"><b>".into(),
                    offset: at,
                    len: "发票".len(),
                    char_offset: 0,
                    char_len: 2,
                },
                // Not on a character boundary: left out, never a panic.
                Mark {
                    keyword: "x".into(),
                    category: "x".into(),
                    offset: at + 1,
                    len: 1,
                    char_offset: 0,
                    char_len: 1,
                },
            ],
            text,
        };
        let html = marked(&t).into_string();
        assert_eq!(
            html,
            "<mark title=\"免费 (ad)\">免费</mark>&lt;script&gt;x&lt;/script&gt; \
             <mark title=\"发票 (invoice&quot;&gt;&lt;b&gt;)\">发票</mark>"
        );
    }
}
