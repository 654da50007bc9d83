//! # powernode-inspect — looking into the log
//!
//! * [`replay`] — fold a log (or a range of it) into fleet state, and what
//!   each event changed ([`jsondiff`]);
//! * [`sealed`] — the same fold verified by the log's seals (one signature
//!   per sealed range, per-event signatures past the last seal);
//! * [`explain`] — why an object is as it is: its causal chain;
//! * [`progress`] — progress lines for long reads;
//! * [`open_source`] — the log to read, with a running node's API as a
//!   fallback (an export downloaded through `powernode-client`), and
//!   [`download_export`], that download checked frame by frame.
//!
//! `powernode replay`, `powernode events explain` and the replay benchmark
//! build on these. This crate reads; it must never append to a log or
//! change a node's state.

pub mod explain;
pub mod jsondiff;
pub mod progress;
pub mod replay;
pub mod sealed;
mod source;

pub use progress::Progress;
pub use source::{download_export, open_source};
