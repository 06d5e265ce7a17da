//! The milter service: Postfix and Sendmail hand each message to chaff over a socket.
//!
//! (Being written: see issue 4.)

pub mod config;
pub mod protocol;
pub use config::{AccountsConfig, MilterConfig};
