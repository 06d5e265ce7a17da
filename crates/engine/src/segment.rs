//! Segment: decide whether a Chinese keyword hit is a real word.
//!
//! Chinese has no spaces, so a substring match over-counts: 电影 is in 电影院
//! (cinema), 基金 in 基金会 (foundation), 成功 in 成功率. jieba's dictionary-based
//! segmentation tells them apart. A keyword also counts where it begins or ends a
//! compound jieba keeps whole, when the rest is a dictionary word of two characters
//! or more (特价|机票, 优惠|价格, 发财|致富): see [`Segmenter::is_word`]. It is the most expensive stage (about 50 MB/s),
//! so only a short window of Han text around each hit is segmented, never the whole
//! message. The dictionary takes ~100 ms to load, so by default it is built on a
//! background thread when the engine is made and waited for only at the first
//! Chinese hit ([`crate::EngineBuilder::load_in_background`]).

use crate::keywords::KeywordSet;
use crate::text::is_han;
use jieba_rs::Jieba;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

/// Characters of context segmented either side of a hit, at most. The window is
/// the run of Han characters around the hit (a clause: punctuation and Latin text
/// end it), so all the hits of a clause share one segmentation.
pub const WINDOW_CHARS: usize = 16;

/// A shared jieba instance that knows every Chinese keyword.
#[derive(Clone)]
pub struct Segmenter {
    jieba: Arc<OnceLock<Jieba>>,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("ready", &self.jieba.get().is_some())
            .finish()
    }
}

impl Segmenter {
    /// Loads the dictionary: on a background thread, returning at once, when
    /// `background` is set (scans wait for it only at the first Chinese hit);
    /// otherwise here, before returning, so no thread is left running.
    pub fn new(keywords: &KeywordSet, background: bool) -> Segmenter {
        let cell = Arc::new(OnceLock::new());
        let words: Vec<String> = keywords
            .keywords
            .iter()
            .filter(|k| k.is_cjk())
            .map(|k| k.normalised.clone())
            .collect();
        let spawned = background.then(|| {
            let filler = Arc::clone(&cell);
            let words = words.clone();
            std::thread::Builder::new()
                .name("chaff-jieba".into())
                .spawn(move || {
                    filler.get_or_init(|| build(&words));
                })
        });
        if !matches!(spawned, Some(Ok(_))) {
            // No thread to spare: build it now.
            cell.get_or_init(|| build(&words));
        }
        Segmenter { jieba: cell }
    }

    /// Blocks until the dictionary is loaded (a no-op afterwards).
    pub fn wait_ready(&self) {
        self.jieba();
    }

    /// Waits for the dictionary (only the first call can wait).
    fn jieba(&self) -> &Jieba {
        self.jieba.wait()
    }

    /// Is `text[start..end]` a word in jieba's segmentation of the Han text around
    /// it: whole words, or one of the two dictionary words a longer word is made
    /// of ([`MIN_COMPOUND_PART`])? Boundaries with non-Han text always count as word
    /// boundaries.
    pub fn is_word(&self, text: &str, start: usize, end: usize, cache: &mut WindowCache) -> bool {
        self.strength(text, start, end, cache) > 0.0
    }

    /// How much the hit `text[start..end]` counts, as a fraction of its keyword's
    /// weight: 1 for a word of its own, [`COMPOUND_START_STRENGTH`] for the first
    /// word of a compound (特价|机票), [`COMPOUND_END_STRENGTH`] for the second
    /// (市场|营销), 0 when it is no word ([`Segmenter::is_word`]).
    pub fn strength(&self, text: &str, start: usize, end: usize, cache: &mut WindowCache) -> f64 {
        let (ws, we) = match cache.range {
            // The previous window covers this hit well inside: reuse it.
            (s, e)
                if cache.valid
                    && s <= start
                    && end <= e
                    && (s == 0
                        || !text[..s].ends_with(is_han)
                        || start - s >= 3 * WINDOW_CHARS / 2)
                    && (e == text.len()
                        || !text[e..].starts_with(is_han)
                        || e - end >= 3 * WINDOW_CHARS / 2) =>
            {
                (s, e)
            }
            _ => window(text, start, end),
        };
        if !cache.valid || cache.range != (ws, we) {
            cache.valid = true;
            cache.range = (ws, we);
            let window = &text[ws..we];
            // Spam comes in campaigns: the same clause is segmented again and
            // again, so cuts are remembered per thread, the least recently used
            // forgotten one at a time when the memo is full (clearing it all at
            // once cost the unlucky message a few milliseconds).
            let boundaries = cache.memo.get_or_insert_ref(window, || {
                self.jieba()
                    .cut(window, false)
                    .iter()
                    .map(|t| t.byte_end as u32)
                    .collect()
            });
            cache.boundaries.clear();
            cache
                .boundaries
                .extend(boundaries.iter().map(|&b| ws + b as usize));
        }
        let at = |b: usize| b <= ws || b >= we || cache.boundaries.binary_search(&b).is_ok();
        if at(start) && at(end) {
            return 1.0;
        }
        // Not a word of its own: it may still be one of the two words a compound
        // is made of (特价|机票, 优惠|价格, 发财|致富). The hit must start or end
        // the word it lies in, and the rest of that word must be a dictionary word
        // of at least two characters: 电影|院, 基金|会 and 成功|率 leave one
        // character, and a hit that straddles two words (新一代|开发 has no 代开)
        // lies in no single word.
        let word_start = match cache.boundaries.binary_search(&start) {
            Ok(_) => start,
            Err(i) => i.checked_sub(1).map_or(ws, |j| cache.boundaries[j].max(ws)),
        };
        let word_end = match cache.boundaries.binary_search(&end) {
            Ok(_) => end,
            Err(i) => cache.boundaries.get(i).map_or(we, |&b| b.min(we)),
        };
        let (rest, at_end) = match (word_start == start, word_end == end) {
            (true, false) => (&text[end..word_end], false),
            (false, true) => (&text[word_start..start], true),
            _ => return 0.0,
        };
        // A word boundary inside the rest would mean the hit is not in one word.
        let inside = |b: &usize| *b > word_start && *b < word_end && *b != start && *b != end;
        let compound = rest.chars().nth(MIN_COMPOUND_PART - 1).is_some()
            && !cache.boundaries.iter().any(inside)
            && self.jieba().has_word(rest);
        if !compound {
            0.0
        } else if at_end {
            COMPOUND_END_STRENGTH
        } else {
            COMPOUND_START_STRENGTH
        }
    }
}

/// The other word of a compound that a keyword begins or ends (优惠|价格) must have
/// at least this many characters: a keyword plus one character (电影院, 基金会,
/// 成功率) is a different word.
pub const MIN_COMPOUND_PART: usize = 2;

/// How much a keyword that begins a compound (特价|机票, 优惠|价格) counts, and one
/// that ends it (市场|营销, 技术|咨询, 发财|致富), as fractions of its weight. A
/// compound is weaker evidence than the keyword standing alone, and at the end
/// (the compound's head) the keyword is mostly a business noun. Measured on
/// trec06c-dev keyword-only (`chaff eval`; ham flagged, recall at the threshold,
/// AUC, recall at 0.1 / 0.5 / 1 % ham false positives from `chaff score`):
/// compounds not counted (main) 58 ham, 68.5 %, 0.9295, 54.2 / 67.0 / 73.2 %;
/// both at full weight 68, 70.2 %, 0.9327, 53.6 / 65.8 / 73.6 %; start 1, end
/// 0.5: 65, 70.1 %, 0.9328, 54.4 / 66.4 / 73.8 %; start 1, end 0.25: 63, 70.0 %,
/// 0.9328, 54.5 / 66.5 / 73.9 %; start 1, end 0: 60, 69.7 %, 0.9324, 55.3 / 66.3
/// / 73.9 %; start 0.5, end 0.25 (these): 61, 69.5 %, 0.9325, 53.9 / 66.9 /
/// 73.5 %; start 0.5, end 0: 58, 69.1 %, 0.9321, 54.7 / 66.8 / 73.7 %. No
/// split kept the ham at 58 with the end still counting; these come closest.
/// trec07p-dev (English) is unaffected.
pub const COMPOUND_START_STRENGTH: f64 = 0.5;
/// See [`COMPOUND_START_STRENGTH`].
pub const COMPOUND_END_STRENGTH: f64 = 0.25;

/// Windows whose segmentation a thread remembers, at most.
pub const MEMO_WINDOWS: usize = 16 * 1024;

/// Per-thread segmentation state: the last window (reused for the next hit in the
/// same window) and a memo of recent windows' cuts. Call [`WindowCache::reset`]
/// before moving on to another text.
#[derive(Debug)]
pub struct WindowCache {
    valid: bool,
    range: (usize, usize),
    boundaries: Vec<usize>,
    memo: LruCache<String, Vec<u32>>,
}

impl Default for WindowCache {
    fn default() -> Self {
        WindowCache {
            valid: false,
            range: (0, 0),
            boundaries: Vec::new(),
            memo: LruCache::new(MEMO_CAPACITY),
        }
    }
}

/// [`MEMO_WINDOWS`], as the cache wants it.
const MEMO_CAPACITY: NonZeroUsize = match NonZeroUsize::new(MEMO_WINDOWS) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Frequency given to a keyword the dictionary lacks (代开, 直投): a common word's,
/// so that 代开发票 splits as 代开/发票 rather than 代/开发票, while words that
/// contain a keyword (新一代/开发) keep their own, higher-scoring segmentation.
const KEYWORD_FREQ: usize = 1000;

impl WindowCache {
    /// Forgets the window: the next text is another text.
    pub fn reset(&mut self) {
        self.valid = false;
    }
}

fn build(words: &[String]) -> Jieba {
    let mut jieba = Jieba::new();
    for w in words {
        if w.chars().all(is_han) && !jieba.has_word(w) {
            let freq = jieba.suggest_freq(w).max(KEYWORD_FREQ);
            jieba.add_word(w, Some(freq), None);
        }
    }
    jieba
}

/// The Han run around `[start, end)`, at most [`WINDOW_CHARS`] either side.
fn window(text: &str, start: usize, end: usize) -> (usize, usize) {
    let mut ws = start;
    for (n, (i, c)) in text[..start].char_indices().rev().enumerate() {
        if n >= WINDOW_CHARS || !is_han(c) {
            break;
        }
        ws = i;
    }
    let mut we = end;
    for (n, (i, c)) in text[end..].char_indices().enumerate() {
        if n >= WINDOW_CHARS || !is_han(c) {
            break;
        }
        we = end + i + c.len_utf8();
    }
    (ws, we)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg() -> Segmenter {
        Segmenter::new(&KeywordSet::embedded(), true)
    }

    fn word(s: &Segmenter, text: &str, kw: &str) -> bool {
        let start = text.find(kw).unwrap();
        s.is_word(text, start, start + kw.len(), &mut WindowCache::default())
    }

    #[test]
    fn words_inside_longer_words_are_not_hits() {
        let s = seg();
        assert!(!word(&s, "我们周末去电影院看看", "电影"));
        assert!(!word(&s, "他在慈善基金会工作", "基金"));
        assert!(word(&s, "免费看电影", "电影"));
        assert!(word(&s, "本公司代开发票", "代开"));
        assert!(word(&s, "购买股票基金", "基金"));
        assert!(!word(&s, "新一代开发平台", "代开"));
        assert!(!word(&s, "一直投入研发", "直投"));
    }

    /// A keyword in a compound counts with a fraction of its weight, less at the
    /// end than at the start.
    #[test]
    fn compound_parts_count_with_a_fraction() {
        let s = seg();
        let strength = |text: &str, kw: &str| {
            let start = text.find(kw).unwrap();
            s.strength(text, start, start + kw.len(), &mut WindowCache::default())
        };
        assert_eq!(strength("免费看电影", "电影"), 1.0);
        assert_eq!(
            strength("订购特价机票请回复", "特价"),
            COMPOUND_START_STRENGTH
        );
        assert_eq!(
            strength("教你发财致富的秘诀", "致富"),
            COMPOUND_END_STRENGTH
        );
        assert_eq!(strength("我们周末去电影院看看", "电影"), 0.0);
    }

    /// Issue 13: a keyword that begins or ends a compound of two dictionary words
    /// counts; one with a single character added, or straddling two words, does
    /// not.
    #[test]
    fn keywords_in_compounds_of_two_words() {
        let s = seg();
        // The compound is one jieba word: keyword + a word of two characters or more.
        for (text, kw) in [
            ("订购特价机票请回复", "特价"),
            ("本店优惠价格一览", "优惠"),
            ("教你发财致富的秘诀", "发财"),
            ("教你发财致富的秘诀", "致富"),
            ("我们提供免费邮箱服务", "免费"),
        ] {
            let start = text.find(kw).unwrap();
            let mut cache = WindowCache::default();
            assert!(
                s.is_word(text, start, start + kw.len(), &mut cache),
                "{kw} in {text}"
            );
        }
        // Keyword + one character, and a keyword across two words: not counted.
        for (text, kw) in [
            ("我们周末去电影院看看", "电影"),
            ("他在慈善基金会工作", "基金"),
            ("这次手术的成功率很高", "成功"),
            ("新一代开发平台", "代开"),
            ("一直投入研发", "直投"),
        ] {
            assert!(!word(&s, text, kw), "{kw} in {text}");
        }
    }

    #[test]
    fn non_han_neighbours_are_boundaries() {
        let s = seg();
        assert!(word(&s, "free免费!", "免费"));
        assert!(word(&s, "免费", "免费"));
    }
}
