//! Feature extraction: a decoded, normalised message becomes a set of hashed binary
//! features.
//!
//! This module exists because the classifier needs features that fit Chinese *and*
//! English mail, cost only a few microseconds per message (the scanner's whole
//! budget is well under 100 µs), and keep memory bounded whatever the vocabulary:
//!
//! * CJK text: character unigrams and bigrams (optionally trigrams). On this kind of
//!   mail they carry what jieba words carry at a fraction of the cost (jieba over a
//!   whole message costs ~100 µs; see the module docs of [`super`]).
//! * Latin text: words, plus compounds joined by `.`, `-`, `_`, `@` or `'` (domains,
//!   addresses, version numbers) as tokens of their own.
//! * The subject, tokenised the same way in a namespace of its own.
//! * A few header features: the `From:` address and its domain, the names of the
//!   headers present and the words of a few telling headers (`X-Mailer`,
//!   `Content-Type`, `Message-ID`, `Received`…), read from the raw header block.
//!
//! Every token is hashed (with a per-kind seed) into one of `2^bits` buckets, and
//! each bucket counts once per message (binary features). The extractor keeps a copy
//! of the text it read, so a feature can be shown as the token it came from when a
//! verdict explains itself.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of the tokeniser and hashing scheme: what `chaff train` writes. A model
/// records the version it was trained with and is scanned with the features of that
/// version, as long as this build still reads it ([`OLDEST_FEATURES_VERSION`]); a
/// model of a version outside that range is refused rather than silently scored with
/// features that do not match its weights.
///
/// * 1: the texts of a message as mail-parser listed them: of a
///   multipart/alternative, only the HTML (unless mail-parser also listed the
///   plain text with it), and an HTML part mail-parser filed as plain text read
///   with its tags.
/// * 2: every alternative of a multipart/alternative (a bucket counts once
///   anyway), and every `text/html` part reduced to its visible text
///   (`decode::V1Read` records what version 1 read instead).
pub const FEATURES_VERSION: u32 = 2;

/// The oldest tokeniser version this build still scans with: a model trained with
/// it keeps working unchanged, and `chaff` says it should be retrained.
pub const OLDEST_FEATURES_VERSION: u32 = 1;

/// Which features to extract. Stored in the model file: scanning must use the settings
/// the model was trained with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureConfig {
    /// log2 of the number of hash buckets (weights), 16..=26 (clamped there by
    /// [`Extractor::new`]; `chaff.toml` values outside are refused).
    pub bits: u8,
    /// CJK single characters.
    pub cjk_unigrams: bool,
    /// CJK character bigrams.
    pub cjk_bigrams: bool,
    /// CJK character trigrams.
    pub cjk_trigrams: bool,
    /// Pairs of adjacent Latin words.
    pub word_bigrams: bool,
    /// Header features (names present, values of telling headers, `From:` domain).
    pub headers: bool,
    /// At most this many bytes of body text are read per message (0: no limit).
    pub max_body_bytes: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            bits: 20,
            cjk_unigrams: true,
            cjk_bigrams: true,
            cjk_trigrams: false,
            word_bigrams: true,
            headers: true,
            max_body_bytes: 4096,
        }
    }
}

/// Where a piece of text came from, which namespaces its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The decoded subject.
    Subject,
    /// A text part (plain text, or the visible text of HTML).
    Body,
}

/// What kind of token a feature is; decides how it is shown in an explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A body word, compound or CJK n-gram.
    Body = 0,
    /// A subject word, compound or CJK n-gram.
    Subject = 1,
    /// A pair of adjacent words (the token text holds both).
    WordPair = 2,
    /// The `From:` address.
    FromAddr = 3,
    /// The `From:` domain (or its last two labels).
    FromDomain = 4,
    /// The name of a header that is present.
    HeaderName = 5,
    /// A word in the value of a header (the header is recorded in `Feature::header`).
    HeaderWord = 6,
}

impl Kind {
    /// The prefix shown before the token text in explanations (`subject:`, `from:`…).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Body | Kind::WordPair => "",
            Kind::Subject => "subject:",
            Kind::FromAddr => "from:",
            Kind::FromDomain => "from-domain:",
            Kind::HeaderName => "header:",
            Kind::HeaderWord => "",
        }
    }

    fn seed(self) -> u64 {
        // Arbitrary odd constants; changing them changes every hash (FEATURES_VERSION).
        match self {
            Kind::Body => 0x9e37_79b9_7f4a_7c15,
            Kind::Subject => 0xc2b2_ae3d_27d4_eb4f,
            Kind::WordPair => 0x1656_67b1_9e37_79f9,
            Kind::FromAddr => 0x27d4_eb2f_1656_67c5,
            Kind::FromDomain => 0x85eb_ca77_c2b2_ae63,
            Kind::HeaderName => 0xff51_afd7_ed55_8ccd,
            Kind::HeaderWord => 0xc4ce_b9fe_1a85_ec53,
        }
    }
}

/// One feature of a message: its bucket and where its token stands in the extractor's
/// copy of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The hash bucket, `< 2^bits`.
    pub bucket: u32,
    /// Byte offset of the token in [`Extractor::text`].
    pub start: u32,
    /// Byte length of the token.
    pub len: u16,
    /// What kind of token it is.
    pub kind: Kind,
}

/// The headers whose values are tokenised (lowercase names). Chosen as the headers
/// every statistical filter finds telling: the mailer, the MIME shape, the message-id
/// domain, the relays.
fn value_header(name: &str) -> Option<&'static str> {
    Some(match name {
        "x-mailer" => "x-mailer",
        "user-agent" => "user-agent",
        "content-type" => "content-type",
        "content-transfer-encoding" => "content-transfer-encoding",
        "message-id" => "message-id",
        "received" => "received",
        "reply-to" => "reply-to",
        "to" => "to",
        "x-priority" => "x-priority",
        "x-msmail-priority" => "x-msmail-priority",
        "x-mimeole" => "x-mimeole",
        "x-originating-ip" => "x-originating-ip",
        _ => return None,
    })
}

/// At most this many header bytes are tokenised per message.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// The values of at most this many `Received:` headers are tokenised.
const MAX_RECEIVED: usize = 2;
/// At most this many bytes of one header value are tokenised.
const MAX_HEADER_VALUE: usize = 256;
/// Latin tokens longer than this (in bytes) are dropped as noise (base64, hashes).
const MAX_WORD: usize = 24;
/// Compounds longer than this are not emitted whole (their parts still are).
const MAX_COMPOUND: usize = 64;

/// Turns messages into features; reusable (one per thread), so scanning allocates
/// nothing once it has warmed up.
#[derive(Debug, Clone)]
pub struct Extractor {
    cfg: FeatureConfig,
    text: String,
    sink: Sink,
    body_bytes: usize,
    /// `(start of a header value in text, header name)`, for explanations.
    header_of: Vec<(u32, &'static str)>,
}

/// Where features go: the feature list and a small open-addressing set of the
/// buckets already seen in this message (a few KB that stay in L1 cache, where a
/// bitset over all buckets would not). Entries are stamped with a generation, so
/// forgetting a message is one increment.
///
/// A slot is a `u32`: the bucket (at most [`MAX_BITS`] bits) and the generation
/// in the bits above it, so the whole table is cleared only once every
/// [`GENERATIONS`] messages. With `u64` slots (generation and bucket side by
/// side) the slot load was the hottest instruction of `Extractor::add_text`
/// (`perf annotate`; `add_text` was 12 % of a classifier run over trec06c-dev):
/// a message of 1,000–2,000 features keeps 4,096 slots, 32 KB as `u64`, 16 KB
/// as `u32`, which leaves more of L1 to the rest. Callgrind counts the same
/// instructions either way; the whole-process runs could not separate its gain
/// from that of the same commit's file reading.
#[derive(Debug, Clone)]
struct Sink {
    shift: u32,
    /// `generation << MAX_BITS | bucket`; 0 is an empty slot (generation 0 is
    /// never used).
    slots: Vec<u32>,
    generation: u32,
    feats: Vec<Feature>,
}

/// The widest bucket number: `bits` is clamped to 16..=26.
const MAX_BITS: u32 = 26;
/// Bucket bits of a slot.
const BUCKET_MASK: u32 = (1 << MAX_BITS) - 1;
/// Generations a slot can tell apart (1..GENERATIONS), in its top bits.
const GENERATIONS: u32 = 1 << (32 - MAX_BITS);

/// Initial slots of the seen-set (grows with the message).
const INITIAL_SLOTS: usize = 1024;

impl Sink {
    fn new(bits: u8) -> Sink {
        Sink {
            shift: 64 - u32::from(bits),
            slots: vec![0; INITIAL_SLOTS],
            generation: 1,
            feats: Vec::new(),
        }
    }

    /// Forgets the message.
    fn clear(&mut self) {
        self.feats.clear();
        self.generation += 1;
        if self.generation == GENERATIONS {
            self.slots.fill(0);
            self.generation = 1;
        }
    }

    /// Inserts `bucket` into the seen-set; true if it was not there.
    #[inline(always)]
    fn insert(&mut self, bucket: u32) -> bool {
        let mask = self.slots.len() - 1;
        let tag = self.generation << MAX_BITS;
        let entry = tag | bucket;
        let mut i = bucket as usize & mask;
        loop {
            let e = self.slots[i];
            if e & !BUCKET_MASK != tag {
                self.slots[i] = entry;
                return true;
            }
            if e == entry {
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    /// Records a token's hash unless its bucket was already seen in this message.
    #[inline(always)]
    fn push(&mut self, hash: u64, kind: Kind, start: usize, end: usize) {
        let bucket = (mix(hash) >> self.shift) as u32;
        if self.insert(bucket) {
            self.feats.push(Feature {
                bucket,
                start: start as u32,
                len: (end - start).min(usize::from(u16::MAX)) as u16,
                kind,
            });
            if self.feats.len() * 2 > self.slots.len() {
                self.grow();
            }
        }
    }

    /// Doubles the seen-set and re-inserts this message's buckets.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        self.slots = vec![0; n];
        self.generation = 1;
        let buckets: Vec<u32> = self.feats.iter().map(|f| f.bucket).collect();
        for b in buckets {
            self.insert(b);
        }
    }
}

impl Extractor {
    /// A new extractor for the given settings (`bits` is clamped to 16..=26).
    pub fn new(cfg: &FeatureConfig) -> Self {
        let bits = cfg.bits.clamp(16, 26);
        let cfg = FeatureConfig {
            bits,
            ..cfg.clone()
        };
        Extractor {
            sink: Sink::new(bits),
            cfg,
            text: String::new(),
            body_bytes: 0,
            header_of: Vec::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// Forgets the previous message.
    pub fn clear(&mut self) {
        self.sink.clear();
        self.text.clear();
        self.header_of.clear();
        self.body_bytes = 0;
    }

    /// The distinct features of the message read so far, in the order first seen.
    pub fn features(&self) -> &[Feature] {
        &self.sink.feats
    }

    /// The extractor's copy of the text read so far; features point into it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The token a feature came from, as shown in explanations (`subject:发票`,
    /// `from-domain:example.com`, `x-mailer:foxmail`…).
    pub fn token(&self, f: &Feature) -> String {
        let s = self
            .text
            .get(f.start as usize..f.start as usize + usize::from(f.len))
            .unwrap_or("");
        let prefix = match f.kind {
            Kind::HeaderWord => self
                .header_of
                .iter()
                .rev()
                .find(|(start, _)| *start <= f.start)
                .map_or("header", |(_, n)| n),
            k => k.prefix(),
        };
        let mut out = String::with_capacity(prefix.len() + 1 + s.len());
        out.push_str(prefix);
        if f.kind == Kind::HeaderWord {
            out.push(':');
        }
        out.push_str(s);
        out
    }

    /// Reads a decoded, normalised text (the subject or a body part).
    pub fn add_text(&mut self, field: Field, text: &str) {
        let text = match field {
            Field::Subject => truncate(text, 1024),
            Field::Body => {
                let room = if self.cfg.max_body_bytes == 0 {
                    usize::MAX
                } else {
                    self.cfg.max_body_bytes.saturating_sub(self.body_bytes)
                };
                let t = truncate(text, room);
                self.body_bytes += t.len();
                t
            }
        };
        if text.is_empty() {
            return;
        }
        let kind = match field {
            Field::Subject => Kind::Subject,
            Field::Body => Kind::Body,
        };
        let base = self.text.len();
        self.text.push_str(text);
        self.text.push('\n');
        tokenise(
            &self.text,
            base,
            base + text.len(),
            kind,
            &self.cfg,
            &mut self.sink,
        );
    }

    /// Reads the `From:` address (any case; it is lowercased here).
    pub fn add_from(&mut self, addr: &str) {
        if !self.cfg.headers {
            return;
        }
        let addr = addr.trim().trim_matches(['<', '>']);
        if addr.is_empty() || addr.len() > 256 {
            return;
        }
        let base = self.text.len();
        self.text.extend(addr.chars().flat_map(char::to_lowercase));
        let end = self.text.len();
        self.text.push('\n');
        let push = |sink: &mut Sink, text: &str, kind: Kind, s: usize, e: usize| {
            sink.push(hash_bytes(kind.seed(), &text.as_bytes()[s..e]), kind, s, e);
        };
        push(&mut self.sink, &self.text, Kind::FromAddr, base, end);
        if let Some(at) = self.text[base..end].rfind('@') {
            let dstart = base + at + 1;
            if dstart < end {
                push(&mut self.sink, &self.text, Kind::FromDomain, dstart, end);
                // The last two labels too (`mail.example.com` → `example.com`).
                let dom = &self.text[dstart..end];
                if let Some(p) = dom.rfind('.').and_then(|p| dom[..p].rfind('.')) {
                    push(
                        &mut self.sink,
                        &self.text,
                        Kind::FromDomain,
                        dstart + p + 1,
                        end,
                    );
                }
            }
        }
    }

    /// Reads the raw header block (everything before the first blank line; more is
    /// ignored): the names of the headers present and the words of a few telling
    /// headers. Bytes that are not printable ASCII separate words.
    pub fn add_raw_headers(&mut self, raw: &[u8]) {
        if !self.cfg.headers {
            return;
        }
        let raw = &raw[..raw.len().min(MAX_HEADER_BYTES)];
        let mut pos = 0;
        let mut buf: Vec<u8> = Vec::with_capacity(MAX_HEADER_VALUE + 1);
        let mut received = 0;
        while pos < raw.len() {
            // One logical (unfolded) header: its first line starts at `pos`.
            let line_end = |from: usize| {
                memchr::memchr(b'\n', &raw[from..]).map_or(raw.len(), |i| from + i + 1)
            };
            let mut end = line_end(pos);
            if raw[pos..end].iter().all(|b| b.is_ascii_whitespace()) {
                break; // the blank line: end of headers
            }
            while end < raw.len() && (raw[end] == b' ' || raw[end] == b'\t') {
                end = line_end(end);
            }
            let field = &raw[pos..end];
            pos = end;
            let Some(colon) = memchr::memchr(b':', field) else {
                continue;
            };
            let name = &field[..colon];
            if name.is_empty() || name.len() > 40 || !name.iter().all(|b| b.is_ascii_graphic()) {
                continue;
            }
            // Lowercased printable ASCII: always valid UTF-8.
            buf.clear();
            buf.extend(name.iter().map(u8::to_ascii_lowercase));
            let Ok(lname) = std::str::from_utf8(&buf) else {
                continue;
            };
            let base = self.text.len();
            self.text.push_str(lname);
            self.text.push('\n');
            let h = hash_bytes(Kind::HeaderName.seed(), lname.as_bytes());
            self.sink
                .push(h, Kind::HeaderName, base, base + lname.len());
            let Some(known) = value_header(lname) else {
                continue;
            };
            if known == "received" {
                // The first relays say where the mail came from; later ones are
                // the sender's own hops (and cost as much to read).
                received += 1;
                if received > MAX_RECEIVED {
                    continue;
                }
            }
            let value = &field[colon + 1..];
            let value = &value[..value.len().min(MAX_HEADER_VALUE)];
            buf.clear();
            buf.extend(value.iter().map(|&b| {
                if b.is_ascii_graphic() {
                    b.to_ascii_lowercase()
                } else {
                    b' '
                }
            }));
            let Ok(v) = std::str::from_utf8(&buf) else {
                continue;
            };
            let vbase = self.text.len();
            self.text.push_str(v);
            self.text.push('\n');
            self.header_of.push((vbase as u32, known));
            tokenise_ascii(
                self.text.as_bytes(),
                vbase,
                vbase + v.len(),
                Kind::HeaderWord,
                &self.cfg,
                &mut self.sink,
            );
        }
    }
}

/// Decodes the char starting at byte `i` of valid UTF-8: `(code point, length)`.
#[inline]
fn decode_at(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = u32::from(b[i]);
    let cont = |k: usize| u32::from(b.get(i + k).copied().unwrap_or(0x80) & 0x3f);
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xe0 {
        (((b0 & 0x1f) << 6) | cont(1), 2)
    } else if b0 < 0xf0 {
        (((b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2), 3)
    } else {
        (
            ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
            4,
        )
    }
}

/// Tokenises `text[start..end]` (normalised text) into features of `kind`.
fn tokenise(
    text: &str,
    start: usize,
    end: usize,
    kind: Kind,
    cfg: &FeatureConfig,
    sink: &mut Sink,
) {
    let bytes = text.as_bytes();
    let seed = kind.seed();
    // CJK run state: the previous two characters and where they start.
    let mut prev: Option<(u64, usize)> = None;
    let mut prev2: Option<(u64, usize)> = None;
    // Latin compound state.
    let mut comp_start: Option<usize> = None; // start of the current compound
    let mut part_start: Option<usize> = None; // start of the current word part
    let mut parts = 0usize;
    let mut last_word: Option<(usize, usize)> = None; // for word pairs
    let mut i = start;
    while i < end {
        // Fast path: a run of plain ideographs (U+4E00..U+9FFF, 3-byte UTF-8 with
        // lead bytes E4..E9) continuing a CJK run, as most of Chinese mail is.
        if prev.is_some() {
            while i + 2 < end && (0xe4..=0xe9).contains(&bytes[i]) {
                let cu = (u64::from(bytes[i] & 0x0f) << 12)
                    | (u64::from(bytes[i + 1] & 0x3f) << 6)
                    | u64::from(bytes[i + 2] & 0x3f);
                cjk(seed, kind, cfg, sink, cu, i, 3, &mut prev, &mut prev2);
                i += 3;
            }
            if i >= end {
                break;
            }
        }
        let (cp, mut clen) = decode_at(bytes, i);
        let class = classify_cp(cp);
        if class != Class::Word {
            if let Some(ps) = part_start.take() {
                word(bytes, seed, kind, ps, i, cfg, sink, &mut last_word);
                parts += 1;
            }
            // A joiner continues a compound only if a word character follows.
            let joins = class == Class::Joiner
                && comp_start.is_some()
                && i + clen < end
                && classify_cp(decode_at(bytes, i + clen).0) == Class::Word;
            if !joins {
                if let Some(cs) = comp_start.take()
                    && parts > 1
                    && i - cs <= MAX_COMPOUND
                {
                    sink.push(hash_bytes(seed ^ 0x5555, &bytes[cs..i]), kind, cs, i);
                }
                parts = 0;
            }
        }
        match class {
            Class::Cjk => {
                last_word = None;
                cjk(
                    seed,
                    kind,
                    cfg,
                    sink,
                    u64::from(cp),
                    i,
                    clen,
                    &mut prev,
                    &mut prev2,
                );
            }
            Class::Word => {
                prev = None;
                prev2 = None;
                if part_start.is_none() {
                    part_start = Some(i);
                }
                if comp_start.is_none() {
                    comp_start = Some(i);
                }
                // Fast path: the rest of a run of ASCII letters and digits.
                let mut j = i + clen;
                while j < end
                    && bytes[j] < 0x80
                    && ASCII_CLASS[usize::from(bytes[j])] == Class::Word
                {
                    j += 1;
                }
                clen = j - i;
            }
            Class::Joiner | Class::Other => {
                prev = None;
                prev2 = None;
                if class == Class::Other && !(cp == 0x20 || cp == 0x0a || cp == 0x09 || cp == 0x0d)
                {
                    last_word = None;
                }
            }
        }
        i += clen;
    }
    if let Some(ps) = part_start {
        word(bytes, seed, kind, ps, end, cfg, sink, &mut last_word);
        parts += 1;
    }
    if let Some(cs) = comp_start
        && parts > 1
        && end - cs <= MAX_COMPOUND
    {
        sink.push(hash_bytes(seed ^ 0x5555, &bytes[cs..end]), kind, cs, end);
    }
}

/// [`tokenise`] for text known to be ASCII (lowercased header values): the same
/// words and compounds, without the per-character work for other scripts.
fn tokenise_ascii(
    bytes: &[u8],
    start: usize,
    end: usize,
    kind: Kind,
    cfg: &FeatureConfig,
    sink: &mut Sink,
) {
    let class = |i: usize| match bytes.get(i) {
        Some(&b) if b < 0x80 => ASCII_CLASS[usize::from(b)],
        _ => Class::Other,
    };
    let seed = kind.seed();
    let mut last = None;
    let mut i = start;
    while i < end {
        while i < end && class(i) != Class::Word {
            i += 1;
        }
        if i >= end {
            break;
        }
        let cs = i;
        let mut parts = 0;
        loop {
            let ps = i;
            while i < end && class(i) == Class::Word {
                i += 1;
            }
            word(bytes, seed, kind, ps, i, cfg, sink, &mut last);
            parts += 1;
            if i + 1 < end && class(i) == Class::Joiner && class(i + 1) == Class::Word {
                i += 1;
            } else {
                break;
            }
        }
        if parts > 1 && i - cs <= MAX_COMPOUND {
            sink.push(hash_bytes(seed ^ 0x5555, &bytes[cs..i]), kind, cs, i);
        }
    }
}

/// One CJK character `cu` at `bytes[i..i + clen]`: its unigram and the n-grams it
/// ends.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn cjk(
    seed: u64,
    kind: Kind,
    cfg: &FeatureConfig,
    sink: &mut Sink,
    cu: u64,
    i: usize,
    clen: usize,
    prev: &mut Option<(u64, usize)>,
    prev2: &mut Option<(u64, usize)>,
) {
    if cfg.cjk_unigrams {
        sink.push(
            seed ^ cu.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            kind,
            i,
            i + clen,
        );
    }
    if let Some((pu, ps)) = *prev {
        if cfg.cjk_bigrams {
            let h = seed ^ ((pu << 21) | cu).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
            sink.push(h, kind, ps, i + clen);
        }
        if cfg.cjk_trigrams
            && let Some((qu, qs)) = *prev2
        {
            let h = seed ^ ((qu << 42) | (pu << 21) | cu).wrapping_mul(0x1656_67b1_9e37_79f9);
            sink.push(h, kind, qs, i + clen);
        }
    }
    *prev2 = *prev;
    *prev = Some((cu, i));
}

/// One Latin word part `bytes[s..e]`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn word(
    bytes: &[u8],
    seed: u64,
    kind: Kind,
    s: usize,
    e: usize,
    cfg: &FeatureConfig,
    sink: &mut Sink,
    last: &mut Option<(usize, usize)>,
) {
    let w = &bytes[s..e];
    if w.len() > MAX_WORD || (w.len() < 2 && w.first().is_some_and(|b| !b.is_ascii_digit())) {
        *last = None;
        return;
    }
    let h = hash_bytes(seed, w);
    sink.push(h, kind, s, e);
    if cfg.word_bigrams && kind == Kind::Body {
        if let Some((ls, le)) = *last {
            let hp = hash_bytes(Kind::WordPair.seed() ^ h, &bytes[ls..le]);
            sink.push(hp, Kind::WordPair, ls, e);
        }
        *last = Some((s, e));
    }
}

/// Character classes of the tokeniser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Han, kana, hangul: tokenised as character n-grams.
    Cjk,
    /// Letters and digits of alphabetic scripts.
    Word,
    /// Characters that join word parts into a compound (`.` `-` `_` `@` `'`).
    Joiner,
    /// Everything else separates tokens.
    Other,
}

/// Classes of ASCII bytes.
const fn ascii_classes() -> [Class; 128] {
    let mut t = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() {
            Class::Word
        } else if matches!(c, b'.' | b'-' | b'_' | b'@' | b'\'') {
            Class::Joiner
        } else {
            Class::Other
        };
        b += 1;
    }
    t
}

static ASCII_CLASS: [Class; 128] = ascii_classes();

#[inline]
fn classify_cp(cp: u32) -> Class {
    if cp < 0x80 {
        return ASCII_CLASS[cp as usize];
    }
    match cp {
        0x3040..=0x30ff // kana
        | 0x3400..=0x4dbf // CJK extension A
        | 0x4e00..=0x9fff // CJK unified
        | 0xac00..=0xd7af // hangul
        | 0xf900..=0xfaff // CJK compatibility
        | 0x20000..=0x3134f => Class::Cjk, // CJK extensions B..
        // Punctuation, symbols, box drawing, CJK punctuation, full-width forms,
        // private use: common in Chinese mail, never letters.
        0x80..=0xbf | 0xd7 | 0xf7 | 0x2000..=0x2bff | 0x3000..=0x303f | 0xe000..=0xf8ff
        | 0xfe30..=0xfe4f | 0xff00..=0xffef => Class::Other,
        0xc0..=0x24f => Class::Word, // Latin-1 and Latin Extended letters
        _ => match char::from_u32(cp) {
            Some(c) if c.is_alphanumeric() => Class::Word,
            _ => Class::Other,
        },
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The finaliser that turns a token hash into a bucket (its top bits are used):
/// one multiply folds every input bit into the top bits.
#[inline]
pub fn mix(h: u64) -> u64 {
    (h ^ (h >> 31)).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

/// Hashes a byte string with a seed (8 bytes at a time; finalised by [`mix`] later).
#[inline]
pub fn hash_bytes(seed: u64, b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (b.len() as u64).wrapping_mul(K);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    h
}

impl fmt::Display for FeatureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "2^{} buckets; cjk uni={} bi={} tri={}; word pairs={}; headers={}; body ≤ {} B",
            self.bits,
            self.cjk_unigrams,
            self.cjk_bigrams,
            self.cjk_trigrams,
            self.word_bigrams,
            self.headers,
            self.max_body_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ex: &Extractor) -> Vec<String> {
        ex.features().iter().map(|f| ex.token(f)).collect()
    }

    fn small() -> FeatureConfig {
        FeatureConfig {
            bits: 18,
            ..FeatureConfig::default()
        }
    }

    #[test]
    fn cjk_unigrams_and_bigrams_latin_words_and_compounds() {
        let mut ex = Extractor::new(&small());
        ex.add_text(Field::Body, "代开发票 visit www.example.com now, a 5");
        let t = tokens(&ex);
        for want in [
            "代",
            "代开",
            "开发",
            "发票",
            "票",
            "visit",
            "www",
            "example",
            "com",
            "www.example.com",
            "now",
            "5",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} missing from {t:?}");
        }
        assert!(
            !t.iter().any(|x| x == "a"),
            "single letters are noise: {t:?}"
        );
        assert!(!t.iter().any(|x| x == "票v"), "{t:?}");
    }

    #[test]
    fn features_are_distinct_and_clear_resets() {
        let mut ex = Extractor::new(&small());
        ex.add_text(Field::Body, "免费 免费 免费 free free");
        let n = ex.features().len();
        assert_eq!(n, 5, "{:?}", tokens(&ex)); // 免 费 免费 free, the pair "free free"
        ex.clear();
        assert!(ex.features().is_empty());
        ex.add_text(Field::Body, "免费");
        assert_eq!(ex.features().len(), 3);
    }

    /// One extractor reused for many messages (past the seen-set's generation
    /// wrap and its growth) gives each message the features a fresh one gives.
    #[test]
    fn reuse_across_generations_and_growth_matches_a_fresh_extractor() {
        let texts = [
            "代开发票 visit www.example.com now",
            "免费 免费 free free",
            "",
            "a b c d e f g h i j k l m n o p q r s t u v w x y z",
        ];
        let long: String = (0u32..3000)
            .filter_map(|i| char::from_u32(0x4e00 + (i * 7919) % 20000))
            .collect();
        for bits in [16, 20, 26] {
            let cfg = FeatureConfig {
                bits,
                ..FeatureConfig::default()
            };
            let mut reused = Extractor::new(&cfg);
            for round in 0..3 * GENERATIONS as usize {
                let text = if round % 17 == 5 {
                    long.as_str()
                } else {
                    texts[round % texts.len()]
                };
                reused.clear();
                reused.add_text(Field::Body, text);
                let mut fresh = Extractor::new(&cfg);
                fresh.add_text(Field::Body, text);
                assert_eq!(reused.features(), fresh.features(), "round {round}");
            }
        }
    }

    #[test]
    fn subject_tokens_have_their_own_namespace() {
        let mut ex = Extractor::new(&small());
        ex.add_text(Field::Subject, "发票");
        ex.add_text(Field::Body, "发票");
        let t = tokens(&ex);
        assert!(
            t.contains(&"subject:发票".to_string()) && t.contains(&"发票".to_string()),
            "{t:?}"
        );
        let buckets: std::collections::HashSet<u32> =
            ex.features().iter().map(|f| f.bucket).collect();
        assert_eq!(buckets.len(), 6);
    }

    #[test]
    fn header_features() {
        let mut ex = Extractor::new(&small());
        ex.add_raw_headers(
            b"Received: from mx.spam.test\r\n\tby us\r\nX-Mailer: FoxMail 6.0\r\nSubject: x\r\n\r\nX-Mailer: body\r\n",
        );
        ex.add_from("Sales@Mail.Spam.Test");
        let t = tokens(&ex);
        for want in [
            "header:received",
            "received:mx.spam.test",
            "received:us",
            "header:x-mailer",
            "x-mailer:foxmail",
            "header:subject",
            "from:sales@mail.spam.test",
            "from-domain:mail.spam.test",
            "from-domain:spam.test",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} missing from {t:?}");
        }
        assert!(!t.iter().any(|x| x == "x-mailer:body"), "{t:?}");
    }

    #[test]
    fn body_budget_is_respected_on_char_boundaries() {
        let mut ex = Extractor::new(&FeatureConfig {
            max_body_bytes: 7,
            ..small()
        });
        ex.add_text(Field::Body, "免费电影");
        ex.add_text(Field::Body, "更多");
        assert_eq!(tokens(&ex), ["免", "费", "免费"]);
    }

    #[test]
    fn ascii_tokeniser_matches_the_general_one() {
        let cfg = small();
        for text in [
            "from mx1.example.com ([10.0.0.1]) by spam-gw.ccert.edu.cn (mimedefang) with esmtp id j8t",
            "<20050930030637.be4cd1594013@odhqakzemakbvru>",
            "multipart/alternative; boundary=\"----=_nextpart_001_0018_01c39816.2c871aa0\"",
            "a.b -c- d_ e@@f g'h .. x.y.z. 1.2.3.4 a-",
            "",
            "-",
        ] {
            let mut a = Sink::new(cfg.bits);
            let mut b = Sink::new(cfg.bits);
            tokenise(text, 0, text.len(), Kind::HeaderWord, &cfg, &mut a);
            tokenise_ascii(
                text.as_bytes(),
                0,
                text.len(),
                Kind::HeaderWord,
                &cfg,
                &mut b,
            );
            assert_eq!(a.feats, b.feats, "{text}");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let mut ex = Extractor::new(&small());
        for s in [
            "",
            "\u{10FFFF}",
            "a.-_@'",
            "é",
            "𠀀𠀁",
            "-.-",
            "x@",
            "\u{FEFF}\u{200B}",
        ] {
            ex.add_text(Field::Body, s);
            ex.add_from(s);
        }
        ex.add_raw_headers(b":\r\n\xff\xfe: \xff\r\nX-Mailer:\r\n \r\n");
        ex.add_raw_headers(b"");
    }
}
