//! Frames and their CBOR bodies: the byte layout described in the module
//! documentation of [`crate`], in one place.

use super::Header;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ciborium::Value;
use powernode_log::Record;

/// Tag of a record frame.
pub const TAG_RECORD: u8 = b'R';
/// Tag of the trailer frame.
pub const TAG_TRAILER: u8 = b'T';
/// Bytes before a frame's body: tag and length.
pub const FRAME_HEAD: usize = 5;
/// Bytes after a frame's body: its crc32.
pub const FRAME_CRC: usize = 4;
/// The largest frame body accepted (an event is at most 1 MiB; a larger
/// length means a damaged length field, not a record).
pub const MAX_BODY: u32 = 4 * 1024 * 1024;
/// The largest header body accepted.
pub const MAX_HEADER: u32 = 64 * 1024;

/// The trailer's content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Number of records.
    pub records: u64,
    /// Sequence of the first record (0 without records).
    pub first_seq: u64,
    /// Sequence of the last record (0 without records).
    pub last_seq: u64,
    /// crc32 over every record frame, in order.
    pub crc: u32,
}

/// A whole frame: tag, length, body, crc32.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEAD + body.len() + FRAME_CRC);
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn opt_text(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Null, text)
}

fn to_cbor(v: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The header's CBOR body (the version travels outside it).
pub fn header_body(h: &Header) -> Result<Vec<u8>, String> {
    to_cbor(&Value::Map(vec![
        (
            text("created_at"),
            h.created_at.map_or(Value::Null, |t| text(&t.to_rfc3339())),
        ),
        (text("source"), text(&h.source)),
        (text("account"), opt_text(&h.account)),
        (text("kind_prefix"), opt_text(&h.kind_prefix)),
        (text("since"), opt_text(&h.since)),
        (text("until"), opt_text(&h.until)),
    ]))
}

/// A record's CBOR body.
pub fn record_body(r: &Record) -> Result<Vec<u8>, String> {
    let nanos = r.stored_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
    to_cbor(&Value::Map(vec![
        (text("seq"), Value::Integer(r.seq.into())),
        (text("subject"), text(&r.subject)),
        (text("stored_at"), Value::Integer(nanos.into())),
        (text("bytes"), Value::Bytes(r.bytes.to_vec())),
    ]))
}

/// The trailer's CBOR body.
pub fn trailer_body(t: &Trailer) -> Result<Vec<u8>, String> {
    to_cbor(&Value::Map(vec![
        (text("records"), Value::Integer(t.records.into())),
        (text("first_seq"), Value::Integer(t.first_seq.into())),
        (text("last_seq"), Value::Integer(t.last_seq.into())),
        (text("crc"), Value::Integer(t.crc.into())),
    ]))
}

/// The fields of a CBOR map body, by key.
struct Fields(Vec<(Value, Value)>);

impl Fields {
    fn parse(body: &[u8], what: &str) -> Result<Self, String> {
        match ciborium::from_reader::<Value, _>(body) {
            Ok(Value::Map(m)) => Ok(Self(m)),
            Ok(_) => Err(format!("the {what} is not a CBOR map")),
            Err(e) => Err(format!("the {what} is not valid CBOR: {e}")),
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        let i = self
            .0
            .iter()
            .position(|(k, _)| matches!(k, Value::Text(t) if t == key))?;
        Some(self.0.swap_remove(i).1)
    }

    fn text(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t)),
            Some(_) => Err(format!("field {key:?} is not text")),
        }
    }

    fn required_text(&mut self, key: &str) -> Result<String, String> {
        self.text(key)?
            .ok_or_else(|| format!("field {key:?} is missing"))
    }

    fn int<T: TryFrom<ciborium::value::Integer>>(&mut self, key: &str) -> Result<T, String> {
        match self.take(key) {
            Some(Value::Integer(i)) => {
                T::try_from(i).map_err(|_| format!("field {key:?} is out of range"))
            }
            Some(_) => Err(format!("field {key:?} is not an integer")),
            None => Err(format!("field {key:?} is missing")),
        }
    }
}

/// Parses a header body; unknown fields are ignored (a later build of the
/// same version may add some).
pub fn parse_header(version: u16, body: &[u8]) -> Result<Header, String> {
    let mut f = Fields::parse(body, "header")?;
    let created_at = match f.text("created_at")? {
        None => None,
        Some(t) => Some(
            DateTime::parse_from_rfc3339(&t)
                .map_err(|e| format!("field \"created_at\" is not an RFC 3339 time: {e}"))?
                .with_timezone(&Utc),
        ),
    };
    Ok(Header {
        version,
        created_at,
        source: f.text("source")?.unwrap_or_default(),
        account: f.text("account")?,
        kind_prefix: f.text("kind_prefix")?,
        since: f.text("since")?,
        until: f.text("until")?,
    })
}

/// Parses a record body held in `frame` at `body` (the record's event
/// bytes share `frame`'s buffer: no copy). The layout [`record_body`]
/// writes is read directly; anything else (another field order, indefinite
/// lengths, a damaged body) goes through the general parser, which also
/// words the errors.
pub fn parse_record_in(frame: &Bytes, body: std::ops::Range<usize>) -> Result<Record, String> {
    canonical_record(frame, body.clone()).map_or_else(|| parse_record(&frame[body]), Ok)
}

/// The head of one CBOR item: major type and argument (definite only).
fn cbor_head(b: &[u8], at: &mut usize) -> Option<(u8, u64)> {
    let first = *b.get(*at)?;
    *at += 1;
    let (major, info) = (first >> 5, first & 0x1f);
    if info < 24 {
        return Some((major, u64::from(info)));
    }
    let n = match info {
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let raw = b.get(*at..*at + n)?;
    *at += n;
    let mut v = 0u64;
    for byte in raw {
        v = (v << 8) | u64::from(*byte);
    }
    Some((major, v))
}

/// A text or byte string of major type `major` at `at`: its range.
fn cbor_str(b: &[u8], at: &mut usize, major: u8) -> Option<std::ops::Range<usize>> {
    let (m, len) = cbor_head(b, at)?;
    if m != major {
        return None;
    }
    let start = *at;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if end > b.len() {
        return None;
    }
    *at = end;
    Some(start..end)
}

/// `{"seq", "subject", "stored_at", "bytes"}` in the order [`record_body`]
/// writes them, read in place; `None` for anything else.
fn canonical_record(frame: &Bytes, body: std::ops::Range<usize>) -> Option<Record> {
    let b = frame.get(body.clone())?;
    let mut at = 0;
    if cbor_head(b, &mut at)? != (5, 4) {
        return None;
    }
    let key = |name: &str, at: &mut usize| -> Option<()> {
        let r = cbor_str(b, at, 3)?;
        (&b[r] == name.as_bytes()).then_some(())
    };
    key("seq", &mut at)?;
    let (0, seq) = cbor_head(b, &mut at)? else {
        return None;
    };
    key("subject", &mut at)?;
    let subject = std::str::from_utf8(&b[cbor_str(b, &mut at, 3)?])
        .ok()?
        .to_string();
    key("stored_at", &mut at)?;
    let nanos = match cbor_head(b, &mut at)? {
        (0, n) => i64::try_from(n).ok()?,
        (1, n) => -1 - i64::try_from(n).ok()?,
        _ => return None,
    };
    key("bytes", &mut at)?;
    let bytes = cbor_str(b, &mut at, 2)?;
    if at != b.len() {
        return None;
    }
    Some(Record {
        seq,
        subject,
        stored_at: DateTime::from_timestamp_nanos(nanos),
        bytes: frame.slice(body.start + bytes.start..body.start + bytes.end),
    })
}

/// Parses a record body.
pub fn parse_record(body: &[u8]) -> Result<Record, String> {
    let mut f = Fields::parse(body, "record")?;
    let seq: u64 = f.int("seq")?;
    let subject = f.required_text("subject")?;
    let nanos: i64 = f.int("stored_at")?;
    let bytes = match f.take("bytes") {
        Some(Value::Bytes(b)) => Bytes::from(b),
        Some(_) => return Err("field \"bytes\" is not a byte string".into()),
        None => return Err("field \"bytes\" is missing".into()),
    };
    Ok(Record {
        seq,
        subject,
        stored_at: DateTime::from_timestamp_nanos(nanos),
        bytes,
    })
}

/// Parses a trailer body.
pub fn parse_trailer(body: &[u8]) -> Result<Trailer, String> {
    let mut f = Fields::parse(body, "trailer")?;
    Ok(Trailer {
        records: f.int("records")?,
        first_seq: f.int("first_seq")?,
        last_seq: f.int("last_seq")?,
        crc: f.int("crc")?,
    })
}
