//! `powernode-client`: the one HTTP client of powernode's operator API
//! (work in progress: actions, plain requests, the event stream and the
//! export download).

pub mod api;
pub mod config;
pub mod error;
pub mod events;
pub mod export;

pub use api::{request, Answer, Api};
pub use config::{ClientConfig, MAX_IDLE};
pub use error::{printable, ActionError, ConfigError, Refusal};
pub use events::{
    percent_encode, query_string, EventStream, EventsQuery, SseEvent, EVENTS_PATH, IDLE_TIMEOUT,
};
pub use export::{DownloadError, ExportBody, ExportQuery, EXPORT_PATH};
