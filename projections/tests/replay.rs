//! Replay determinism: the same events always give byte-identical snapshots,
//! and a snapshot taken mid-stream continues exactly like a full replay.

mod common;

use common::*;
use powernode_projections::{FleetState, Projection, SnapshotError};

/// Two accounts' lifecycles, interleaved into one log.
fn mixed_stream() -> Stream {
    let mut s = Stream::new();
    let (a, b) = (Ids::new("alpha"), Ids::new("beta"));
    setup(&mut s, "alpha", &a);
    setup(&mut s, "beta", &b);
    bootstrap(&mut s, "beta", &b);
    bootstrap(&mut s, "alpha", &a);
    worker_join(&mut s, "alpha", &a);
    approval(&mut s, "beta", "appr-b");
    worker_join(&mut s, "beta", &b);
    decommission(&mut s, "alpha", &a);
    s
}

#[test]
fn replaying_the_same_events_twice_gives_byte_identical_snapshots() {
    // given one log, when it is folded into two fresh states
    let s = mixed_stream();
    let first = s.fold();
    let second = s.fold();

    // then the states and their snapshots are identical, and so is a re-snapshot
    assert_eq!(first, second);
    let bytes = first.snapshot().unwrap();
    assert_eq!(bytes, second.snapshot().unwrap());
    assert_eq!(bytes, first.snapshot().unwrap());
    let restored = FleetState::restore(&bytes).unwrap();
    assert_eq!(restored, first);
    assert_eq!(restored.snapshot().unwrap(), bytes);
}

#[test]
fn snapshot_restore_then_continue_equals_applying_everything_at_once() {
    let s = mixed_stream();
    let all = s.fold();
    for cut in [
        0,
        1,
        s.events.len() / 3,
        s.events.len() / 2,
        s.events.len() - 1,
        s.events.len(),
    ] {
        // given a state folded up to `cut`, snapshotted and restored
        let head = fold(&s.events[..cut]);
        let mut resumed = FleetState::restore(&head.snapshot().unwrap()).unwrap();

        // when the rest is applied
        for (seq, env) in &s.events[cut..] {
            resumed.apply(*seq, env);
        }

        // then it equals the one-go fold, byte for byte
        assert_eq!(resumed, all, "cut at {cut}");
        assert_eq!(
            resumed.snapshot().unwrap(),
            all.snapshot().unwrap(),
            "cut at {cut}"
        );
    }
}

#[test]
fn redelivered_events_are_not_applied_twice() {
    // given a fold of the whole log
    let s = mixed_stream();
    let once = s.fold();

    // when the log is delivered again from the start (an at-least-once redelivery)
    let mut twice = once.clone();
    for (seq, env) in &s.events {
        twice.apply(*seq, env);
    }

    // then nothing changed
    assert_eq!(twice, once);
    assert_eq!(twice.applied(), s.events.len() as u64);
}

#[test]
fn corrupted_snapshots_are_typed_errors() {
    let bytes = mixed_stream().fold().snapshot().unwrap();

    assert!(matches!(
        FleetState::restore(b""),
        Err(SnapshotError::BadHeader { .. })
    ));
    assert!(matches!(
        FleetState::restore(b"not a snapshot at all"),
        Err(SnapshotError::BadHeader { .. })
    ));

    let mut newer = bytes.clone();
    newer[5] = newer[5].wrapping_add(1);
    assert!(matches!(
        FleetState::restore(&newer),
        Err(SnapshotError::UnsupportedFormat { .. })
    ));

    for cut in [6, 7, bytes.len() / 2, bytes.len() - 1] {
        let err = FleetState::restore(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Corrupt { .. }),
            "cut {cut}: {err:?}"
        );
        assert!(err.to_string().contains("fleet"), "{err}");
    }

    // a body that is valid CBOR but not a fleet state
    let mut wrong_shape = bytes[..6].to_vec();
    ciborium::into_writer(&vec![1u32, 2, 3], &mut wrong_shape).unwrap();
    assert!(matches!(
        FleetState::restore(&wrong_shape),
        Err(SnapshotError::Corrupt { .. })
    ));

    // flipped bytes never panic: they are either still a valid state or a typed error
    for i in 6..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xff;
        let _ = FleetState::restore(&b);
    }
}
