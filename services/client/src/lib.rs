//! `powernode-client`: the one HTTP client of powernode's operator API
//! (work in progress: actions and plain requests).

pub mod api;
pub mod config;
pub mod error;

pub use api::{request, Answer, Api};
pub use config::{ClientConfig, MAX_IDLE};
pub use error::{printable, ActionError, ConfigError, Refusal};
