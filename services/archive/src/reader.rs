//! Reading an export: the header when opened, then record by record; the
//! trailer is checked when the records run out. Every problem is an
//! [`ArchiveError`] naming the byte offset where reading broke, and ends
//! the iteration.

use super::format::{self, Trailer, FRAME_CRC, FRAME_HEAD, TAG_RECORD, TAG_TRAILER};
use super::{ArchiveError, Header, FORMAT_VERSION, MAGIC};
use powernode_log::Record;
use std::io::{BufReader, Read};
use std::path::Path;

/// What a fully read (and therefore intact) export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The header.
    pub header: Header,
    /// Number of records.
    pub records: u64,
    /// Sequences of the first and last record, when there are records.
    pub seq_range: Option<(u64, u64)>,
    /// Size of the file.
    pub bytes: u64,
}

impl Summary {
    /// True when importing renumbers the records: they do not start at
    /// sequence 1 or have gaps (a filtered or partial export).
    pub fn renumbers(&self) -> bool {
        match self.seq_range {
            None => false,
            Some((first, last)) => first != 1 || last - first + 1 != self.records,
        }
    }
}

enum State {
    Reading,
    Done(Summary),
    Failed,
}

/// Reads an export record by record.
pub struct Reader<R: Read> {
    inner: R,
    header: Header,
    path: String,
    offset: u64,
    records: u64,
    first_seq: u64,
    last_seq: u64,
    crc: crc32fast::Hasher,
    state: State,
}

impl Reader<BufReader<std::fs::File>> {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let file = std::fs::File::open(path)
            .map_err(|e| ArchiveError::at(0, format!("cannot open: {e}")).in_file(path))?;
        let mut reader =
            Self::new(BufReader::with_capacity(256 * 1024, file)).map_err(|e| e.in_file(path))?;
        reader.path = format!("{}: ", path.display());
        Ok(reader)
    }
}

/// Reads the whole export at `path`, checking every frame and the
/// trailer; its summary, or where it broke.
pub fn verify(path: &Path) -> Result<Summary, ArchiveError> {
    let mut reader = Reader::open(path)?;
    for item in reader.by_ref() {
        item?;
    }
    reader
        .summary()
        .cloned()
        .ok_or_else(|| ArchiveError::at(0, "unreadable export").in_file(path))
}

impl<R: Read> Reader<R> {
    /// Checks the header of `inner`.
    pub fn new(inner: R) -> Result<Self, ArchiveError> {
        let mut r = Self {
            inner,
            header: Header::default(),
            path: String::new(),
            offset: 0,
            records: 0,
            first_seq: 0,
            last_seq: 0,
            crc: crc32fast::Hasher::new(),
            state: State::Reading,
        };
        r.header = r.read_header()?;
        Ok(r)
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The input, handed back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The summary, once every record and the trailer were read and found intact.
    pub fn summary(&self) -> Option<&Summary> {
        match &self.state {
            State::Done(s) => Some(s),
            _ => None,
        }
    }

    /// Reads until `buf` is full or the input ends; the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ArchiveError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ArchiveError::at(
                        self.offset + got as u64,
                        format!("cannot read: {e}"),
                    ))
                }
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    /// Fills `buf` or fails with "cut short" naming `what` (which starts at `start`).
    fn exact(&mut self, buf: &mut [u8], start: u64, what: &str) -> Result<(), ArchiveError> {
        let got = self.fill(buf)?;
        if got < buf.len() {
            return Err(ArchiveError::at(
                start,
                format!(
                    "{what} is cut short: the file ends at byte {} (truncated?)",
                    self.offset
                ),
            ));
        }
        Ok(())
    }

    fn read_header(&mut self) -> Result<Header, ArchiveError> {
        let mut magic = [0u8; 8];
        let got = self.fill(&mut magic)?;
        if got == 0 {
            return Err(ArchiveError::at(
                0,
                "the file is empty: not a powernode export",
            ));
        }
        if magic[..got] != MAGIC[..got] {
            return Err(ArchiveError::at(
                0,
                "not a powernode export (it does not start with the export magic bytes)",
            ));
        }
        if got < MAGIC.len() {
            return Err(ArchiveError::at(
                0,
                format!("the header is cut short: the file ends at byte {got} (truncated?)"),
            ));
        }
        let mut head = [0u8; 6];
        self.exact(&mut head[..2], 0, "the header")?;
        let version = u16::from_be_bytes([head[0], head[1]]);
        if version != FORMAT_VERSION {
            return Err(ArchiveError::at(
                8,
                format!(
                    "unknown export format version {version}: this build reads version \
                     {FORMAT_VERSION} (written by a newer powernode, or damaged)"
                ),
            ));
        }
        self.exact(&mut head[2..], 0, "the header")?;
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
        if len > format::MAX_HEADER {
            return Err(ArchiveError::at(
                10,
                format!("header length {len} is implausible (damaged file?)"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        self.exact(&mut body, 0, "the header")?;
        let mut crc = [0u8; 4];
        self.exact(&mut crc, 0, "the header")?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head);
        hasher.update(&body);
        let (stored, computed) = (u32::from_be_bytes(crc), hasher.finalize());
        if stored != computed {
            return Err(ArchiveError::at(
                8,
                format!(
                    "header checksum mismatch (stored {stored:08x}, computed {computed:08x}): \
                     the file is damaged"
                ),
            ));
        }
        format::parse_header(version, &body).map_err(|e| ArchiveError::at(14, e))
    }

    /// Reads the next frame: a record, or `None` after an intact trailer.
    fn next_record(&mut self) -> Result<Option<Record>, ArchiveError> {
        let start = self.offset;
        let n = self.records + 1;
        let mut head = [0u8; FRAME_HEAD];
        if self.fill(&mut head[..1])? == 0 {
            return Err(ArchiveError::at(
                start,
                format!(
                    "the file ends after {} records without its trailer: it was cut short \
                     (truncated?)",
                    self.records
                ),
            ));
        }
        let what = match head[0] {
            TAG_RECORD => format!("record {n}"),
            TAG_TRAILER => "the trailer".to_string(),
            other => {
                return Err(ArchiveError::at(
                    start,
                    format!("unknown frame type 0x{other:02x} where record {n} or the trailer should start (damaged file?)"),
                ))
            }
        };
        self.exact(&mut head[1..], start, &what)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len > format::MAX_BODY {
            return Err(ArchiveError::at(
                start,
                format!("{what}: length {len} is implausible (damaged file?)"),
            ));
        }
        let mut rest = vec![0u8; len as usize + FRAME_CRC];
        self.exact(&mut rest, start, &what)?;
        let rest = bytes::Bytes::from(rest);
        let (body, crc) = rest.split_at(len as usize);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head);
        hasher.update(body);
        let computed = hasher.finalize();
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if stored != computed {
            return Err(ArchiveError::at(
                start,
                format!(
                    "{what}: checksum mismatch (stored {stored:08x}, computed {computed:08x}): \
                     the file is damaged"
                ),
            ));
        }
        let body_at = start + FRAME_HEAD as u64;
        if head[0] == TAG_TRAILER {
            let t = format::parse_trailer(body).map_err(|e| ArchiveError::at(body_at, e))?;
            self.check_trailer(&t, start)?;
            return Ok(None);
        }
        let record = format::parse_record_in(&rest, 0..len as usize)
            .map_err(|e| ArchiveError::at(body_at, format!("{what}: {e}")))?;
        if self.records > 0 && record.seq <= self.last_seq {
            return Err(ArchiveError::at(
                start,
                format!(
                    "{what}: seq {} follows seq {}: records are out of order",
                    record.seq, self.last_seq
                ),
            ));
        }
        self.crc.update(&head);
        self.crc.update(&rest);
        if self.records == 0 {
            self.first_seq = record.seq;
        }
        self.records = n;
        self.last_seq = record.seq;
        Ok(Some(record))
    }

    fn check_trailer(&mut self, t: &Trailer, start: u64) -> Result<(), ArchiveError> {
        let crc = self.crc.clone().finalize();
        let seen = Trailer {
            records: self.records,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            crc,
        };
        if *t != seen {
            return Err(ArchiveError::at(
                start,
                format!(
                    "the trailer does not match the records: it lists {} records (seq {}-{}, \
                     crc {:08x}), the file holds {} (seq {}-{}, crc {:08x}): records are missing \
                     or damaged",
                    t.records,
                    t.first_seq,
                    t.last_seq,
                    t.crc,
                    seen.records,
                    seen.first_seq,
                    seen.last_seq,
                    seen.crc
                ),
            ));
        }
        let end = self.offset;
        let mut extra = [0u8; 1];
        if self.fill(&mut extra)? > 0 {
            return Err(ArchiveError::at(
                end,
                "unexpected bytes after the trailer (damaged or concatenated file?)",
            ));
        }
        self.state = State::Done(Summary {
            header: self.header.clone(),
            records: self.records,
            seq_range: (self.records > 0).then_some((self.first_seq, self.last_seq)),
            bytes: end,
        });
        Ok(())
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Record, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        if !matches!(self.state, State::Reading) {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => None,
            Err(mut e) => {
                self.state = State::Failed;
                e.path = self.path.clone();
                Some(Err(e))
            }
        }
    }
}
