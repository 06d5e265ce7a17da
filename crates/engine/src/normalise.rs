//! Text normalisation with an offset map back to the source.
//!
//! Spammers dodge keyword lists with cheap tricks: full-width letters (`ｆｒｅｅ`),
//! zero-width characters (`免\u{200B}费`), separators between ideographs (`免 费`,
//! `免-费`), letter spacing (`v-i-a-g-r-a`) and traditional characters (`免費`).
//! This module folds all of these away so that a plain Aho-Corasick search for
//! `免费`, `free` or `sex` finds them, while recording for every output byte the
//! source byte it came from, so that hits can be reported against the original text.
//!
//! Only the folds listed on [`normalise_into`] are applied (no full NFKC), and the
//! common cases (ASCII words, plain CJK ideographs) take fast paths.

use crate::text::is_han;
use std::ops::Range;
use std::sync::OnceLock;

/// Normalised text plus, for every byte of it, the byte offset in the source of the
/// char it came from.
///
/// Invariants: `origin.len() == text.len()`; the origins are non-decreasing and
/// smaller than the source's length. Every byte of one output char has its origin
/// within the single source char that produced it: the char's first byte for a
/// folded char, the matching byte for a char copied unchanged (so that runs copy
/// their offsets in one go). Rounding an origin down to a char boundary of the
/// source, as [`Normalised::source_range`] does, gives that char's start.
#[derive(Debug, Default, Clone)]
pub struct Normalised {
    /// The normalised text.
    pub text: String,
    /// For each byte of `text`, a byte offset within the source char it came from.
    pub origin: Vec<u32>,
}

impl Normalised {
    /// An empty value, ready to be filled by [`normalise_into`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty the text and the offset map, keeping their allocations.
    pub fn clear(&mut self) {
        self.text.clear();
        self.origin.clear();
    }

    /// Source byte range `[start, end)` covered by the normalised byte range `[s, e)`.
    ///
    /// `start` is the origin of byte `s`; `end` is the origin of byte `e - 1` plus the
    /// UTF-8 length of the source char found there, so `source` must be the string
    /// this value was made from. Out-of-range or reversed arguments are clamped; the
    /// result always lies within `source` on char boundaries (an empty range for an
    /// empty `[s, e)`).
    pub fn source_range(&self, source: &str, s: usize, e: usize) -> Range<usize> {
        let len = self.text.len().min(self.origin.len());
        let s = s.min(len);
        let e = e.clamp(s, len);
        let at = |k: usize| {
            floor_boundary(
                source,
                self.origin.get(k).map_or(source.len(), |&o| o as usize),
            )
        };
        if s == e {
            let p = at(s);
            return p..p;
        }
        let start = at(s);
        let last = at(e - 1);
        let end = last
            + source
                .get(last..)
                .and_then(|t| t.chars().next())
                .map_or(0, char::len_utf8);
        start.min(end)..end
    }
}

/// The largest char boundary of `s` that is `<= i`.
fn floor_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Normalise `source` into `out` (cleared first; reuse `out` across calls so its
/// buffers are reused).
///
/// The folds, in effect:
/// - full-width ASCII forms (U+FF01–FF5E) become ASCII;
/// - every Unicode whitespace char (and the ideographic space U+3000) becomes a space,
///   and runs of whitespace collapse to one space;
/// - letters are lowercased (simple lowercase; ASCII on a fast path);
/// - invisible chars are dropped: zero-width spaces and joiners, bidi controls, word
///   joiners, BOM, soft hyphen, variation selectors, Hangul fillers, every other
///   format (Cf) char and every control char except whitespace ones;
/// - traditional Chinese becomes simplified (`免費` → `免费`), char by char through
///   the `fast2s` tables (its few context-dependent exceptions such as `乾隆` are not
///   applied, which keeps the fold idempotent);
/// - a run of separators (whitespace, ASCII punctuation, their full-width forms,
///   middle dots, CJK and general punctuation) between two Han ideographs is removed
///   (`免 - 费` → `免费`); elsewhere separators stay;
/// - a run of three or more single ASCII letters, each separated from the next by
///   exactly one separator char, the same one throughout, is joined
///   (`f r e e` → `free`, `v-i-a-g-r-a` → `viagra`), after the folds above.
///
/// Everything else passes through unchanged. The result is idempotent:
/// normalising it again yields the same text. Sources longer than `u32::MAX` bytes
/// are cut at the last char boundary below that length.
pub fn normalise_into(source: &str, out: &mut Normalised) {
    let source = if source.len() > u32::MAX as usize {
        &source[..floor_boundary(source, u32::MAX as usize)]
    } else {
        source
    };
    let mut w = Writer {
        text: std::mem::take(&mut out.text),
        origin: std::mem::take(&mut out.origin),
        last: Kind::Start,
        after_han: false,
        han_sep: NONE,
        join: Join::Idle,
    };
    w.text.clear();
    w.origin.clear();
    w.text.reserve(source.len());
    w.origin.reserve(source.len());
    let t2s = t2s_table();
    let src = source.as_bytes();
    let n = src.len();
    let mut i = 0;
    while i < n {
        let b = src[i];
        if b < 0x80 {
            if w.can_bulk() {
                let j = ascii_bulk_end(src, i, w.text.as_bytes().last() == Some(&b' '));
                if j > i {
                    w.bulk(source, i, j);
                    i = j;
                    continue;
                }
            }
            match ASCII_CLASS[b as usize] {
                C_ALNUM => {
                    let mut j = i + 1;
                    while j < n && ASCII_CLASS[src[j] as usize] == C_ALNUM {
                        j += 1;
                    }
                    w.ascii_run(source, i, j);
                    i = j;
                }
                C_SPACE => {
                    // After one space the rest of a whitespace run changes nothing
                    // (runs collapse): skip it in one go.
                    w.sep(' ', i);
                    i += 1;
                    while i < n && ASCII_CLASS[src[i] as usize] == C_SPACE {
                        i += 1;
                    }
                }
                C_PUNCT => {
                    w.sep(b as char, i);
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        if (0xE4..=0xE9).contains(&b) && han3(src, i).is_some() {
            w.before_han();
            i = w.han_run(source, i, t2s);
            continue;
        }
        let Some(c) = source.get(i..).and_then(|t| t.chars().next()) else {
            break;
        };
        w.slow(c, i, t2s);
        i += c.len_utf8();
    }
    w.join_boundary();
    out.text = w.text;
    out.origin = w.origin;
}

/// Convenience: normalise a keyword or short string, returning just the text.
pub fn normalise(source: &str) -> String {
    let mut out = Normalised::new();
    normalise_into(source, &mut out);
    out.text
}

/// End of the longest stretch of ASCII starting at `i` that needs no per-token
/// work: words of two or more letters or digits (any case), ASCII punctuation, and
/// single spaces (not following a space, `after_space` telling whether the output
/// already ends with one). Stops before a single-letter word, any whitespace other
/// than a lone space, a control char or a non-ASCII byte.
#[inline]
fn ascii_bulk_end(src: &[u8], i: usize, after_space: bool) -> usize {
    let n = src.len();
    let mut j = i;
    let mut prev_space = after_space;
    while j < n {
        let b = src[j];
        match ASCII_CLASS[b as usize] {
            C_ALNUM => {
                let start = j;
                j += 1;
                while j < n && ASCII_CLASS[src[j] as usize] == C_ALNUM {
                    j += 1;
                }
                if j - start == 1 && b.is_ascii_alphabetic() {
                    return start;
                }
                prev_space = false;
            }
            C_PUNCT => {
                j += 1;
                prev_space = false;
            }
            C_SPACE if b == b' ' && !prev_space => {
                j += 1;
                prev_space = true;
            }
            _ => return j,
        }
    }
    j
}

/// The code point of the 3-byte char at `i` if it is a CJK unified ideograph in
/// U+4E00–U+9FFF (lead bytes E4–E9).
#[inline(always)]
fn han3(src: &[u8], i: usize) -> Option<u32> {
    let &[b0, b1, b2] = src.get(i..i + 3)? else {
        return None;
    };
    // `src` is valid UTF-8, so a lead byte E4–E9 is followed by two continuation bytes.
    if !(0xE4..=0xE9).contains(&b0) {
        return None;
    }
    let cp = ((b0 as u32 & 0x0F) << 12) | ((b1 as u32 & 0x3F) << 6) | (b2 as u32 & 0x3F);
    (cp >= HAN_FIRST).then_some(cp)
}

const HAN_FIRST: u32 = 0x4E00;
const HAN_LAST: u32 = 0x9FFF;

/// Traditional → simplified table for U+4E00–U+9FFF.
struct T2s {
    /// One bit per ideograph: set when it changes (2.6 KB, stays in L1 cache).
    changed: Box<[u64]>,
    /// The simplified code point, or 0 when the char is unchanged.
    to: Box<[u16]>,
}

impl T2s {
    /// The simplified code point for ideograph `HAN_FIRST + k`, or 0 if unchanged.
    #[inline(always)]
    fn get(&self, k: usize) -> u16 {
        let bit = self
            .changed
            .get(k / 64)
            .is_some_and(|w| w >> (k % 64) & 1 != 0);
        if bit {
            self.to.get(k).copied().unwrap_or(0)
        } else {
            0
        }
    }
}

/// The table, built once from `fast2s` and resolved to a fixpoint.
fn t2s_table() -> &'static T2s {
    static TABLE: OnceLock<T2s> = OnceLock::new();
    TABLE.get_or_init(|| {
        let to = build_t2s();
        let mut changed = vec![0u64; to.len().div_ceil(64)];
        for (k, &v) in to.iter().enumerate() {
            if v != 0 {
                changed[k / 64] |= 1 << (k % 64);
            }
        }
        T2s {
            changed: changed.into_boxed_slice(),
            to,
        }
    })
}

fn build_t2s() -> Box<[u16]> {
    let count = (HAN_LAST - HAN_FIRST + 1) as usize;
    // One conversion of all ideographs, each between spaces so that none of fast2s's
    // two-char context rules fire.
    let mut all = String::with_capacity(count * 4);
    for cp in HAN_FIRST..=HAN_LAST {
        if let Some(c) = char::from_u32(cp) {
            all.push(c);
            all.push(' ');
        }
    }
    let converted = fast2s::convert(&all);
    let mut table = vec![0u16; count];
    let mapped: Vec<char> = converted.chars().filter(|&c| c != ' ').collect();
    if mapped.len() == count {
        for (k, &to) in mapped.iter().enumerate() {
            let to = to as u32;
            if to != HAN_FIRST + k as u32 && (HAN_FIRST..=HAN_LAST).contains(&to) {
                table[k] = to as u16;
            }
        }
    }
    // Resolve chains (a → b → c) so that the fold is idempotent.
    for k in 0..count {
        let mut v = table[k];
        for _ in 0..8 {
            let next = table
                .get((v as u32).wrapping_sub(HAN_FIRST) as usize)
                .copied()
                .unwrap_or(0);
            if v == 0 || next == 0 || next == v {
                break;
            }
            v = next;
        }
        if v as u32 == HAN_FIRST + k as u32 {
            v = 0;
        }
        table[k] = v;
    }
    table.into_boxed_slice()
}

const C_CTRL: u8 = 0;
const C_ALNUM: u8 = 1;
const C_SPACE: u8 = 2;
const C_PUNCT: u8 = 3;

/// Lead and continuation bytes of non-ASCII chars.
const C_HIGH: u8 = 4;

/// Class of each byte.
static ASCII_CLASS: [u8; 256] = {
    let mut t = [C_HIGH; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() {
            C_ALNUM
        } else if matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            C_SPACE
        } else if c.is_ascii_punctuation() {
            C_PUNCT
        } else {
            C_CTRL
        };
        b += 1;
    }
    t
};

/// Invisible chars that are dropped: C1 controls, format (Cf) chars, variation
/// selectors, combining grapheme joiner, Hangul fillers and similar blanks.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1F | 0x7F..=0x9F
        | 0xAD | 0x34F | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890 | 0x891 | 0x8E2
        | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F
        | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF9..=0xFFFB
        | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Non-ASCII separators: Latin-1 punctuation and symbols, general punctuation
/// (dashes, quotes, bullets, ellipsis), arrows, box drawing, block elements,
/// geometric shapes, miscellaneous symbols and dingbats (the rules and stars of
/// spam layouts, and `免★费`), CJK punctuation and brackets, the katakana middle
/// dot, small and vertical forms, half-width punctuation, full-width symbols, and
/// the replacement character a broken byte decodes to.
fn is_sep(c: char) -> bool {
    matches!(c as u32,
        0xA1..=0xA9 | 0xAB | 0xAC | 0xAE..=0xB1 | 0xB4 | 0xB6..=0xB8 | 0xBB | 0xBF | 0xD7 | 0xF7
        | 0x2010..=0x2027 | 0x2030..=0x205E | 0x2190..=0x21FF | 0x2500..=0x27BF
        | 0x3001..=0x3004 | 0x3008..=0x3020 | 0x3030 | 0x303D..=0x303F | 0x30FB
        | 0xFE10..=0xFE19 | 0xFE30..=0xFE4F | 0xFE50..=0xFE6B
        | 0xFF5F..=0xFF65 | 0xFFE0..=0xFFEE | 0xFFFD)
}

/// Punctuation that ends a clause (after full-width folding): never dropped
/// between ideographs. Spammers split words with spaces, dots, dashes and stars,
/// which stay droppable.
fn is_clause_mark(c: char) -> bool {
    matches!(c, ',' | ';' | ':' | '!' | '?' | '、' | '。')
}

/// Sentinel for "no pending separator run after a Han char".
const NONE: usize = usize::MAX;

/// What the last emitted output char was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Start,
    /// ASCII letter or digit.
    Alnum,
    /// Non-ASCII letter or digit other than Han.
    Word,
    Han,
    Sep,
    /// Anything else (symbols, emoji, marks).
    Other,
}

/// State of the letter-spacing detector (`f r e e`). Positions are output byte
/// indices; letters are one byte, separators `sep_len` bytes.
#[derive(Clone, Copy, Debug)]
enum Join {
    Idle,
    /// `n` single-letter candidates ending with a letter whose singleness is not yet
    /// confirmed (the next output char decides).
    Letter {
        start: usize,
        sep: char,
        sep_len: usize,
        n: usize,
    },
    /// `n` confirmed single letters, the last one followed by one separator.
    Sep {
        start: usize,
        sep: char,
        sep_len: usize,
        n: usize,
    },
}

struct Writer {
    text: String,
    origin: Vec<u32>,
    last: Kind,
    /// The last non-separator char emitted was Han.
    after_han: bool,
    /// Output index where the separator run after a Han char started, or `NONE`.
    han_sep: usize,
    join: Join,
}

impl Writer {
    #[inline]
    fn push_char(&mut self, c: char, at: usize) {
        self.text.push(c);
        let o = at as u32;
        match c.len_utf8() {
            1 => self.origin.push(o),
            k => self.origin.extend(std::iter::repeat_n(o, k)),
        }
    }

    /// Whether the ASCII bulk path may be used: no letter run pending, and no
    /// separator run after a Han char to track.
    #[inline]
    fn can_bulk(&self) -> bool {
        matches!(self.join, Join::Idle) && !self.after_han
    }

    /// Copy `source[i..j]`, a stretch found by [`ascii_bulk_end`], lowercased.
    #[inline]
    fn bulk(&mut self, source: &str, i: usize, j: usize) {
        let Some(run) = source.get(i..j) else {
            return;
        };
        let p = self.text.len();
        self.text.push_str(run);
        if run.bytes().any(|b| b.is_ascii_uppercase())
            && let Some(t) = self.text.get_mut(p..)
        {
            t.make_ascii_lowercase();
        }
        self.origin.extend(i as u32..j as u32);
        self.last = match run.as_bytes().last() {
            Some(b) if b.is_ascii_alphanumeric() => Kind::Alnum,
            _ => Kind::Sep,
        };
    }

    /// The run `source[i..j]` of ASCII letters and digits.
    #[inline]
    fn ascii_run(&mut self, source: &str, i: usize, j: usize) {
        let Some(run) = source.get(i..j) else {
            return;
        };
        self.alnum(run, i);
    }

    /// ASCII letters and digits `run` from source offset `at` (each one byte there,
    /// or all from the one char at `at` when `run` is a single folded char).
    #[inline]
    fn alnum(&mut self, run: &str, at: usize) {
        let b = run.as_bytes();
        if b.len() == 1 && b[0].is_ascii_alphabetic() {
            self.join_letter();
        } else {
            self.join_word();
        }
        self.han_sep = NONE;
        self.after_han = false;
        let p = self.text.len();
        self.text.push_str(run);
        if b.iter().any(u8::is_ascii_uppercase)
            && let Some(t) = self.text.get_mut(p..)
        {
            t.make_ascii_lowercase();
        }
        let at = at as u32;
        self.origin.extend(at..at + b.len() as u32);
        self.last = Kind::Alnum;
    }

    /// A single ASCII char produced by a fold (full-width form, Kelvin sign, ...).
    fn ascii_char(&mut self, b: u8, at: usize) {
        match ASCII_CLASS[b as usize] {
            C_ALNUM => {
                let c = [b];
                if let Ok(s) = std::str::from_utf8(&c) {
                    self.alnum(s, at);
                }
            }
            C_SPACE => self.sep(' ', at),
            C_PUNCT => self.sep(b as char, at),
            _ => {}
        }
    }

    /// A separator char (whitespace already mapped to `' '`).
    #[inline]
    fn sep(&mut self, c: char, at: usize) {
        if c == ' ' && self.text.as_bytes().last() == Some(&b' ') {
            return;
        }
        if !matches!(self.join, Join::Idle) {
            self.join_sep(c);
        }
        if is_clause_mark(c) {
            // A real clause boundary: kept, so that segmentation sees it and a
            // keyword is not made up of the end of one clause and the start of the
            // next (写真、情色 must not read as 真情).
            self.push_char(c, at);
            self.after_han = false;
            self.han_sep = NONE;
            self.last = Kind::Sep;
            return;
        }
        if self.after_han && self.han_sep == NONE {
            self.han_sep = self.text.len();
        }
        self.push_char(c, at);
        self.last = Kind::Sep;
    }

    /// Settle state before a Han ideograph is pushed: finish any letter run and drop
    /// the separators emitted since the previous Han char.
    fn before_han(&mut self) {
        self.join_boundary();
        if self.han_sep != NONE {
            let keep = self.han_sep;
            if self.text.is_char_boundary(keep) {
                self.text.truncate(keep);
                self.origin.truncate(keep);
            }
            self.han_sep = NONE;
        }
        self.after_han = true;
        self.last = Kind::Han;
    }

    /// Push the run of U+4E00–U+9FFF ideographs starting at `source[i..]`, folded to
    /// simplified; returns the source offset after the run. Unchanged stretches are
    /// copied in one go.
    #[inline]
    fn han_run(&mut self, source: &str, mut i: usize, t2s: &T2s) -> usize {
        let src = source.as_bytes();
        loop {
            let seg = i;
            let mut to = 0;
            while let Some(cp) = han3(src, i) {
                to = t2s.get((cp - HAN_FIRST) as usize);
                if to != 0 {
                    break;
                }
                i += 3;
            }
            if i > seg {
                if let Some(t) = source.get(seg..i) {
                    self.text.push_str(t);
                }
                // Unchanged chars: each byte maps to its own source byte.
                self.origin.extend(seg as u32..i as u32);
            }
            if to == 0 {
                return i;
            }
            if let Some(c) = char::from_u32(to as u32) {
                self.text.push(c);
                let o = i as u32;
                self.origin.extend_from_slice(&[o, o, o]);
            }
            i += 3;
        }
    }

    /// Any non-ASCII char.
    fn slow(&mut self, c: char, at: usize, t2s: &T2s) {
        let cp = c as u32;
        if (0xFF01..=0xFF5E).contains(&cp) {
            self.ascii_char((cp - 0xFEE0) as u8, at);
        } else if (0x3001..=0x3003).contains(&cp) {
            // 、。〃: the common CJK punctuation, ahead of the longer checks.
            self.sep(c, at);
        } else if c.is_whitespace() {
            self.sep(' ', at);
        } else if is_invisible(c) {
        } else if is_han(c) {
            self.before_han();
            let to = cp
                .checked_sub(HAN_FIRST)
                .map(|k| t2s.get(k as usize))
                .filter(|&to| to != 0)
                .and_then(|to| char::from_u32(to as u32));
            self.push_char(to.unwrap_or(c), at);
        } else if is_sep(c) {
            self.sep(c, at);
        } else {
            let l = c.to_lowercase().next().unwrap_or(c);
            if l.is_ascii() {
                self.ascii_char(l as u8, at);
                return;
            }
            if l.is_alphanumeric() {
                self.join_word();
                self.last = Kind::Word;
            } else {
                self.join_boundary();
                self.last = Kind::Other;
            }
            self.han_sep = NONE;
            self.after_han = false;
            self.push_char(l, at);
        }
    }

    /// A single ASCII letter is about to be pushed.
    fn join_letter(&mut self) {
        let p = self.text.len();
        self.join = match self.join {
            Join::Idle if !matches!(self.last, Kind::Alnum | Kind::Word) => Join::Letter {
                start: p,
                sep: ' ',
                sep_len: 0,
                n: 1,
            },
            Join::Idle => Join::Idle,
            Join::Letter {
                start, sep_len, n, ..
            } => {
                // The previous letter was not single: keep the confirmed ones.
                if n > 3 {
                    self.join_run(start, sep_len, n - 1);
                }
                Join::Idle
            }
            Join::Sep {
                start,
                sep,
                sep_len,
                n,
            } => Join::Letter {
                start,
                sep,
                sep_len,
                n: n + 1,
            },
        };
    }

    /// A letter or digit that cannot be a single-letter candidate is about to be pushed.
    fn join_word(&mut self) {
        match std::mem::replace(&mut self.join, Join::Idle) {
            Join::Idle => {}
            Join::Letter {
                start, sep_len, n, ..
            } => {
                if n > 3 {
                    self.join_run(start, sep_len, n - 1);
                }
            }
            Join::Sep {
                start, sep_len, n, ..
            } => {
                if n >= 3 {
                    self.join_run(start, sep_len, n);
                }
            }
        }
    }

    /// A separator `c` is about to be pushed.
    fn join_sep(&mut self, c: char) {
        let p = self.text.len();
        let len = c.len_utf8();
        self.join = match self.join {
            Join::Idle => Join::Idle,
            Join::Letter { start, n: 1, .. } => Join::Sep {
                start,
                sep: c,
                sep_len: len,
                n: 1,
            },
            Join::Letter {
                start,
                sep,
                sep_len,
                n,
            } => {
                if c == sep {
                    Join::Sep {
                        start,
                        sep,
                        sep_len,
                        n,
                    }
                } else if n >= 3 {
                    self.join_run(start, sep_len, n);
                    Join::Idle
                } else {
                    // The last letter may start a run with the new separator.
                    Join::Sep {
                        start: p.saturating_sub(1),
                        sep: c,
                        sep_len: len,
                        n: 1,
                    }
                }
            }
            Join::Sep {
                start, sep_len, n, ..
            } => {
                if n >= 3 {
                    self.join_run(start, sep_len, n);
                }
                Join::Idle
            }
        };
    }

    /// A boundary (Han, symbol, end of text) is about to be pushed.
    fn join_boundary(&mut self) {
        match std::mem::replace(&mut self.join, Join::Idle) {
            Join::Idle => {}
            Join::Letter {
                start, sep_len, n, ..
            }
            | Join::Sep {
                start, sep_len, n, ..
            } => {
                if n >= 3 {
                    self.join_run(start, sep_len, n);
                }
            }
        }
    }

    /// Remove the separators between the `n` single letters that start at `start`
    /// (letter, `sep_len`-byte separator, letter, ...), shifting what follows.
    fn join_run(&mut self, start: usize, sep_len: usize, n: usize) {
        let stride = 1 + sep_len;
        let run_end = start + (n - 1) * stride + 1;
        let len = self.text.len();
        if n < 2 || run_end > len {
            debug_assert!(false, "letter run out of range");
            return;
        }
        let bytes = self.text.as_bytes();
        let letters: String = (0..n).map(|k| bytes[start + k * stride] as char).collect();
        if !self.text.is_char_boundary(start) || !self.text.is_char_boundary(run_end) {
            debug_assert!(false, "letter run not on char boundaries");
            return;
        }
        self.text.replace_range(start..run_end, &letters);
        for k in 1..n {
            self.origin[start + k] = self.origin[start + k * stride];
        }
        self.origin.copy_within(run_end..len, start + n);
        self.origin.truncate(len - (run_end - start - n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> String {
        normalise(s)
    }

    #[test]
    fn full_width_ascii_folds() {
        assert_eq!(n("ＳＥＸ"), "sex");
        assert_eq!(n("ｆｒｅｅ！"), "free!");
        assert_eq!(n("１００％"), "100%");
    }

    #[test]
    fn whitespace_folds_and_collapses() {
        assert_eq!(n("a\u{3000}b"), "a b");
        assert_eq!(n("hello \t\r\n  world"), "hello world");
        assert_eq!(n("x\u{00A0}\u{2003}y"), "x y");
        assert_eq!(n("  lead and trail  "), " lead and trail ");
    }

    #[test]
    fn lowercases() {
        assert_eq!(n("FREE Money"), "free money");
        assert_eq!(n("ÀÉÎ"), "àéî");
        assert_eq!(n("ΣΩ"), "σω");
        assert_eq!(n("\u{212A}"), "k"); // Kelvin sign
        assert_eq!(n("\u{0130}"), "i");
    }

    #[test]
    fn drops_invisibles() {
        assert_eq!(n("fr\u{200B}ee"), "free");
        assert_eq!(n("s\u{00AD}e\u{FEFF}x"), "sex");
        assert_eq!(
            n("a\u{2060}b\u{200D}c\u{FE0F}d\u{034F}e\u{180E}f"),
            "abcdef"
        );
        assert_eq!(n("vi\u{202E}agra"), "viagra");
        assert_eq!(n("a\u{0001}b\u{007F}c\u{0085}d"), "abc d");
        assert_eq!(n("\u{E0041}x"), "x");
    }

    #[test]
    fn traditional_to_simplified() {
        assert_eq!(n("免費"), "免费");
        assert_eq!(n("發財"), "发财");
        assert_eq!(n("優惠"), "优惠");
        assert_eq!(n("賺錢"), "赚钱");
        assert_eq!(n("免费"), "免费");
    }

    #[test]
    fn separators_between_han_are_removed() {
        for s in [
            "免 费",
            "免-费",
            "免.费",
            "免*费",
            "代　开",
            "免\u{200B}费",
            "免 - 费",
            "免·费",
            "免•费",
            "免・费",
            "免／费",
            "免\n\n费",
            "免_费",
            "免 \u{200B} 费",
            "免★费",
            "免☆费",
            "免◆费",
            "免──费",
            "免→费",
            "免\u{FFFD}费",
        ] {
            let want = if s.starts_with('代') {
                "代开"
            } else {
                "免费"
            };
            assert_eq!(n(s), want, "{s:?}");
        }
        assert_eq!(n("代 开 发 票"), "代开发票");
        assert_eq!(n("發 財"), "发财");
    }

    #[test]
    fn clause_punctuation_between_han_stays() {
        assert_eq!(n("免、费"), "免、费");
        assert_eq!(n("免。费"), "免。费");
        assert_eq!(n("免，费"), "免,费");
        assert_eq!(n("写真、情色短片"), "写真、情色短片");
        assert_eq!(n("免 ， 费"), "免 , 费");
    }

    #[test]
    fn separators_elsewhere_stay() {
        assert_eq!(n("free money"), "free money");
        assert_eq!(n("免费 free"), "免费 free");
        assert_eq!(n("free 免费"), "free 免费");
        assert_eq!(n("免 a 费"), "免 a 费");
        assert_eq!(n("免费!"), "免费!");
        assert_eq!(n("免费 "), "免费 ");
        assert_eq!(n("免1费"), "免1费");
    }

    #[test]
    fn spaced_letters_join() {
        assert_eq!(n("f r e e"), "free");
        assert_eq!(n("v-i-a-g-r-a"), "viagra");
        assert_eq!(n("s.e.x"), "sex");
        assert_eq!(n("F R E E money"), "free money");
        assert_eq!(n("get f r e e now"), "get free now");
        assert_eq!(n("ｆ ｒ ｅ ｅ"), "free");
        assert_eq!(n("f  r \u{200B} e\te"), "free");
        assert_eq!(n("s·e·x"), "sex");
        assert_eq!(n("(s.e.x)"), "(sex)");
        assert_eq!(n("a b c-d-e"), "abc-d-e");
        assert_eq!(n("a b-c-d"), "a bcd");
        assert_eq!(n("f r e ee"), "fre ee");
        assert_eq!(n("f r e e5"), "fre e5");
        assert_eq!(n("s e x免费"), "sex免费");
    }

    #[test]
    fn normal_text_is_not_joined() {
        assert_eq!(n("a b"), "a b");
        assert_eq!(n("I am a man"), "i am a man");
        assert_eq!(n("a - b - c"), "a - b - c");
        assert_eq!(n("a b 1"), "a b 1");
        assert_eq!(n("ab c d"), "ab c d");
        assert_eq!(n("Essex"), "essex");
        assert_eq!(n("e.g."), "e.g.");
    }

    #[test]
    fn other_text_passes_through() {
        assert_eq!(n("ｶﾀｶﾅ"), "ｶﾀｶﾅ");
        assert_eq!(n("①"), "①");
        assert_eq!(n("ﬁ"), "ﬁ");
        assert_eq!(n("😀"), "😀");
        assert_eq!(n("𠀀"), "𠀀");
        assert_eq!(n(""), "");
    }

    #[test]
    fn origins_map_back() {
        let src = "ＦＲＥＥ 免 費!";
        let mut out = Normalised::new();
        normalise_into(src, &mut out);
        assert_eq!(out.text, "free 免费!");
        assert_eq!(out.origin.len(), out.text.len());
        let at = out.text.find("免费").unwrap_or(0);
        let r = out.source_range(src, at, at + "免费".len());
        assert_eq!(&src[r], "免 費");
        let r = out.source_range(src, 0, 4);
        assert_eq!(&src[r], "ＦＲＥＥ");
        let r = out.source_range(src, 3, 3);
        assert!(r.is_empty());
        // Clamped arguments.
        let r = out.source_range(src, 5, 1000);
        assert_eq!(&src[r], "免 費!");
    }

    #[test]
    fn origins_through_joins() {
        let src = "x f-r-e-e y";
        let mut out = Normalised::new();
        normalise_into(src, &mut out);
        assert_eq!(out.text, "x free y");
        assert_eq!(out.origin, vec![0, 1, 2, 4, 6, 8, 9, 10]);
        assert_eq!(&src[out.source_range(src, 2, 6)], "f-r-e-e");
    }

    #[test]
    fn buffers_are_reused() {
        let mut out = Normalised::new();
        normalise_into("a long first string with words", &mut out);
        normalise_into("Ｂ", &mut out);
        assert_eq!(out.text, "b");
        assert_eq!(out.origin, vec![0]);
        out.clear();
        assert!(out.text.is_empty() && out.origin.is_empty());
    }

    #[test]
    fn t2s_table_is_a_fixpoint() {
        let table = t2s_table();
        let t = &table.to;
        for k in 0..t.len() {
            assert_eq!(table.get(k), t[k]);
        }
        assert!(t.iter().filter(|&&v| v != 0).count() > 2000);
        for &v in t.iter().filter(|&&v| v != 0) {
            assert_eq!(t[(v as u32 - HAN_FIRST) as usize], 0);
        }
    }

    fn check_invariants(src: &str) {
        let mut out = Normalised::new();
        normalise_into(src, &mut out);
        assert_eq!(out.origin.len(), out.text.len());
        let mut prev = 0u32;
        for &o in &out.origin {
            assert!((o as usize) < src.len());
            assert!(o >= prev);
            prev = o;
        }
        // All bytes of one output char come from one source char.
        for (k, c) in out.text.char_indices() {
            let first = floor_boundary(src, out.origin[k] as usize);
            for b in 1..c.len_utf8() {
                assert_eq!(floor_boundary(src, out.origin[k + b] as usize), first);
            }
        }
        let bounds: Vec<usize> = out
            .text
            .char_indices()
            .map(|(k, _)| k)
            .chain([out.text.len()])
            .collect();
        for (a, &s) in bounds.iter().enumerate() {
            for &e in &bounds[a..] {
                let r = out.source_range(src, s, e);
                assert!(r.start <= r.end && r.end <= src.len());
                assert!(src.is_char_boundary(r.start) && src.is_char_boundary(r.end));
            }
        }
        let again = normalise(&out.text);
        assert_eq!(again, out.text, "not idempotent for {src:?}");
    }

    /// Strings mixing CJK, separators, invisibles and spaced letters.
    fn tricky() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("免".to_string()),
            Just("費".to_string()),
            Just("发".to_string()),
            Just("乾".to_string()),
            Just("𠀀".to_string()),
            Just(" ".to_string()),
            Just("\u{3000}".to_string()),
            Just("\n".to_string()),
            Just("-".to_string()),
            Just(".".to_string()),
            Just("·".to_string()),
            Just("、".to_string()),
            Just("，".to_string()),
            Just("\u{200B}".to_string()),
            Just("\u{FEFF}".to_string()),
            Just("\u{00AD}".to_string()),
            Just("Ｆ".to_string()),
            Just("ｅ".to_string()),
            Just("\u{212A}".to_string()),
            Just("İ".to_string()),
            Just("é".to_string()),
            Just("1".to_string()),
            "[a-zA-Z]{1,3}",
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn invariants_on_arbitrary_strings(s in any::<String>()) {
            check_invariants(&s);
        }

        #[test]
        fn invariants_on_tricky_mixes(s in tricky()) {
            check_invariants(&s);
        }

        #[test]
        fn no_han_separator_survives(a in "[免费代开发票]", seps in "[ \\-.*_/|~+=#'\"^·•・\u{3000}\u{200B}]{0,5}", b in "[免费代开发票]") {
            let s = format!("{a}{seps}{b}");
            prop_assert_eq!(normalise(&s), format!("{a}{b}"));
        }
    }
}
