//! Writing an export: the header, one frame per record, the trailer.

use super::format::{self, Trailer, TAG_RECORD, TAG_TRAILER};
use super::{ArchiveError, Header, FORMAT_VERSION, MAGIC};
use powernode_log::Record;
use std::io::Write;

/// Writes an export. Frames go straight to `inner` (no buffering here):
/// wrap a file in a `BufWriter`.
pub struct Writer<W: Write> {
    inner: W,
    offset: u64,
    trailer: Trailer,
    crc: crc32fast::Hasher,
}

impl<W: Write> Writer<W> {
    /// Writes the header (current version, no description).
    pub fn new(inner: W) -> Result<Self, ArchiveError> {
        Self::with_header(inner, Header::default())
    }

    /// Writes `header` (its version is set to [`FORMAT_VERSION`]).
    pub fn with_header(inner: W, header: Header) -> Result<Self, ArchiveError> {
        let mut w = Self {
            inner,
            offset: 0,
            trailer: Trailer::default(),
            crc: crc32fast::Hasher::new(),
        };
        let body = format::header_body(&header).map_err(|e| ArchiveError::at(0, e))?;
        let mut head = Vec::with_capacity(6 + body.len());
        head.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        head.extend_from_slice(&(body.len() as u32).to_be_bytes());
        head.extend_from_slice(&body);
        let crc = crc32fast::hash(&head);
        w.put(&MAGIC)?;
        w.put(&head)?;
        w.put(&crc.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.inner
            .write_all(bytes)
            .map_err(|e| ArchiveError::at(self.offset, format!("cannot write: {e}")))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Appends one record. Records must come in increasing sequence order.
    pub fn write(&mut self, record: &Record) -> Result<(), ArchiveError> {
        if self.trailer.records > 0 && record.seq <= self.trailer.last_seq {
            return Err(ArchiveError::at(
                self.offset,
                format!(
                    "record seq {} written after seq {}: records must be in increasing order",
                    record.seq, self.trailer.last_seq
                ),
            ));
        }
        let body = format::record_body(record).map_err(|e| ArchiveError::at(self.offset, e))?;
        if body.len() > format::MAX_BODY as usize {
            return Err(ArchiveError::at(
                self.offset,
                format!(
                    "record seq {} is {} bytes, more than an export frame holds",
                    record.seq,
                    body.len()
                ),
            ));
        }
        let frame = format::frame(TAG_RECORD, &body);
        self.put(&frame)?;
        self.crc.update(&frame);
        if self.trailer.records == 0 {
            self.trailer.first_seq = record.seq;
        }
        self.trailer.records += 1;
        self.trailer.last_seq = record.seq;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.trailer.records
    }

    /// Sequences of the first and last record written, if any.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        (self.trailer.records > 0).then_some((self.trailer.first_seq, self.trailer.last_seq))
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// The destination (e.g. to drain a `Vec<u8>` between records when
    /// streaming: every call to [`Writer::write`] leaves whole frames).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Writes the trailer, flushes and hands back the writer.
    pub fn finish(self) -> Result<W, ArchiveError> {
        Ok(self.finish_with_len()?.0)
    }

    /// [`Writer::finish`], also answering the size of the whole export.
    pub fn finish_with_len(mut self) -> Result<(W, u64), ArchiveError> {
        self.trailer.crc = self.crc.clone().finalize();
        let body =
            format::trailer_body(&self.trailer).map_err(|e| ArchiveError::at(self.offset, e))?;
        self.put(&format::frame(TAG_TRAILER, &body))?;
        self.inner
            .flush()
            .map_err(|e| ArchiveError::at(self.offset, format!("cannot write: {e}")))?;
        Ok((self.inner, self.offset))
    }
}
