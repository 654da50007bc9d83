//! Looking into the log: where to read it from ([`source`]) and how to show
//! what an event changed ([`jsondiff`]). `powernode replay`, `powernode
//! events explain` and `powernode events export` build on these.

pub mod concerns;
pub mod explain;
pub mod jsondiff;
pub mod progress;
pub mod replay;
pub mod source;

pub use concerns::concerns;
pub use progress::Progress;
pub use source::{Bound, RecordStream, Source, SourceArgs};
