//! Match: find every keyword in normalised text in one pass.
//!
//! One Aho-Corasick automaton holds all categories, Chinese and Latin keywords
//! together; its cost does not grow with the number of keywords the way one search
//! per keyword would. Latin keywords must stand as whole words (`sex` is not in
//! `essex`); Chinese keywords are checked by the next stage, segmentation.

use crate::error::Error;
use crate::keywords::KeywordSet;
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// A keyword found in normalised text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// Index into [`KeywordSet::keywords`].
    pub keyword: u32,
    /// Byte range in the normalised text.
    pub start: u32,
    /// End of the byte range (exclusive).
    pub end: u32,
}

/// The compiled keyword automaton.
#[derive(Debug, Clone)]
pub struct Matcher {
    automaton: AhoCorasick,
    /// Per keyword: must the match start / end on a word boundary?
    bounds: Vec<(bool, bool)>,
}

impl Matcher {
    /// Compiles the keywords (their normalised forms).
    pub fn new(keywords: &KeywordSet) -> Result<Matcher, Error> {
        let patterns: Vec<&str> = keywords
            .keywords
            .iter()
            .map(|k| k.normalised.as_str())
            .collect();
        let build = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(kind)
                .build(&patterns)
        };
        // A DFA is fastest; very large lists fall back to the automatic choice.
        let automaton = build(Some(AhoCorasickKind::DFA))
            .or_else(|_| build(None))
            .map_err(Error::Matcher)?;
        let bounds = patterns
            .iter()
            .map(|p| {
                let first = p.chars().next().is_some_and(is_word_char);
                let last = p.chars().next_back().is_some_and(is_word_char);
                (first, last)
            })
            .collect();
        Ok(Matcher { automaton, bounds })
    }

    /// Appends the keyword occurrences in `text` to `out`.
    pub fn find_into(&self, text: &str, out: &mut Vec<Occurrence>) {
        let bytes = text.as_bytes();
        for m in self.automaton.find_iter(bytes) {
            let (need_start, need_end) = self.bounds[m.pattern().as_usize()];
            if need_start
                && text[..m.start()]
                    .chars()
                    .next_back()
                    .is_some_and(is_word_char)
            {
                continue;
            }
            if need_end && text[m.end()..].chars().next().is_some_and(is_word_char) {
                continue;
            }
            out.push(Occurrence {
                keyword: m.pattern().as_u32(),
                start: m.start() as u32,
                end: m.end() as u32,
            });
        }
    }
}

/// Letters and digits of alphabetic scripts form words; Han characters do not
/// (Chinese has no spaces, so they are left to segmentation).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !crate::text::is_han(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn matcher(list: &str) -> (KeywordSet, Matcher) {
        let mut set = KeywordSet::default();
        set.add_list("t", list, Path::new("t")).unwrap();
        let m = Matcher::new(&set).unwrap();
        (set, m)
    }

    fn found(list: &str, text: &str) -> Vec<String> {
        let (set, m) = matcher(list);
        let mut out = Vec::new();
        m.find_into(text, &mut out);
        out.iter()
            .map(|o| set.keywords[o.keyword as usize].normalised.clone())
            .collect()
    }

    #[test]
    fn latin_keywords_are_whole_words() {
        assert_eq!(
            found("sex", "sex essex sussex sextant sex."),
            ["sex", "sex"]
        );
        assert_eq!(
            found("free", "free! freedom carefree (free)"),
            ["free", "free"]
        );
        assert_eq!(found("make money", "make money fast"), ["make money"]);
    }

    #[test]
    fn chinese_keywords_match_anywhere() {
        assert_eq!(
            found("免费\n电影", "免费电影，看电影院"),
            ["免费", "电影", "电影"]
        );
        assert_eq!(found("sex", "看sex电影"), ["sex"]);
    }

    #[test]
    fn offsets_are_byte_ranges() {
        let (_, m) = matcher("优惠");
        let mut out = Vec::new();
        m.find_into("a优惠", &mut out);
        assert_eq!((out[0].start, out[0].end), (1, 7));
    }
}
