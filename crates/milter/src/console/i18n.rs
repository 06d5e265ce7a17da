//! The console's languages: English and Chinese (zh-CN), each with one
//! catalogue of every string the pages show (`i18n/en.rs`, `i18n/zh_cn.rs`;
//! a test checks that both have the same keys).
//!
//! A page's language is the `chaff_lang` cookie's (set by the switch in the
//! page header, `GET /lang?to=…`), else the first of the browser's
//! `Accept-Language` that the console speaks (by q-value), else English.

mod en;
mod zh_cn;

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The cookie that keeps the chosen language.
pub const COOKIE: &str = "chaff_lang";

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    ZhCn,
}

type Catalogue = HashMap<&'static str, &'static str>;

static EN: LazyLock<Catalogue> = LazyLock::new(|| en::STRINGS.iter().copied().collect());
static ZH_CN: LazyLock<Catalogue> = LazyLock::new(|| zh_cn::STRINGS.iter().copied().collect());

impl Lang {
    /// Every language.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The BCP 47 tag (`lang` attribute, cookie).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's own name.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "中文",
        }
    }

    /// The language of a tag (`zh`, `zh-CN`, `zh-Hans`, `en-GB`…), if spoken.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("zh") {
            // Traditional Chinese readers get simplified rather than English.
            Some(Lang::ZhCn)
        } else {
            None
        }
    }

    /// The best spoken language of an `Accept-Language` value.
    pub fn from_accept_language(v: &str) -> Option<Lang> {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, item) in v.split(',').take(32).enumerate() {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q.is_nan() || q <= 0.0 {
                continue;
            }
            if let Some(l) = Lang::from_tag(tag) {
                // Higher q first; of equal q, the earlier.
                if best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
                    best = Some((q, i, l));
                }
            }
        }
        best.map(|(_, _, l)| l)
    }

    /// The language of a request: its cookie, its `Accept-Language`, English.
    pub fn of(headers: &HeaderMap) -> Lang {
        super::session::cookie(headers, COOKIE)
            .and_then(Lang::from_tag)
            .or_else(|| {
                headers
                    .get(axum::http::header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Lang::from_accept_language)
            })
            .unwrap_or(Lang::En)
    }

    fn catalogue(self) -> &'static Catalogue {
        match self {
            Lang::En => &EN,
            Lang::ZhCn => &ZH_CN,
        }
    }

    /// The string `key` in this language (the key itself if it has none: a
    /// test keeps the catalogues complete).
    pub fn t(self, key: &'static str) -> &'static str {
        self.catalogue()
            .get(key)
            .or_else(|| EN.get(key))
            .copied()
            .unwrap_or(key)
    }

    /// True when `key` is in the catalogues (for keys that come from a URL).
    pub fn has(self, key: &str) -> bool {
        self.catalogue().contains_key(key)
    }

    /// The string of a key known only at run time, if there is one.
    pub fn lookup(self, key: &str) -> Option<&'static str> {
        self.catalogue().get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn both_catalogues_have_the_same_keys_each_once() {
        fn keys(s: &[(&'static str, &'static str)]) -> BTreeSet<&'static str> {
            let set: BTreeSet<&str> = s.iter().map(|(k, _)| *k).collect();
            assert_eq!(set.len(), s.len(), "a key is given twice");
            set
        }
        let en = keys(en::STRINGS);
        let zh = keys(zh_cn::STRINGS);
        let only_en: Vec<_> = en.difference(&zh).collect();
        let only_zh: Vec<_> = zh.difference(&en).collect();
        assert!(only_en.is_empty(), "not translated: {only_en:?}");
        assert!(only_zh.is_empty(), "not in English: {only_zh:?}");
        for (k, v) in en::STRINGS.iter().chain(zh_cn::STRINGS) {
            assert!(!v.trim().is_empty(), "{k} is empty");
        }
    }

    #[test]
    fn every_key_the_code_uses_is_in_the_catalogues() {
        // The sources of the console, searched for `t("…")`.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console");
        let mut used = BTreeSet::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for piece in text.split(".t(\"").skip(1) {
                    if let Some(end) = piece.find('"') {
                        used.insert(piece[..end].to_string());
                    }
                }
            }
        }
        assert!(used.len() > 50, "{}", used.len());
        for k in &used {
            assert!(Lang::En.has(k), "`{k}` is used but not in the catalogue");
        }
    }

    #[test]
    fn the_language_comes_from_the_cookie_then_accept_language() {
        const MISSING: &str = "no.such.key";
        assert_eq!(
            Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"),
            Some(Lang::ZhCn)
        );
        assert_eq!(
            Lang::from_accept_language("fr, en-GB;q=0.8, zh;q=0.5"),
            Some(Lang::En)
        );
        assert_eq!(
            Lang::from_accept_language("en;q=0.2, zh-Hans;q=0.9"),
            Some(Lang::ZhCn)
        );
        assert_eq!(Lang::from_accept_language("fr, de;q=0.5"), None);
        assert_eq!(
            Lang::from_accept_language("zh;q=0, en;q=0.1"),
            Some(Lang::En)
        );
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h), Lang::En);
        h.insert("accept-language", "zh-CN".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::ZhCn);
        h.insert("cookie", "chaff_lang=en".parse().unwrap());
        assert_eq!(Lang::of(&h), Lang::En);
        assert_eq!(Lang::ZhCn.t("nav.reports"), "垃圾邮件报告列表");
        assert_eq!(Lang::En.t(MISSING), MISSING);
    }
}
