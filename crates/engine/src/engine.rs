//! The engine: every stage wired together behind one call, built once and shared.
//!
//! An [`Engine`] owns what is expensive to build (the keyword automaton, the jieba
//! dictionary, the configured parser) and nothing that changes per message, so one
//! engine serves every thread (`Send + Sync`). Per-thread scratch buffers keep the
//! hot path free of allocation churn.

use crate::classify::features::FEATURES_VERSION;
use crate::classify::{self, Extractor, FeatureConfig, Field, LiveModel, Loaded, Model};
use crate::config::Config;
use crate::decode::{self, Decoded};
use crate::error::Error;
use crate::keywords::KeywordSet;
use crate::matching::{Matcher, Occurrence};
use crate::normalise::{Normalised, normalise_into};
use crate::parse::Parser;
use crate::score::{self, Found};
use crate::segment::{Segmenter, WindowCache};
use crate::verdict::{Envelope, Location, Verdict};
use crate::{route, verdict::TextSource};
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Characters of context shown either side of a hit in [`Location::excerpt`].
const EXCERPT_CONTEXT: usize = 8;

/// The filter, built from a [`Config`]. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    parser: ParserHandle,
    keywords: KeywordSet,
    matcher: Matcher,
    segmenter: Segmenter,
    /// Per keyword: is it Chinese (checked by segmentation)?
    cjk: Vec<bool>,
    /// The trained model (`model = "PATH"`), reloaded when its file changes.
    classifier: Option<LiveModel>,
}

/// mail-parser's configured parser has no `Debug`; this wrapper gives it one.
struct ParserHandle(Parser);

impl std::fmt::Debug for ParserHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parser")
    }
}

#[derive(Default)]
struct Scratch {
    normalised: Normalised,
    occurrences: Vec<Occurrence>,
    window: WindowCache,
    /// Occurrences located so far, per keyword.
    shown: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Builds an [`Engine`]: `Engine::builder().config(cfg).build()?`.
///
/// Every part is optional: the configuration defaults to the embedded one, the
/// keyword lists to those the configuration names, and the model to the
/// configuration's `model` file (if any).
#[derive(Debug, Default)]
pub struct EngineBuilder {
    config: Option<Config>,
    keywords: Option<KeywordSet>,
    model: Option<Model>,
    foreground: bool,
}

impl EngineBuilder {
    /// The configuration to build from (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> EngineBuilder {
        self.config = Some(config);
        self
    }

    /// An explicit keyword set; the configuration's keyword sources are then
    /// ignored.
    pub fn keywords(mut self, keywords: KeywordSet) -> EngineBuilder {
        self.keywords = Some(keywords);
        self
    }

    /// Scans with this model, held in memory and never reloaded, instead of the
    /// configuration's model file (e.g. one `chaff eval --train` just trained).
    pub fn model(mut self, model: Model) -> EngineBuilder {
        self.model = Some(model);
        self
    }

    /// Whether the jieba dictionary (about 100 ms) loads on a background thread
    /// while [`build`](Self::build) returns (the default: the first Chinese hit
    /// waits for it), or before `build` returns, leaving no thread behind (for a
    /// program that forks after building, or wants the first scan at full speed).
    pub fn load_in_background(mut self, background: bool) -> EngineBuilder {
        self.foreground = !background;
        self
    }

    /// Loads and compiles everything.
    pub fn build(self) -> Result<Engine, Error> {
        let config = self.config.unwrap_or_default();
        let keywords = match self.keywords {
            Some(k) => k,
            None => KeywordSet::load(&config.keywords)?,
        };
        let matcher = Matcher::new(&keywords)?;
        let segmenter = Segmenter::new(&keywords, !self.foreground);
        let cjk = keywords.keywords.iter().map(|k| k.is_cjk()).collect();
        let classifier = match (self.model, &config.model) {
            (Some(model), _) => Some(LiveModel::fixed(model, &keywords)),
            (None, Some(path)) => Some(
                LiveModel::load(path, &keywords, &config.classifier).map_err(|source| {
                    Error::Model {
                        path: path.clone(),
                        source,
                    }
                })?,
            ),
            (None, None) => None,
        };
        Ok(Engine {
            config,
            parser: ParserHandle(Parser::default()),
            keywords,
            matcher,
            segmenter,
            cjk,
            classifier,
        })
    }
}

/// What the engine extracts from a message for a learner: the classifier's
/// feature buckets and the keyword occurrences, read exactly as a scan reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// Distinct feature buckets of the classifier.
    pub buckets: Vec<u32>,
    /// The keyword occurrences confirmed as words, located.
    pub found: Vec<Found>,
}

impl Engine {
    /// A builder: configuration, keyword lists, model.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Builds an engine from a configuration (`Engine::builder().config(..).build()`).
    pub fn new(config: &Config) -> Result<Engine, Error> {
        Engine::builder().config(config.clone()).build()
    }

    /// The model in force, if any (reloaded first if its file changed).
    pub fn model(&self) -> Option<Arc<Loaded>> {
        self.classifier.as_ref().map(LiveModel::get)
    }

    /// What an admin should be told about the model in force, if anything: that it
    /// was made by an older tokeniser and should be retrained ([`Model::outdated`]).
    pub fn model_notice(&self) -> Option<String> {
        self.model().and_then(|l| l.model.outdated())
    }

    /// Why the last reload of the model file failed, if it did (the previous model
    /// keeps serving; cleared by the next successful reload).
    pub fn model_reload_error(&self) -> Option<String> {
        self.classifier.as_ref().and_then(LiveModel::last_error)
    }

    /// How many versions of the model file were refused since the engine was
    /// built, each counted once (a refused file is not read again until it
    /// changes); 0 without a model file. A caller that sees it grow can report
    /// [`Engine::model_reload_error`] once per refusal.
    pub fn model_reload_failures(&self) -> u64 {
        self.classifier.as_ref().map_or(0, LiveModel::failures)
    }

    /// Blocks until everything loaded in the background (the jieba dictionary) is
    /// ready, so that the next scan runs at full speed. Scanning without calling
    /// this is fine: the first Chinese hit waits instead.
    pub fn wait_ready(&self) {
        self.segmenter.wait_ready();
    }

    /// The configuration this engine was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The keyword lists in force.
    pub fn keywords(&self) -> &KeywordSet {
        &self.keywords
    }

    /// Scans one message (raw RFC 822 bytes) sent with `envelope`. Never fails and
    /// never panics on any input: malformed mail is scored as well as it can be,
    /// and should a stage panic all the same (a bug), the verdict is the configured
    /// `[limits] on_error` action with [`Reason::Failed`](crate::Reason::Failed).
    ///
    /// The stages run in this order: route's pre-scan (size, then the block list
    /// and whether a proven allow entry applies, read from the envelope and the
    /// header block's trusted `Authentication-Results`), parse, decode, then per
    /// text normalise → match → segment (fused per occurrence), with the
    /// classifier's features taken from the same normalised text, then score and
    /// route (where a proven allow entry delivers whatever the score: allowed mail
    /// is scanned all the same, so its verdict shows the score and hits).
    pub fn scan(&self, raw: &[u8], envelope: &Envelope) -> Verdict {
        self.scan_sized(raw, Some(raw.len() as u64), envelope)
    }

    /// [`Engine::scan`] for a message that a reader bounded by `[limits]
    /// max_message_size` read: `raw` is the whole message, or, for one over the
    /// limit, its first bytes (at most the limit and one byte) or none. `size` is
    /// the message's full size when known (a file's metadata), `None` when reading
    /// stopped past the limit without measuring the rest (a pipe, a device): the
    /// verdict's [`Reason::Oversize`](crate::Reason::Oversize) then says "more than
    /// the limit". A message within the limit is scanned as by [`Engine::scan`].
    pub fn scan_sized(&self, raw: &[u8], size: Option<u64>, envelope: &Envelope) -> Verdict {
        match catch_unwind(AssertUnwindSafe(|| {
            self.scan_unguarded(raw, size, envelope)
        })) {
            Ok(v) => v,
            Err(panic) => route::failed(&self.config, panic_message(&*panic)),
        }
    }

    fn scan_unguarded(&self, raw: &[u8], size: Option<u64>, envelope: &Envelope) -> Verdict {
        #[cfg(test)]
        if tests::PANIC_IN_SCAN.with(std::cell::Cell::get) {
            panic!("injected failure");
        }
        let allowed = match route::pre_scan_sized(&self.config, envelope, raw, size) {
            route::PreScan::Decided(action, reply, reason) => {
                return Verdict {
                    action,
                    score: 0.0,
                    reply,
                    reason,
                    hits: Vec::new(),
                    tokens: Vec::new(),
                    truncated: false,
                };
            }
            route::PreScan::Scan(allowed) => allowed,
        };
        let loaded = self.model();
        let (truncated, found, classification) = match &loaded {
            None => {
                let decoded = self.decode(raw);
                (decoded.truncated, self.find(&decoded), None)
            }
            Some(l) => classify::with_extractor(&l.model.meta.features, |ex| {
                let version = l.model.meta.features_version;
                let (decoded, found) = self.analyse(raw, Some((&mut *ex, version)));
                let explain = self.config.classifier.explain_tokens > 0;
                (
                    decoded.truncated,
                    found,
                    Some(l.model.classify(ex, explain)),
                )
            }),
        };
        let keywords = loaded.as_ref().map_or(&self.keywords, |l| &l.keywords);
        let (mut score, hits) = score::score(&found, keywords, &self.config.scoring);
        let mut tokens = Vec::new();
        if let Some(c) = classification {
            let w = self.config.classifier.weight;
            score += w * c.points;
            let n = self.config.classifier.explain_tokens;
            tokens = c.tokens;
            tokens.iter_mut().for_each(|t| t.weight *= w);
            tokens.retain(|t| t.weight != 0.0);
            // Strongest `n` spam-wards (positive, first), then `n` ham-wards.
            let split = tokens.iter().take_while(|t| t.weight > 0.0).count();
            let ham: Vec<_> = tokens.drain(split..).take(n).collect();
            tokens.truncate(n);
            tokens.extend(ham);
        }
        let (action, reply, reason) = route::route(&self.config, envelope, score, allowed.as_ref());
        Verdict {
            action,
            score,
            reply,
            reason,
            hits,
            tokens,
            truncated,
        }
    }

    /// What a learner needs of one message: the classifier's features (with the
    /// settings `features`) and the keyword occurrences, through the same path a
    /// scan takes, so training and scanning see the same features.
    pub fn extract(&self, raw: &[u8], features: &FeatureConfig) -> Extracted {
        self.extract_version(raw, features, FEATURES_VERSION)
    }

    /// [`Engine::extract`] with the features of tokeniser version `version` (that
    /// of the model being updated, for `chaff learn` on an older model).
    pub fn extract_version(&self, raw: &[u8], features: &FeatureConfig, version: u32) -> Extracted {
        classify::with_extractor(features, |ex| {
            let (_, found) = self.analyse(raw, Some((&mut *ex, version)));
            Extracted {
                buckets: ex.features().iter().map(|f| f.bucket).collect(),
                found,
            }
        })
    }

    /// Parse to segment for one message, also feeding the classifier's feature
    /// extractor (when given, with the tokeniser version to read for) with every
    /// normalised text and the header features: the single path both scanning and
    /// training take.
    fn analyse(
        &self,
        raw: &[u8],
        features: Option<(&mut Extractor, u32)>,
    ) -> (Decoded, Vec<Found>) {
        let decoded = self.decode(raw);
        match features {
            None => {
                let found = self.find(&decoded);
                (decoded, found)
            }
            Some((ex, version)) => {
                let found = self.find_with(&decoded, Some((&mut *ex, version)));
                classify::add_headers(ex, raw, decoded.from.as_deref());
                (decoded, found)
            }
        }
    }

    #[doc(hidden)]
    /// Parse and decode. A panic in the parser (a bug in a
    /// dependency) must not lose the message: it is then read as plain text.
    pub fn decode(&self, raw: &[u8]) -> Decoded {
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            decode::decode(&self.parser.0.parse(raw))
        }));
        parsed.unwrap_or_else(|_| decode::decode(&crate::parse::Parsed::unparsed(raw)))
    }

    #[doc(hidden)]
    /// Normalise each text, match the keywords and keep the
    /// occurrences that are words, located in the decoded text.
    pub fn find(&self, decoded: &Decoded) -> Vec<Found> {
        self.find_with(decoded, None)
    }

    /// [`Engine::find`], also handing each normalised text to the classifier's
    /// feature extractor (the texts tokeniser `version` reads, see
    /// [`decode::V1Read`]).
    fn find_with(
        &self,
        decoded: &Decoded,
        mut features: Option<(&mut Extractor, u32)>,
    ) -> Vec<Found> {
        SCRATCH.with(|scratch| {
            let mut guard = scratch.borrow_mut();
            let Scratch {
                normalised,
                occurrences,
                window,
                shown,
            } = &mut *guard;
            // (keyword, text number in `all_texts`, byte range in that text, strength)
            let mut hits: Vec<Located> = Vec::new();
            let v1 = features.as_ref().is_some_and(|(_, version)| *version < 2);
            for (part, (source, text)) in decoded.all_texts().enumerate() {
                let field = if source == TextSource::Subject {
                    Field::Subject
                } else {
                    Field::Body
                };
                let mut feed = true;
                if v1
                    && let Some((ex, _)) = features.as_mut()
                    && let Some(t) = part.checked_sub(1).and_then(|i| decoded.texts.get(i))
                {
                    // Tokeniser version 1: the texts it read (see decode::V1Read).
                    if let Some(body) = &decoded.v1_body {
                        feed = false;
                        if part == 1 {
                            normalise_into(&body.text, normalised);
                            ex.add_text(field, &normalised.text);
                        }
                    } else {
                        match &t.v1 {
                            decode::V1Read::Same => {}
                            decode::V1Read::Skipped => feed = false,
                            decode::V1Read::Raw(raw) => {
                                feed = false;
                                normalise_into(raw, normalised);
                                ex.add_text(field, &normalised.text);
                            }
                        }
                    }
                }
                if text.is_empty() {
                    continue;
                }
                normalise_into(text, normalised);
                window.reset();
                if feed && let Some((ex, _)) = features.as_mut() {
                    ex.add_text(field, &normalised.text);
                }
                occurrences.clear();
                self.matcher.find_into(&normalised.text, occurrences);
                for occ in occurrences.iter() {
                    let (s, e) = (occ.start as usize, occ.end as usize);
                    let strength = if self.cjk[occ.keyword as usize] {
                        self.segmenter.strength(&normalised.text, s, e, window)
                    } else {
                        1.0
                    };
                    if strength <= 0.0 {
                        continue;
                    }
                    let range = normalised.source_range(text, s, e);
                    hits.push((occ.keyword, part, range, strength));
                }
            }
            if decoded.texts.iter().any(|t| t.alternative.is_some()) {
                once_per_alternative(&mut hits, &decoded.texts);
            }
            // Only the first few occurrences of a keyword are shown.
            shown.clear();
            shown.resize(self.keywords.keywords.len(), 0);
            hits.into_iter()
                .map(|(keyword, part, range, strength)| {
                    let (source, text) = match part.checked_sub(1) {
                        None => (TextSource::Subject, decoded.subject.as_str()),
                        Some(i) => (decoded.texts[i].source, decoded.texts[i].text.as_str()),
                    };
                    let seen = &mut shown[keyword as usize];
                    *seen = seen.saturating_add(1);
                    let excerpt = if usize::from(*seen) <= score::MAX_LOCATIONS {
                        excerpt(text, range.clone())
                    } else {
                        String::new()
                    };
                    Found {
                        keyword,
                        location: Location {
                            source,
                            part: part.saturating_sub(1),
                            offset: range.start,
                            len: range.len(),
                            excerpt,
                        },
                        strength,
                    }
                })
                .collect()
        })
    }
}

/// A located occurrence before it becomes a [`Found`]: (keyword, text number in
/// `all_texts`, byte range in that text, strength).
type Located = (u32, usize, std::ops::Range<usize>, f64);

/// Keeps, for each multipart/alternative group and keyword, only the occurrences
/// in the alternative where the keyword occurs most (the first such alternative
/// on a tie): the alternatives are one content in several forms, so a word they
/// share counts once, and a word only one of them has still counts.
/// `hits` are `(keyword, text number in all_texts, range)`; text 0 is the subject.
fn once_per_alternative(hits: &mut Vec<Located>, texts: &[decode::DecodedText]) {
    let alternative = |part: usize| {
        part.checked_sub(1)
            .and_then(|i| texts.get(i))
            .and_then(|t| t.alternative)
    };
    // Occurrences per (group, keyword, branch), then the best branch per
    // (group, keyword): sorted, so a message with many hits costs n log n.
    let mut keys: Vec<(u32, u32, u32)> = hits
        .iter()
        .filter_map(|(k, part, _, _)| alternative(*part).map(|a| (a.group, *k, a.branch)))
        .collect();
    keys.sort_unstable();
    let mut best: Vec<((u32, u32), u32, usize)> = Vec::new(); // ((group, keyword), branch, count)
    for run in keys.chunk_by(|a, b| a == b) {
        let (g, k, b) = run[0];
        match best.last_mut() {
            Some(last) if last.0 == (g, k) => {
                if run.len() > last.2 {
                    *last = ((g, k), b, run.len());
                }
            }
            _ => best.push(((g, k), b, run.len())),
        }
    }
    hits.retain(|(k, part, _, _)| match alternative(*part) {
        None => true,
        Some(a) => best
            .binary_search_by(|e| e.0.cmp(&(a.group, *k)))
            .is_ok_and(|i| best[i].1 == a.branch),
    });
}

/// The text of a panic's payload, for the verdict's reason.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// The hit as it stands in the decoded text with a little context, on one line.
fn excerpt(text: &str, range: std::ops::Range<usize>) -> String {
    let start = text[..range.start]
        .char_indices()
        .rev()
        .nth(EXCERPT_CONTEXT - 1)
        .map_or(0, |(i, _)| i);
    let end = text[range.end..]
        .char_indices()
        .nth(EXCERPT_CONTEXT)
        .map_or(text.len(), |(i, _)| range.end + i);
    let s = &text[start..end];
    // Control chars are C0, DEL and C1 (lead byte C2): most excerpts have none
    // and are copied as they stand. Those that do (a line break near the hit is
    // common in mail) are copied a run at a time between the control chars, into
    // a string of the right size: collecting them char by char cost about 2,000
    // instructions an excerpt, 4.6 % of a keyword scan of trec06c-dev
    // (callgrind, 3,000 messages).
    if s.bytes().any(|b| b < 0x20 || b == 0x7F || b == 0xC2) {
        let mut out = String::with_capacity(s.len());
        let mut run = 0;
        for (i, c) in s.char_indices() {
            if c.is_control() {
                out.push_str(&s[run..i]);
                out.push(' ');
                run = i + c.len_utf8();
            }
        }
        out.push_str(&s[run..]);
        out
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Action, TextSource};

    thread_local! {
        pub(super) static PANIC_IN_SCAN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn engine() -> Engine {
        Engine::new(&Config::default()).unwrap()
    }

    #[test]
    fn a_failed_scan_gets_the_on_error_action_and_says_why() {
        let spam = "Subject: x\r\n\r\n代开发票，优惠特价，免费咨询！\r\n".as_bytes();
        for on_error in [Action::Deliver, Action::Quarantine, Action::Reject] {
            let engine = Engine::builder()
                .config(Config {
                    on_error,
                    ..Config::default()
                })
                .build()
                .unwrap();
            PANIC_IN_SCAN.with(|p| p.set(true));
            let v = engine.scan(spam, &Envelope::default());
            PANIC_IN_SCAN.with(|p| p.set(false));
            assert_eq!(v.action, on_error);
            assert_eq!(
                v.reason,
                crate::Reason::Failed {
                    error: "injected failure".into()
                }
            );
            assert_eq!(v.reply.is_some(), on_error == Action::Reject);
            assert!(v.reason.to_string().contains("injected failure"));
            // The next scan on the same thread is a normal one.
            assert!(engine.scan(spam, &Envelope::default()).score > 0.0);
        }
    }

    #[test]
    fn a_foreground_build_is_ready_when_it_returns() {
        let engine = Engine::builder().load_in_background(false).build().unwrap();
        assert!(format!("{:?}", engine.segmenter).contains("ready: true"));
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Engine>();
    }

    #[test]
    fn spam_is_flagged_and_explained() {
        let raw = "Subject: =?utf-8?B?5Luj5byA5Y+R56Wo?=\r\n\r\n代开发票，优惠特价，免 费咨询，赚钱发财！\r\n";
        let v = engine().scan(raw.as_bytes(), &Envelope::default());
        assert_ne!(v.action, Action::Deliver, "{v:?}");
        let daikai = v.hits.iter().find(|h| h.keyword == "代开").unwrap();
        assert_eq!(daikai.count, 2);
        assert_eq!(daikai.category, "money");
        let mianfei = v.hits.iter().find(|h| h.keyword == "免费").unwrap();
        assert!(
            mianfei.locations[0].excerpt.contains("免 费"),
            "{mianfei:?}"
        );
    }

    #[test]
    fn ham_with_lookalike_words_is_delivered() {
        let raw = "Subject: meeting\r\n\r\n周末一起去电影院吗？基金会的活动也很成功率高。\r\n";
        let v = engine().scan(raw.as_bytes(), &Envelope::default());
        assert_eq!(v.action, Action::Deliver);
        assert!(
            v.hits
                .iter()
                .all(|h| h.keyword != "电影" && h.keyword != "基金"),
            "{v:?}"
        );
    }

    /// Issue 14: an allow entry must not trust a forged envelope sender.
    fn allow_engine(senders: &str) -> Engine {
        let text = format!("[thresholds]\nquarantine = 4\nreject = 8\n[senders]\n{senders}");
        let cfg = Config::from_toml(&text, std::path::Path::new("chaff.toml")).unwrap();
        Engine::new(&cfg).unwrap()
    }

    const SPAM: &str = "Subject: x\r\n\r\n代开发票，优惠特价，免费咨询，赚钱发财！\r\n";

    fn sender(addr: &str, ip: &str, auth: Option<&str>) -> Envelope {
        Envelope {
            sender: Some(addr.into()),
            client_addr: Some(ip.parse().unwrap()),
            auth_user: auth.map(str::to_string),
            ..Envelope::default()
        }
    }

    #[test]
    fn a_forged_allowed_sender_is_scanned_and_refused() {
        let engine = allow_engine("allow = [\"ceo@example.com\"]\n");
        let v = engine.scan(
            SPAM.as_bytes(),
            &sender("ceo@example.com", "198.51.100.7", None),
        );
        assert_eq!(v.action, Action::Reject, "{v:?}");
        assert!(matches!(v.reason, crate::Reason::Score { .. }), "{v:?}");
        assert!(v.score > 0.0);
    }

    #[test]
    fn a_proven_allowed_sender_is_scanned_and_delivered() {
        let engine = allow_engine(
            "allow = [\"ceo@example.com\", \"example.org from 203.0.113.0/24\"]\n\
             authserv_id = \"mx.site.test\"\n",
        );
        let ceo = sender("ceo@example.com", "198.51.100.7", None);
        let signed = |id: &str| {
            format!("Authentication-Results: {id};\r\n dkim=pass header.d=example.com\r\n{SPAM}")
        };
        let v = engine.scan(signed("mx.site.test").as_bytes(), &ceo);
        assert_eq!((v.action, &v.reply), (Action::Deliver, &None), "{v:?}");
        assert_eq!(
            v.reason,
            crate::Reason::AllowListed {
                entry: "ceo@example.com".into(),
                proof: crate::AllowProof::Dkim
            }
        );
        assert!(v.score >= 8.0 && !v.hits.is_empty(), "{v:?}");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["reason"]["kind"], "allow_listed");
        assert_eq!(json["reason"]["proof"], "dkim");
        assert!(v.reason.to_string().contains("(proof: dkim)"));
        // Written by someone else's server: ignored.
        let v = engine.scan(signed("mx.attacker.test").as_bytes(), &ceo);
        assert_eq!(v.action, Action::Reject, "{v:?}");
        // From a listed network.
        let v = engine.scan(
            SPAM.as_bytes(),
            &sender("news@example.org", "203.0.113.9", None),
        );
        assert_eq!(v.action, Action::Deliver, "{v:?}");
        assert!(v.score > 0.0);
        assert_eq!(
            v.reason,
            crate::Reason::AllowListed {
                entry: "example.org".into(),
                proof: crate::AllowProof::Network
            }
        );
        let v = engine.scan(
            SPAM.as_bytes(),
            &sender("news@example.org", "198.51.100.9", None),
        );
        assert_eq!(v.action, Action::Reject, "{v:?}");
    }

    #[test]
    fn an_authenticated_sender_is_judged_by_its_account() {
        let engine = allow_engine(
            "allow = [\"ceo@example.com from 0.0.0.0/0\"]\nallow_unverified = true\n\
             authserv_id = \"mx.site.test\"\n",
        );
        let raw = format!(
            "Authentication-Results: mx.site.test; dkim=pass header.d=example.com\r\n{SPAM}"
        );
        let v = engine.scan(
            raw.as_bytes(),
            &sender("ceo@example.com", "192.0.2.1", Some("mallory")),
        );
        assert_eq!(v.action, Action::Reject, "{v:?}");
        assert!(matches!(v.reason, crate::Reason::Score { .. }), "{v:?}");
    }

    #[test]
    fn allow_unverified_trusts_the_envelope_sender() {
        let engine = allow_engine("allow = [\"ceo@example.com\"]\nallow_unverified = true\n");
        let v = engine.scan(
            SPAM.as_bytes(),
            &sender("ceo@example.com", "198.51.100.7", None),
        );
        assert_eq!(v.action, Action::Deliver, "{v:?}");
        assert_eq!(
            v.reason,
            crate::Reason::AllowListed {
                entry: "ceo@example.com".into(),
                proof: crate::AllowProof::Unverified
            }
        );
        assert!(v.score > 0.0);
    }

    /// Issue 14 (4): padding before the spam must not push it past the text cap,
    /// and a cut must show in the verdict.
    #[test]
    fn padding_does_not_hide_spam_and_a_cut_is_shown() {
        let spam = "代开发票，优惠特价，免费咨询，赚钱发财！";
        let mib = 1 << 20;
        let html = |pad: &str| {
            format!(
                "Subject: hi\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                 <html><body>{pad}<p>{spam}</p></body></html>\r\n"
            )
        };
        let plain = |pad: &str| {
            format!("Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{pad}{spam}\r\n")
        };
        let engine = engine();
        let want = engine.scan(plain("").as_bytes(), &Envelope::default());
        assert!(want.score > 0.0 && !want.truncated, "{want:?}");
        let json = serde_json::to_value(&want).unwrap();
        assert!(json.get("truncated").is_none(), "{json}");
        let padded = [
            html(&format!("<!--{}-->", "x".repeat(mib))),
            html(&format!(
                "<div style=\"display:none\">{}</div>",
                "padding ".repeat(mib / 8 + 1)
            )),
            html(&" \r\n".repeat(mib / 3 + 1)),
            html(&"\u{200B}".repeat(mib / 3 + 1)),
            plain(&" \t\r\n".repeat(mib / 4 + 1)),
            plain(&"\u{200B}\u{FEFF} ".repeat(mib / 7 + 1)),
        ];
        for (i, raw) in padded.iter().enumerate() {
            let v = engine.scan(raw.as_bytes(), &Envelope::default());
            assert_eq!(v.score, want.score, "padding {i}: {v:?}");
            assert!(!v.truncated, "padding {i}");
        }
        // More visible text than the cap: cut, and said so.
        let v = engine.scan(
            plain(&"word ".repeat(mib / 5 + 100)).as_bytes(),
            &Envelope::default(),
        );
        assert!(v.truncated, "{v:?}");
        assert_eq!(serde_json::to_value(&v).unwrap()["truncated"], true);
    }

    /// Issue 14 (6): a reader bounded by the size limit passes the true size when
    /// it knows it, and the verdict says "more than" when it does not.
    #[test]
    fn oversize_by_size_alone() {
        let engine = allow_engine("");
        let limit = engine.config().max_message_size;
        let v = engine.scan_sized(b"", Some(2 << 30), &Envelope::default());
        assert_eq!(v.action, Action::Reject);
        assert_eq!(
            v.reason,
            crate::Reason::Oversize {
                size: 2 << 30,
                limit,
                size_unknown: false
            }
        );
        let json = serde_json::to_value(&v).unwrap();
        assert!(json["reason"].get("size_unknown").is_none(), "{json}");
        let head = vec![0u8; limit + 1];
        let v = engine.scan_sized(&head, None, &Envelope::default());
        assert_eq!(
            v.reason,
            crate::Reason::Oversize {
                size: limit + 1,
                limit,
                size_unknown: true
            }
        );
        assert_eq!(
            v.reason.to_string(),
            format!("message of more than {limit} bytes exceeds the limit of {limit}")
        );
        // Within the limit: an ordinary scan.
        let v = engine.scan_sized(SPAM.as_bytes(), None, &Envelope::default());
        assert_eq!(v, engine.scan(SPAM.as_bytes(), &Envelope::default()));
    }

    /// Issue 13: of a multipart/alternative, every alternative is read and a
    /// keyword counts as often as in the alternative that has it most: shared
    /// words once, words of one alternative only still counted.
    #[test]
    fn alternatives_count_once_and_miss_nothing() {
        let raw = "Subject: hi\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
                   --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
                   viagra here, viagra there, and cialis\r\n\
                   --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                   <p>viagra <b>here</b> and pharmacy</p>\r\n--b--\r\n";
        let v = engine().scan(raw.as_bytes(), &Envelope::default());
        let count = |k: &str| v.hits.iter().find(|h| h.keyword == k).map(|h| h.count);
        // viagra: 2 in the plain text, 1 in the HTML: counted 2, not 3.
        assert_eq!(count("viagra"), Some(2), "{v:?}");
        // Only in the plain text, only in the HTML: each counted.
        assert_eq!(
            (count("cialis"), count("pharmacy")),
            (Some(1), Some(1)),
            "{v:?}"
        );
        let viagra = v.hits.iter().find(|h| h.keyword == "viagra").unwrap();
        assert!(
            viagra
                .locations
                .iter()
                .all(|l| l.source == TextSource::Text && !l.excerpt.is_empty()),
            "{viagra:?}"
        );
        // Two groups (a message and the one it forwards) count separately.
        let group = |b: &str| {
            format!(
                "Content-Type: multipart/alternative; boundary={b}\r\n\r\n\
                 --{b}\r\nContent-Type: text/plain\r\n\r\nviagra\r\n\
                 --{b}\r\nContent-Type: text/html\r\n\r\n<p>viagra</p>\r\n--{b}--\r\n"
            )
        };
        let two = format!(
            "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n{}--m\r\n\
             Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n{}--m--\r\n",
            group("x"),
            group("y")
        );
        let v = engine().scan(two.as_bytes(), &Envelope::default());
        let count = v
            .hits
            .iter()
            .find(|h| h.keyword == "viagra")
            .map(|h| h.count);
        assert_eq!(count, Some(2), "{v:?}");
    }

    /// The classifier reads every alternative; a model trained with tokeniser
    /// version 1 is given the texts version 1 read (only the HTML here).
    #[test]
    fn classifier_features_follow_the_models_tokeniser_version() {
        let raw = b"Content-Type: multipart/alternative; boundary=b\r\n\r\n\
                    --b\r\nContent-Type: text/plain\r\n\r\nplainonlyword shared\r\n\
                    --b\r\nContent-Type: text/html\r\n\r\n<p>htmlonlyword shared</p>\r\n--b--\r\n";
        let engine = engine();
        let tokens = |version: u32| -> Vec<String> {
            classify::with_extractor(&FeatureConfig::default(), |ex| {
                let _ = engine.analyse(raw, Some((&mut *ex, version)));
                ex.features().iter().map(|f| ex.token(f)).collect()
            })
        };
        let (v1, v2) = (tokens(1), tokens(FEATURES_VERSION));
        for word in ["plainonlyword", "htmlonlyword", "shared"] {
            assert!(v2.iter().any(|t| t == word), "{word} not in {v2:?}");
        }
        assert!(!v1.iter().any(|t| t == "plainonlyword"), "{v1:?}");
        assert!(v1.iter().any(|t| t == "htmlonlyword"), "{v1:?}");
        // The same buckets through the public path.
        let x = engine.extract_version(raw, &FeatureConfig::default(), 1);
        assert_eq!(x.buckets.len(), v1.len());
    }

    /// Issue 13: a Chinese keyword that begins or ends a compound of two
    /// dictionary words is found in a scan (特价机票, 优惠价格).
    #[test]
    fn keywords_in_compounds_are_found() {
        let raw = "Subject: hi\r\n\r\n本周特价机票，另有优惠价格，电影院和基金会不算。\r\n";
        let v = engine().scan(raw.as_bytes(), &Envelope::default());
        let found: Vec<&str> = v.hits.iter().map(|h| h.keyword.as_str()).collect();
        assert!(
            found.contains(&"特价") && found.contains(&"优惠"),
            "{found:?}"
        );
        assert!(
            !found.contains(&"电影") && !found.contains(&"基金"),
            "{found:?}"
        );
    }

    /// Issue 13: the English phrases of the adult, free and money lists weigh at
    /// least a quarter of the quarantine threshold (or, for the two FAQ words
    /// Chinese mail uses in other senses, a token weight), so that plain English
    /// spam with four distinct phrases is held even when they are the four
    /// weakest; ordinary mail with one or two of them is delivered.
    #[test]
    fn four_english_spam_phrases_reach_quarantine() {
        let engine = engine();
        let kw = engine.keywords();
        let q = engine.config().thresholds.quarantine;
        let mut english: Vec<(&str, f64)> = kw
            .keywords
            .iter()
            .filter(|k| {
                !k.is_cjk()
                    && ["adult", "free", "money"].contains(&kw.categories[k.category].as_str())
            })
            .filter(|k| k.weight > 0.2)
            .map(|k| (k.text.as_str(), k.weight))
            .collect();
        assert!(english.len() >= 30, "{english:?}");
        assert!(english.iter().all(|&(_, w)| w >= q / 4.0), "{english:?}");
        let token: Vec<&str> = kw
            .keywords
            .iter()
            .filter(|k| !k.is_cjk() && k.weight <= 0.2)
            .map(|k| k.text.as_str())
            .collect();
        assert_eq!(token, ["sex", "movie"]);
        // The four weakest phrases (no one contained in another), in plain text.
        english.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
        let mut four: Vec<&str> = Vec::new();
        for &(p, _) in &english {
            if four.len() < 4 && !four.iter().any(|q| q.contains(p) || p.contains(q)) {
                four.push(p);
            }
        }
        let mail =
            |body: &str| format!("Subject: hello\r\nContent-Type: text/plain\r\n\r\n{body}\r\n");
        let spam = mail(&format!(
            "Hello friend. {}, {}; {} - and {} today!",
            four[0], four[1], four[2], four[3]
        ));
        let v = engine.scan(spam.as_bytes(), &Envelope::default());
        assert!(
            v.action != Action::Deliver && v.score >= q,
            "{four:?}: {v:?}"
        );
        for body in [
            "Cheap replica watches with free shipping: best prices, order now.",
            "Buy viagra and cialis at our online pharmacy: discount pills, free shipping.",
            "Online casino: claim your bonus, act now and make money from home.",
        ] {
            let v = engine.scan(mail(body).as_bytes(), &Envelope::default());
            assert_ne!(v.action, Action::Deliver, "{body}: {v:?}");
        }
        for body in [
            "Feel free to bring the free software CD to the meeting.",
            "The conference hotel gives members a discount; see the bonus session on Friday.",
        ] {
            let v = engine.scan(mail(body).as_bytes(), &Envelope::default());
            assert_eq!(v.action, Action::Deliver, "{body}: {v:?}");
        }
    }

    #[test]
    fn excerpts_keep_context() {
        assert_eq!(excerpt("0123456789abcdefghij", 10..11), "23456789abcdefghi");
        assert_eq!(excerpt("免费", 0..6), "免费");
        assert_eq!(excerpt("a\r\n免费\u{85}b", 3..9), "a  免费 b");
    }

    proptest::proptest! {
        /// An excerpt is the text around the hit with every control char (C0,
        /// DEL, C1) shown as a space, whatever mix of them and other chars.
        #[test]
        fn excerpts_replace_every_control_char(
            chars in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::char::range('\0', '\u{a0}'),
                    proptest::char::range('\u{4e00}', '\u{4e10}'),
                    proptest::prelude::Just('\u{2028}'),
                ],
                1..40,
            ),
            at in 0usize..40,
        ) {
            let text: String = chars.iter().collect();
            let k = at % chars.len();
            let start: usize = chars[..k].iter().map(|c| c.len_utf8()).sum();
            let range = start..start + chars[k].len_utf8();
            let from = k.saturating_sub(EXCERPT_CONTEXT);
            let to = (k + 1 + EXCERPT_CONTEXT).min(chars.len());
            let want: String = chars[from..to]
                .iter()
                .map(|&c| if c.is_control() { ' ' } else { c })
                .collect();
            proptest::prop_assert_eq!(excerpt(&text, range), want);
        }
    }
}
