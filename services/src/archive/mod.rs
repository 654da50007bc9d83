//! The portable export format of the event log (`powernode events export`,
//! `powernode events import`, `powernode replay --file`).
//!
//! STUB: the format is being written; the signatures below are fixed.

use crate::log::Record;
use std::io::{BufReader, Read, Write};
use std::path::Path;

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

/// The header of an export file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Format version of the file.
    pub version: u16,
}

/// Reads an export record by record.
pub struct Reader<R: Read> {
    inner: R,
    header: Header,
}

impl Reader<BufReader<std::fs::File>> {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let _ = path;
        todo!("archive format")
    }
}

impl<R: Read> Reader<R> {
    /// Checks the header of `inner`.
    pub fn new(inner: R) -> Result<Self, ArchiveError> {
        let _ = &inner;
        todo!("archive format")
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Record, ArchiveError>;
    fn next(&mut self) -> Option<Self::Item> {
        let _ = &mut self.inner;
        todo!("archive format")
    }
}

/// Writes an export.
pub struct Writer<W: Write> {
    inner: W,
}

impl<W: Write> Writer<W> {
    /// Writes the header.
    pub fn new(inner: W) -> Result<Self, ArchiveError> {
        Ok(Self { inner })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Record) -> Result<(), ArchiveError> {
        let _ = record;
        todo!("archive format")
    }

    /// Writes the trailer and hands back the writer.
    pub fn finish(self) -> Result<W, ArchiveError> {
        Ok(self.inner)
    }
}
