//! # chaff — an explainable anti-spam content filter for Chinese and English mail
//!
//! chaff scores a message against weighted keyword lists (the `free`, `adult` and
//! `money` categories mail admins already know), after decoding and normalising the
//! text so that the usual evasions (`免 费`, `ｆｒｅｅ`, `免費`, zero-width
//! characters, HTML hiding) do not escape it. Every verdict says *why*: the score, the
//! hits (keyword, category, weight, count, where) and the reason for the action.
//!
//! The data flows through the stages in this order, one module each:
//!
//! | stage | module | hands on |
//! |---|---|---|
//! | parse | [`parse`] | MIME tree with raw offsets (mail-parser) |
//! | decode | [`decode`] | the subject and every text part as UTF-8 visible text |
//! | normalise | [`normalise`] | folded text plus a map back to the decoded text |
//! | match | [`matching`] | keyword occurrences (Aho-Corasick) |
//! | segment | [`segment`] | occurrences confirmed as real words (jieba) |
//! | score | [`score`] | per-keyword hits and a total score |
//! | route | [`route`] | a [`Verdict`]: deliver, quarantine or reject |
//!
//! ```
//! use chaff::{Config, Engine, Envelope, Action};
//!
//! let engine = Engine::new(&Config::default())?;
//! let raw = "From: a@example.com\r\nSubject: =?utf-8?B?5YWN6LS55Luj5byA5Y+R56Wo?=\r\n\r\n\
//!            代开发票，优惠特价，免 费咨询，赚钱发财！\r\n";
//! let verdict = engine.scan(raw.as_bytes(), &Envelope::default());
//! assert_ne!(verdict.action, Action::Deliver);
//! println!("{} {:.1}: {}", verdict.action, verdict.score, verdict.reason);
//! # Ok::<(), chaff::Error>(())
//! ```

#[path = "2_decode/mod.rs"]
pub mod decode;
#[path = "4_match.rs"]
pub mod matching;
#[path = "3_normalise.rs"]
pub mod normalise;
#[path = "1_parse.rs"]
pub mod parse;
#[path = "7_route.rs"]
pub mod route;
#[path = "6_score.rs"]
pub mod score;
#[path = "5_segment.rs"]
pub mod segment;

pub mod classify;
pub mod config;
mod engine;
mod error;
pub mod eval;
pub mod input;
pub mod keywords;
pub mod milter;
pub mod ordered;
mod verdict;

pub use config::Config;
pub use engine::Engine;
pub use error::Error;
pub use verdict::{Action, Envelope, Hit, Location, Reason, TextSource, Verdict};
