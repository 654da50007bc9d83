//! # powernode-archive — the log's records, read and carried
//!
//! The portable export format of the event log (`powernode events export`,
//! `powernode events import`, `powernode replay --file`): a file that carries
//! log records from one log to another, byte for byte, and refuses to be read
//! when any of it is damaged.
//!
//! ```text
//! file    = header frame* trailer EOF
//! header  = magic "\x89PNX\r\n\x1a\n" | version u16 | length u32 | CBOR map | crc32 u32
//! frame   = tag u8 | length u32 | CBOR map (length bytes) | crc32 u32
//! record  = tag 'R', {"seq": u64, "subject": text, "stored_at": i64 ns, "bytes": bstr}
//! trailer = tag 'T', {"records": u64, "first_seq": u64, "last_seq": u64, "crc": u32}
//! ```
//!
//! Integers are big-endian. A frame's crc32 covers its tag, length and
//! body, so a flipped byte anywhere is caught; the trailer counts the
//! records and carries a crc32 over every record frame, so a file cut at a
//! record boundary (or missing a record) is caught too. A version this
//! build does not know is refused before anything else is read. Every
//! error names the byte offset where reading broke ([`ArchiveError`]).
//!
//! Records keep the log's canonical CBOR bytes exactly (agent signatures
//! cover them). Secrets are never in an export because they are never in
//! the log (events carry fingerprints only).
//!
//! * `format` — frames and their CBOR bodies;
//! * [`Reader`] / [`Writer`] — the file, record by record;
//! * [`source`] — where records are read from (a JetStream stream, an
//!   embedded log, an export file), up to a [`Bound`];
//! * [`select`] — which records an export holds (`--since`, `--until`,
//!   `--kind-prefix`, account), read from any [`Source`];
//! * [`concerns`] — whether a record concerns an id (filters of the tail
//!   and of `recent_events`);
//! * [`download`] — an export arriving as a byte stream (the body the HTTP
//!   client hands over), written to a file and checked as it arrives.
//!
//! Module order (each uses only those before it): `format` → `reader`,
//! `writer` → `source` → `select`; `reader` → `download`; `concerns` stands
//! alone.
//!
//! This crate reads and writes records; it must never fold them into state,
//! decide anything, or talk HTTP (a download from the API is the client's;
//! [`download`] only checks the bytes it is handed).

pub mod concerns;
pub mod download;
mod format;
mod reader;
pub mod select;
pub mod source;
mod writer;

pub use concerns::concerns;
pub use source::{Bound, OpenedSource, RecordStream, Source, SourceArgs};

pub use reader::{verify, Reader, Summary};
pub use writer::Writer;

/// The API path of an export.
pub const EXPORT_PATH: &str = "/v1/events/export";

use chrono::{DateTime, Utc};

/// The format version this build writes (and the only one it reads).
pub const FORMAT_VERSION: u16 = 1;

/// The first eight bytes of every export (a non-ASCII first byte and a
/// CR LF / EOF sequence, like PNG's, so text-mode transfers are caught).
pub const MAGIC: [u8; 8] = *b"\x89PNX\r\n\x1a\n";

/// The usual file extension.
pub const EXTENSION: &str = "pnx";

/// Why an export could not be read or written; `offset` is the byte offset
/// in the file where reading broke.
#[derive(Debug, thiserror::Error)]
#[error("{path}at byte offset {offset}: {message}")]
pub struct ArchiveError {
    /// `"<file>: "` or empty.
    pub path: String,
    /// Byte offset where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub message: String,
}

impl ArchiveError {
    /// An error at `offset` (no path yet).
    pub(crate) fn at(offset: u64, message: impl Into<String>) -> Self {
        Self {
            path: String::new(),
            offset,
            message: message.into(),
        }
    }

    /// The same error naming `path`.
    pub(crate) fn in_file(mut self, path: &std::path::Path) -> Self {
        self.path = format!("{}: ", path.display());
        self
    }
}

/// The header of an export file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Format version of the file.
    pub version: u16,
    /// When the export was written.
    pub created_at: Option<DateTime<Utc>>,
    /// The log it was read from (`jetstream nats://… stream PN_EVENTS`).
    pub source: String,
    /// Only this account's events, when the export is scoped to one.
    pub account: Option<String>,
    /// Only kinds starting with this, when filtered.
    pub kind_prefix: Option<String>,
    /// `--since` as given (sequence or time), when given.
    pub since: Option<String>,
    /// `--until` as given, when given.
    pub until: Option<String>,
}

#[cfg(test)]
mod tests;
