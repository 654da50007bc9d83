//! The format without a log: round trips, and every kind of damage refused
//! with the offset where reading broke.

use super::*;
use bytes::Bytes;
use chrono::{TimeZone, Utc};
use powernode_log::Record;

fn record(seq: u64) -> Record {
    Record {
        seq,
        subject: format!("pn.evt.acct-1.cluster.c-{seq}.system.k3s.cluster.requested"),
        stored_at: Utc.timestamp_nanos(1_700_000_000_123_456_789 + seq as i64),
        bytes: Bytes::from(vec![seq as u8; 20 + seq as usize]),
    }
}

fn writer() -> Writer<Vec<u8>> {
    let header = Header {
        source: "test".into(),
        kind_prefix: Some("system.".into()),
        created_at: Some(Utc.timestamp_opt(1_700_000_000, 0).unwrap()),
        ..Header::default()
    };
    Writer::with_header(Vec::new(), header).unwrap()
}

fn export(records: &[Record]) -> Vec<u8> {
    let mut w = writer();
    for r in records {
        w.write(r).unwrap();
    }
    w.finish().unwrap()
}

fn read_all(bytes: &[u8]) -> Result<(Vec<Record>, Summary), ArchiveError> {
    let mut reader = Reader::new(bytes)?;
    let records = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    let summary = reader
        .summary()
        .cloned()
        .expect("complete after the last record");
    Ok((records, summary))
}

#[test]
fn records_round_trip_exactly() {
    let records: Vec<Record> = [1, 2, 3, 7, 9].into_iter().map(record).collect();
    let bytes = export(&records);
    assert_eq!(&bytes[..8], &MAGIC);
    let (back, summary) = read_all(&bytes).unwrap();
    assert_eq!(back, records);
    assert_eq!(summary.records, 5);
    assert_eq!(summary.seq_range, Some((1, 9)));
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert!(summary.renumbers(), "a gap renumbers");
    assert_eq!(summary.header.version, FORMAT_VERSION);
    assert_eq!(summary.header.source, "test");
    assert_eq!(summary.header.kind_prefix.as_deref(), Some("system."));

    let (none, summary) = read_all(&export(&[])).unwrap();
    assert!(none.is_empty());
    assert_eq!((summary.records, summary.seq_range), (0, None));
    assert!(!summary.renumbers());
    let (_, summary) = read_all(&export(&[record(1), record(2)])).unwrap();
    assert!(!summary.renumbers());
}

#[test]
fn every_flipped_byte_is_refused() {
    let bytes = export(&[record(1), record(2), record(3)]);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x04;
        let err = read_all(&bad).expect_err(&format!("flip at {i} went unnoticed"));
        assert!(
            err.offset <= i as u64,
            "flip at {i} reported at {}",
            err.offset
        );
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = export(&[record(1), record(2)]);
    for cut in 0..bytes.len() {
        let err = read_all(&bytes[..cut]).expect_err(&format!("cut at {cut} went unnoticed"));
        assert!(err.offset <= cut as u64, "cut {cut}: {err}");
    }
}

#[test]
fn a_cut_at_a_record_boundary_names_the_boundary() {
    let records = [record(1), record(2)];
    let full = export(&records);
    let mut w = writer();
    w.write(&records[0]).unwrap();
    let boundary = w.bytes_written() as usize;
    let err = read_all(&full[..boundary]).unwrap_err();
    assert_eq!(err.offset, boundary as u64);
    assert!(err.message.contains("without its trailer"), "{err}");
    // A whole record dropped from the middle: the trailer disagrees.
    let mut w = writer();
    let start = w.bytes_written() as usize;
    w.write(&records[0]).unwrap();
    let end = w.bytes_written() as usize;
    let mut dropped = full[..start].to_vec();
    dropped.extend_from_slice(&full[end..]);
    let err = read_all(&dropped).unwrap_err();
    assert!(err.message.contains("trailer"), "{err}");
}

#[test]
fn an_unknown_version_is_refused_before_anything_else() {
    let mut bytes = export(&[record(1)]);
    bytes[8..10].copy_from_slice(&7u16.to_be_bytes());
    let err = Reader::new(&bytes[..]).err().expect("refused");
    assert_eq!(err.offset, 8);
    assert!(
        err.message.contains("unknown export format version 7"),
        "{err}"
    );
    let err = Reader::new(&b"{\"json\": true}"[..])
        .err()
        .expect("refused");
    assert!(err.message.contains("not a powernode export"), "{err}");
}

#[test]
fn extra_bytes_after_the_trailer_are_refused() {
    let mut bytes = export(&[record(1)]);
    let end = bytes.len() as u64;
    bytes.push(0);
    let err = read_all(&bytes).unwrap_err();
    assert_eq!(err.offset, end);
}

#[test]
fn out_of_order_records_are_not_written() {
    let mut w = Writer::new(Vec::new()).unwrap();
    w.write(&record(2)).unwrap();
    assert!(w.write(&record(2)).is_err());
    assert!(w.write(&record(1)).is_err());
}

#[test]
fn errors_name_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pnx");
    let bytes = export(&[record(1), record(2)]);
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = verify(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: at byte offset ", path.display())),
        "{text}"
    );
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(verify(&path).unwrap().records, 2);
}

/// The in-place reading of the layout the writer uses gives what the
/// general parser gives, for small and large fields and times before 1970;
/// another field order still parses (through the general parser).
#[test]
fn records_read_in_place_equal_the_general_parser() {
    let mut cases: Vec<Record> = [0u64, 1, 23, 24, 255, 256, 70_000, u64::MAX]
        .iter()
        .map(|&seq| Record {
            bytes: Bytes::from(vec![7u8; (seq % 70_001) as usize]),
            ..record(seq % 1000)
        })
        .collect();
    cases.push(Record {
        seq: 5,
        stored_at: Utc.timestamp_nanos(-1_234_567),
        ..record(5)
    });
    cases.push(Record {
        seq: u64::MAX,
        ..record(3)
    });
    for r in cases {
        let body = format::record_body(&r).unwrap();
        let len = body.len();
        let frame = Bytes::from(body);
        let fast = format::parse_record_in(&frame, 0..len).unwrap();
        let slow = format::parse_record(&frame).unwrap();
        assert_eq!(fast, slow);
        assert_eq!(fast, r);
        // Inside a larger buffer (as in a frame with its head and crc).
        let mut padded = vec![9u8; 5];
        padded.extend_from_slice(&frame);
        padded.extend_from_slice(&[1, 2, 3, 4]);
        let padded = Bytes::from(padded);
        assert_eq!(format::parse_record_in(&padded, 5..5 + len).unwrap(), r);
    }
    // Fields in another order: not the writer's layout, still a record.
    let r = record(9);
    let mut reordered = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            ("bytes".into(), ciborium::Value::Bytes(r.bytes.to_vec())),
            (
                "stored_at".into(),
                r.stored_at.timestamp_nanos_opt().unwrap().into(),
            ),
            ("subject".into(), r.subject.clone().into()),
            ("seq".into(), r.seq.into()),
        ]),
        &mut reordered,
    )
    .unwrap();
    let len = reordered.len();
    assert_eq!(
        format::parse_record_in(&Bytes::from(reordered), 0..len).unwrap(),
        r
    );
    // A body cut short is an error, not a panic.
    let body = format::record_body(&r).unwrap();
    let cut = Bytes::from(body[..body.len() - 3].to_vec());
    assert!(format::parse_record_in(&cut, 0..cut.len()).is_err());
}
