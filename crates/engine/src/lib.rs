//! # chaff — an explainable anti-spam content filter for Chinese and English mail
//!
//! chaff scores a message against weighted keyword lists (the `free`, `adult` and
//! `money` categories mail admins already know), after decoding and normalising the
//! text so that the usual evasions (`免 费`, `ｆｒｅｅ`, `免費`, zero-width
//! characters, HTML hiding) do not escape it, and, with a trained model, adds the
//! points of a token classifier. Every verdict says *why*: the score, the hits
//! (keyword, category, weight, count, where) and the reason for the action.
//!
//! This crate is the engine alone: no threads of its own, no I/O beyond reading its
//! configuration, keyword lists and model file, no `unsafe`. The milter service,
//! training and the command-line tool are separate crates built on it.
//!
//! ```
//! use chaff::{Action, Engine, Envelope};
//!
//! let engine = Engine::builder().build()?; // the embedded defaults
//! let raw = "From: a@example.com\r\nSubject: =?utf-8?B?5YWN6LS55Luj5byA5Y+R56Wo?=\r\n\r\n\
//!            代开发票，优惠特价，免 费咨询，赚钱发财！\r\n";
//! let verdict = engine.scan(raw.as_bytes(), &Envelope::default());
//! assert_ne!(verdict.action, Action::Deliver);
//! println!("{} {:.1}: {}", verdict.action, verdict.score, verdict.reason);
//! # Ok::<(), chaff::Error>(())
//! ```
//!
//! The order of the stages is written once, in [`Engine::scan`]; DESIGN.md draws it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bounce;
pub mod classify;
pub mod config;
mod engine;
mod error;
pub mod keywords;
mod reply;
mod reroute;
mod verdict;

// The stages, in the order a scan runs them. Public only for the benchmarks, the
// fuzz targets and the trainer; not part of the supported API.
#[doc(hidden)]
pub mod auth_results;
#[doc(hidden)]
pub mod decode;
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod matching;
#[doc(hidden)]
pub mod normalise;
#[doc(hidden)]
pub mod parse;
#[doc(hidden)]
pub mod route;
#[doc(hidden)]
pub mod score;
#[doc(hidden)]
pub mod segment;
#[doc(hidden)]
pub mod text;

pub use config::Config;
pub use engine::{Engine, EngineBuilder, Extracted};
pub use error::{ConfigError, Error};
pub use reply::Reply;
pub use verdict::{
    Action, AllowProof, Envelope, Hit, Location, Reason, TextSource, TokenWeight, Verdict,
};
