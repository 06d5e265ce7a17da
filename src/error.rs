//! The library's error type: what can stop an engine from being built.
//!
//! Scanning itself never fails: malformed mail is scored as well as it can be. Only
//! building an engine (configuration, keyword lists, model) can go wrong.

use crate::config::ConfigError;
use std::path::PathBuf;

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A keyword list has a bad line.
    #[error("{file}:{line}: {message}")]
    Keywords {
        /// The list file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The keyword automaton could not be built (e.g. too many keywords).
    #[error("cannot build the keyword matcher: {0}")]
    Matcher(String),
    /// The model file could not be used.
    #[error("{path}: {message}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}
