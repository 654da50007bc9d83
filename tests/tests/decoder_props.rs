//! Issue 13: arbitrary bytes fed to every decoder that reads input from
//! outside the process — the envelope decoder (`Envelope::decode`, the
//! cbor4ii fast path of `events/src/decode.rs`, and the ciborium value path
//! `RawEnvelope::from_bytes`), the export reader (`archive::Reader`), and
//! the intake's request decoders (serde_json of `EnrollRequest`,
//! `Heartbeat`, `Submission`, then the submission's hex event) — must never
//! panic and never allocate without bound.
//!
//! "Without bound" is measured: this test binary's global allocator records
//! the largest single allocation asked for, and every check requires it to
//! stay under [`ALLOCATION_BOUND`] (a length prefix claiming 4 GiB must be
//! refused, not allocated). Inputs are random bytes, valid inputs mutated
//! (flipped, cut, spliced bytes), and crafted ones: CBOR heads claiming
//! 2^32 and 2^64 items or bytes at every level, nesting deeper than any
//! stack, export frames whose length field says 4 GiB, and JSON nested
//! past the parser's limit.

use powernode_archive::{Reader, Writer};
use powernode_events::examples::{example_envelope, example_payloads};
use powernode_events::{Envelope, RawEnvelope};
use powernode_log::Record;
use powernode_protocol::{EnrollRequest, Heartbeat, Submission};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation a decoder may ask for while reading one
/// hostile input. The export reader's own frame cap is 4 MiB; nothing else
/// needs more than a small multiple of its input.
const ALLOCATION_BOUND: usize = 16 * 1024 * 1024;

/// Records the largest allocation asked for since the last [`reset`].
struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// Runs `decode` on `input` on a thread of its own (so a stack overflow or
/// a panic is caught and reported, not the end of the run), and fails when
/// it panics or asks for more than [`ALLOCATION_BOUND`] at once.
fn bounded(what: &str, input: &[u8], decode: Decoder) -> Result<(), String> {
    let owned = input.to_vec();
    LARGEST.store(0, Ordering::Relaxed);
    let result = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || decode(&owned))
        .map_err(|e| e.to_string())?
        .join();
    let largest = LARGEST.swap(0, Ordering::Relaxed);
    let shown = &input[..input.len().min(64)];
    if let Err(panic) = result {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Err(format!(
            "{what} panicked ({msg}) on {} bytes starting {shown:02x?}",
            input.len()
        ));
    }
    if largest > ALLOCATION_BOUND {
        return Err(format!(
            "{what} asked for {largest} bytes at once on {} bytes of input starting {shown:02x?}",
            input.len()
        ));
    }
    Ok(())
}

fn envelope_fast(b: &[u8]) {
    let _ = Envelope::decode(b);
}

fn envelope_value_path(b: &[u8]) {
    if let Ok(raw) = RawEnvelope::from_bytes(b) {
        let _ = raw.into_envelope();
    }
}

fn export_reader(b: &[u8]) {
    if let Ok(reader) = Reader::new(std::io::Cursor::new(b)) {
        for item in reader {
            if item.is_err() {
                break;
            }
        }
    }
}

fn intake_requests(b: &[u8]) {
    let _ = serde_json::from_slice::<EnrollRequest>(b);
    let _ = serde_json::from_slice::<Heartbeat>(b);
    if let Ok(s) = serde_json::from_slice::<Submission>(b) {
        if let Ok(bytes) = hex::decode(&s.event) {
            let _ = Envelope::decode(&bytes);
        }
    }
}

/// One decoder under test.
type Decoder = fn(&[u8]);

/// Every decoder, by name.
const DECODERS: &[(&str, Decoder)] = &[
    ("Envelope::decode (cbor4ii)", envelope_fast),
    ("RawEnvelope::from_bytes (ciborium)", envelope_value_path),
    ("archive::Reader", export_reader),
    ("intake request decoders", intake_requests),
];

/// Every kind's example envelope, canonically encoded.
fn envelopes() -> Vec<Vec<u8>> {
    example_payloads()
        .into_iter()
        .map(|p| example_envelope(p).encode().expect("examples encode"))
        .collect()
}

/// A valid export of the example envelopes.
fn export() -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).expect("a writer");
    for (i, bytes) in envelopes().into_iter().enumerate() {
        let env = Envelope::decode(&bytes).expect("examples decode");
        let subject =
            powernode_events::subject::event_subject(&env.account_id, &env.aggregate, env.kind())
                .expect("a subject");
        w.write(&Record {
            seq: i as u64 + 1,
            subject,
            stored_at: env.occurred_at,
            bytes: bytes.into(),
        })
        .expect("write");
    }
    w.finish().expect("finish")
}

/// Valid intake requests as JSON.
fn requests() -> Vec<Vec<u8>> {
    let event = hex::encode(&envelopes()[0]);
    vec![
        format!(
            r#"{{"credential":"pn_enroll_x","public_key":"{}"}}"#,
            "ab".repeat(32)
        )
        .into_bytes(),
        br#"{"instance_id":"inst-1","sent_at_ms":1700000000000,"signature":"00"}"#.to_vec(),
        format!(r#"{{"event":"{event}"}}"#).into_bytes(),
    ]
}

/// A valid input mutated: bytes flipped, cut, duplicated or spliced in.
fn mutated(seeds: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (
        proptest::sample::select(seeds),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0..5u8), 1..8),
    )
        .prop_map(|(mut b, edits)| {
            for (at, byte, op) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let at = at % b.len();
                match op {
                    0 => b[at] ^= byte | 1,
                    1 => b.truncate(at),
                    2 => b.insert(at, byte),
                    3 => {
                        // A CBOR head claiming a huge length, spliced in.
                        let head = [0x5b, 0, 0, 0, 1, 0, 0, 0, 0];
                        b.splice(at..at, head);
                    }
                    _ => {
                        let end = (at + 16).min(b.len());
                        let dup = b[at..end].to_vec();
                        b.splice(at..at, dup);
                    }
                }
            }
            b
        })
        .boxed()
}

/// CBOR heads that claim more than the input can hold, alone and nested in
/// an envelope-shaped map.
fn crafted_cbor() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // major types 2 (bytes), 3 (text), 4 (array), 5 (map), with 4- and 8-byte lengths
    for major in [2u8, 3, 4, 5] {
        let m = major << 5;
        out.push(vec![m | 26, 0xff, 0xff, 0xff, 0xff]);
        out.push(vec![m | 26, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01]);
        out.push(vec![m | 27, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        out.push(vec![
            m | 27,
            0x00,
            0x00,
            0x00,
            0x01,
            0x00,
            0x00,
            0x00,
            0x00,
            0x61,
        ]);
        // inside an envelope map, as the value of each field
        for field in [
            "id",
            "kind",
            "payload",
            "actor",
            "signature",
            "aggregate",
            "zz",
        ] {
            let mut b = vec![0xa1, 0x60 | field.len() as u8];
            b.extend_from_slice(field.as_bytes());
            b.extend_from_slice(&[m | 26, 0xff, 0xff, 0xff, 0xff]);
            out.push(b);
        }
        // a map claiming 2^32 entries whose first key is `kind`
        let mut b = vec![0xba, 0xff, 0xff, 0xff, 0xff, 0x64];
        b.extend_from_slice(b"kind");
        out.push(b);
    }
    // a payload before its kind (the value path) holding a huge claim
    let mut b = vec![0xa2, 0x67];
    b.extend_from_slice(b"payload");
    b.extend_from_slice(&[0x9a, 0xff, 0xff, 0xff, 0xff]);
    out.push(b);
    // a real envelope whose payload is replaced by a huge claim
    for env in envelopes().into_iter().take(5) {
        if let Some(at) = env.windows(7).position(|w| w == b"payload") {
            let mut b = env[..at + 7].to_vec();
            b.extend_from_slice(&[0xbb, 0, 0, 0, 1, 0, 0, 0, 0]);
            out.push(b);
            let mut b = env[..at + 7].to_vec();
            b.extend_from_slice(&[
                0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
            ]);
            out.push(b);
        }
    }
    // nesting far deeper than any stack: arrays, maps, tags, indefinite arrays
    for (open, n) in [
        (vec![0x81u8], 200_000usize),
        (vec![0xa1, 0x60], 100_000),
        (vec![0xc6], 200_000),
        (vec![0x9f], 200_000),
    ] {
        let mut b = Vec::with_capacity(open.len() * n + 1);
        for _ in 0..n {
            b.extend_from_slice(&open);
        }
        b.push(0x00);
        out.push(b.clone());
        // the same, as a payload met before its kind (the value path)
        let mut p = vec![0xa1, 0x67];
        p.extend_from_slice(b"payload");
        p.extend_from_slice(&b);
        out.push(p);
        // and as an unknown field's value, skipped without being kept
        let mut p = vec![0xa1, 0x62];
        p.extend_from_slice(b"zz");
        p.extend_from_slice(&b);
        out.push(p);
        // the same, as an envelope's payload after its kind and version
        let env = &envelopes()[0];
        if let Some(at) = env.windows(7).position(|w| w == b"payload") {
            let mut p = env[..at + 7].to_vec();
            p.extend_from_slice(&b);
            out.push(p);
        }
    }
    out
}

/// crc32 (IEEE), as the export format uses.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for part in parts {
        for &byte in *part {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

/// A frame with a correct crc (so the reader gets past it to the body).
fn frame(tag: u8, len: u32, body: &[u8]) -> Vec<u8> {
    let head = [&[tag][..], &len.to_be_bytes()].concat();
    let crc = crc32(&[&head, body]);
    [head.as_slice(), body, &crc.to_be_bytes()].concat()
}

/// Exports whose length fields claim 4 GiB, whose frames are cut, and whose
/// record bodies (with correct checksums) hold hostile CBOR.
fn crafted_exports() -> Vec<Vec<u8>> {
    let good = export();
    let magic = &good[..8];
    // the good header: magic | version | len | body | crc
    let header_len = u32::from_be_bytes([good[10], good[11], good[12], good[13]]) as usize;
    let header = good[..14 + header_len + 4].to_vec();
    let mut out = Vec::new();
    for len in [u32::MAX, 0x8000_0000, 64 * 1024 + 1] {
        let head = [&1u16.to_be_bytes()[..], &len.to_be_bytes()].concat();
        out.push([magic, head.as_slice(), &[0u8; 16]].concat());
    }
    for tag in [b'R', b'T'] {
        for len in [u32::MAX, 0x8000_0000, 4 * 1024 * 1024 + 1, 4 * 1024 * 1024] {
            out.push([header.as_slice(), &[tag], &len.to_be_bytes(), &[0u8; 8]].concat());
        }
    }
    let mut bodies: Vec<Vec<u8>> = crafted_cbor()
        .into_iter()
        .filter(|b| b.len() < 64 * 1024)
        .collect();
    // record maps whose "bytes" or "subject" claim 4 GiB
    for field in ["bytes", "subject", "seq", "stored_at"] {
        let mut b = vec![0xa4, 0x60 | field.len() as u8];
        b.extend_from_slice(field.as_bytes());
        b.extend_from_slice(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0]);
        bodies.push(b);
    }
    for body in bodies {
        for tag in [b'R', b'T'] {
            let f = frame(tag, body.len() as u32, &body);
            out.push([header.as_slice(), &f].concat());
        }
    }
    out
}

/// JSON that nests past serde_json's limit, or is huge in one dimension.
fn crafted_json() -> Vec<Vec<u8>> {
    let mut out = vec![
        "[".repeat(100_000).into_bytes(),
        "{\"a\":".repeat(100_000).into_bytes(),
        format!("{{\"event\":{}}}", "[".repeat(50_000)).into_bytes(),
        format!("{{\"credential\":\"{}\"}}", "a".repeat(900_000)).into_bytes(),
        format!("{{\"event\":\"{}\"}}", "0".repeat(900_001)).into_bytes(),
        format!("{{\"event\":\"{}\"}}", "zz".repeat(1000)).into_bytes(),
        br#"{"instance_id":"inst-1","sent_at_ms":1e999}"#.to_vec(),
        br#"{"instance_id":"inst-1","sent_at_ms":-99999999999999999999999}"#.to_vec(),
    ];
    // a submission whose hex event holds each crafted CBOR input
    for cbor in crafted_cbor().into_iter().filter(|b| b.len() < 100_000) {
        out.push(format!("{{\"event\":\"{}\"}}", hex::encode(cbor)).into_bytes());
    }
    out
}

/// Runs `CASES` generated inputs through every decoder; the count tried.
fn run(name: &str, strategy: BoxedStrategy<Vec<u8>>, cases: u32) -> usize {
    let tried = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 500,
        ..Config::default()
    });
    let result = runner.run(&strategy, |input| {
        tried.fetch_add(1, Ordering::Relaxed);
        for (what, decode) in DECODERS {
            bounded(what, &input, *decode).map_err(TestCaseError::fail)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let tried = tried.into_inner();
    println!(
        "{name}: {tried} generated inputs through {} decoders",
        DECODERS.len()
    );
    tried
}

/// The export with one frame's body mutated and its length and crc made
/// right again, so the reader gets past the checksum into the body.
fn reframed() -> BoxedStrategy<Vec<u8>> {
    let good = export();
    let header_len = u32::from_be_bytes([good[10], good[11], good[12], good[13]]) as usize;
    let header_end = 14 + header_len + 4;
    let mut frames = Vec::new();
    let mut at = header_end;
    while at + 5 <= good.len() {
        let len =
            u32::from_be_bytes([good[at + 1], good[at + 2], good[at + 3], good[at + 4]]) as usize;
        frames.push((good[at], good[at + 5..at + 5 + len].to_vec()));
        at += 5 + len + 4;
    }
    let header = good[..header_end].to_vec();
    let n = frames.len();
    (
        0..n,
        mutated(frames.iter().map(|(_, b)| b.clone()).collect()),
    )
        .prop_map(move |(i, body)| {
            let mut out = header.clone();
            for (j, (tag, b)) in frames.iter().enumerate() {
                let b = if j == i { &body } else { b };
                out.extend_from_slice(&frame(*tag, b.len() as u32, b));
            }
            out
        })
        .boxed()
}

#[test]
fn the_meter_catches_panics_and_large_allocations() {
    // The harness itself: a decoder that allocates 64 MiB, or panics, fails.
    let big = bounded("big", b"x", |_| {
        let v = vec![1u8; 64 * 1024 * 1024];
        std::hint::black_box(v);
    });
    assert!(big.is_err_and(|e| e.contains("asked for")));
    let panics = bounded("panics", b"x", |_| panic!("boom"));
    assert!(panics.is_err_and(|e| e.contains("boom")));
    assert!(bounded("fine", b"x", |b| {
        std::hint::black_box(b.to_vec());
    })
    .is_ok());
}

#[test]
fn the_valid_inputs_decode() {
    // The seeds are what they claim to be, so mutating them explores
    // the decoders' insides and not only their first byte.
    for bytes in envelopes() {
        Envelope::decode(&bytes).expect("an example envelope decodes");
    }
    let reader = Reader::new(std::io::Cursor::new(export())).expect("the export opens");
    assert_eq!(
        reader.inspect(|r| assert!(r.is_ok(), "{r:?}")).count(),
        envelopes().len()
    );
    for r in requests() {
        let v: serde_json::Value = serde_json::from_slice(&r).expect("JSON");
        assert!(v.is_object());
    }
    let submission: Submission =
        serde_json::from_slice(&requests()[2]).expect("a submission decodes");
    Envelope::decode(&hex::decode(submission.event).expect("hex")).expect("its event decodes");
}

#[test]
fn crafted_length_claims_and_deep_nesting_are_refused_without_allocating() {
    let mut n = 0;
    for input in crafted_cbor()
        .into_iter()
        .chain(crafted_exports())
        .chain(crafted_json())
    {
        for (what, decode) in DECODERS {
            if let Err(e) = bounded(what, &input, *decode) {
                panic!("{e}");
            }
        }
        n += 1;
    }
    println!("crafted inputs: {n} through {} decoders", DECODERS.len());
    assert!(n > 100);
}

#[test]
fn arbitrary_bytes_never_panic_or_allocate_without_bound() {
    let random = proptest::collection::vec(any::<u8>(), 0..4096).boxed();
    let n = run("random bytes", random, 2_000);
    assert!(n >= 1_000);
}

#[test]
fn mutated_envelopes_never_panic_or_allocate_without_bound() {
    let n = run("mutated envelopes", mutated(envelopes()), 2_000);
    assert!(n >= 1_000);
}

#[test]
fn mutated_exports_never_panic_or_allocate_without_bound() {
    let n = run("mutated exports", mutated(vec![export()]), 1_000);
    assert!(n >= 1_000);
}

#[test]
fn reframed_exports_never_panic_or_allocate_without_bound() {
    let n = run("re-checksummed mutated exports", reframed(), 1_500);
    assert!(n >= 1_000);
}

#[test]
fn mutated_intake_requests_never_panic_or_allocate_without_bound() {
    let n = run("mutated intake requests", mutated(requests()), 2_000);
    assert!(n >= 1_000);
}
