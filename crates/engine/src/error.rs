//! The library's errors: what can stop an engine from being built.
//!
//! Scanning itself never fails: malformed mail is scored as well as it can be. Only
//! building an engine (configuration, keyword lists, model) can go wrong, and each
//! error names the file, the line and the field, and keeps its underlying cause as
//! its [`source`](std::error::Error::source).

use std::fmt;
use std::path::PathBuf;

/// A configuration file that could not be used.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file, or `<string>` when parsed from memory.
    pub file: PathBuf,
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `thresholds.reject`, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Why a model file could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum ModelError {
    /// The file could not be read or written.
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a chaff model (wrong magic bytes).
    Foreign,
    /// The file is shorter than its header says (or than any model).
    Truncated {
        /// Bytes present.
        have: u64,
        /// Bytes the header announces (or the minimum).
        want: u64,
    },
    /// The file has bytes past its announced end.
    TrailingBytes {
        /// Bytes present.
        have: u64,
        /// Bytes the header announces.
        want: u64,
    },
    /// The checksum does not match: the file is damaged.
    Checksum,
    /// A format version this build cannot read.
    Version {
        /// The file's version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Weights trained with another tokeniser version.
    FeaturesVersion {
        /// The model's tokeniser version.
        found: u32,
        /// This build's tokeniser version.
        supported: u32,
    },
    /// The header or metadata is inconsistent.
    Invalid(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Io { action, source } => write!(f, "cannot {action}: {source}"),
            ModelError::Foreign => {
                write!(f, "not a chaff model file (no CHAFFMDL magic bytes)")
            }
            ModelError::Truncated { have, want } => write!(
                f,
                "model file is truncated: {have} bytes, expected {want} (retrain or restore it)"
            ),
            ModelError::TrailingBytes { have, want } => {
                write!(f, "model file is damaged: {have} bytes, expected {want}")
            }
            ModelError::Checksum => write!(f, "model file is damaged (checksum mismatch)"),
            ModelError::Version { found, supported } => write!(
                f,
                "model file format version {found} is not supported by this chaff (reads version {supported})"
            ),
            ModelError::FeaturesVersion { found, supported } => write!(
                f,
                "model was trained with tokeniser version {found}, this chaff reads versions {}..={supported}: retrain it with this chaff's `chaff train`",
                crate::classify::features::OLDEST_FEATURES_VERSION
            ),
            ModelError::Invalid(m) => write!(f, "model file is invalid: {m}"),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The keyword automaton could not be built (e.g. too many keywords).
    #[error("cannot build the keyword matcher: {0}")]
    Matcher(#[source] aho_corasick::BuildError),
    /// The model file could not be used.
    #[error("{path}: {source}", path = path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        source: ModelError,
    },
}
