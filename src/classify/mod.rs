//! The statistical token classifier learned from labelled mail.
//!
//! (Being written: see issue 3.)

use serde::Deserialize;

/// Settings of the classifier (`[classifier]` in `chaff.toml`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {}
