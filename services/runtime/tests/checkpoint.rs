//! Checkpoint persistence in sled: round trip, reopen, and clear errors.

// The fold fixtures of the projections crate: a checkpoint holds a real
// fleet snapshot.
#[path = "../../../projections/tests/common/mod.rs"]
mod common;

use common::*;
use powernode_projections::{FleetState, Projection};
use powernode_runtime::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};

#[test]
fn save_load_round_trip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints");
    let state = full_lifecycle("acme").fold();
    let cp = Checkpoint {
        seq: state.last_seq(),
        snapshot: state.snapshot().unwrap(),
    };

    // given a saved checkpoint
    {
        let store = CheckpointStore::open(&path).unwrap();
        assert_eq!(store.load("provisioner").unwrap(), None);
        store.save("provisioner", &cp).unwrap();
        assert_eq!(store.load("provisioner").unwrap(), Some(cp.clone()));
    }

    // when the store is reopened
    let store = CheckpointStore::open(&path).unwrap();

    // then the checkpoint is there and restores the same state
    let loaded = store
        .load("provisioner")
        .unwrap()
        .expect("checkpoint survives reopen");
    assert_eq!(loaded, cp);
    assert_eq!(FleetState::restore(&loaded.snapshot).unwrap(), state);
    assert_eq!(store.load("api").unwrap(), None, "names are independent");
    assert_eq!(store.names().unwrap(), vec!["provisioner".to_string()]);
}

#[test]
fn save_replaces_and_remove_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    store
        .save(
            "api",
            &Checkpoint {
                seq: 1,
                snapshot: b"one".to_vec(),
            },
        )
        .unwrap();
    store
        .save(
            "api",
            &Checkpoint {
                seq: 2,
                snapshot: Vec::new(),
            },
        )
        .unwrap();
    assert_eq!(
        store.load("api").unwrap(),
        Some(Checkpoint {
            seq: 2,
            snapshot: Vec::new()
        })
    );
    store.remove("api").unwrap();
    assert_eq!(store.load("api").unwrap(), None);
}

#[test]
fn a_locked_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let _first = CheckpointStore::open(dir.path()).unwrap();
    let err = CheckpointStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, CheckpointError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn an_unusable_path_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("checkpoints");
    let err = CheckpointStore::open(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_truncated_stored_value_is_a_corrupt_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("checkpoints")
            .unwrap()
            .insert("api", &[1u8, 2, 3][..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = CheckpointStore::open(dir.path()).unwrap();
    let err = store.load("api").unwrap_err();
    assert!(
        matches!(err, CheckpointError::Corrupt { ref name, .. } if name == "api"),
        "{err:?}"
    );
}

#[test]
fn store_and_errors_can_cross_threads_and_into_anyhow() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CheckpointStore>();
    assert_send_sync::<CheckpointError>();
    assert_send_sync::<FleetState>();
}

#[test]
fn incremental_changes_write_over_entries_and_removals_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    let put = |k: &str, v: &str| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()));
    let gone = |k: &str| (k.as_bytes().to_vec(), None);

    // given entries saved at 3, then changes (one new, one changed, one gone) at 7
    store
        .save_changes(
            "api",
            3,
            vec![put("a", "1"), put("b", "2"), put("c", "3")],
            false,
        )
        .unwrap();
    let written = store
        .save_changes(
            "api",
            7,
            vec![put("b", "20"), gone("c"), put("d", "4")],
            false,
        )
        .unwrap();
    assert_eq!((written.puts, written.removes), (2, 1));

    // then the store holds the merge at 7, also after a reopen
    drop(store);
    let store = CheckpointStore::open(dir.path()).unwrap();
    let cp = store.load_entries("api").unwrap().expect("saved");
    assert_eq!(cp.seq, 7);
    let entries: Vec<(String, String)> = cp
        .entries
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(
        entries,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "20".into()),
            ("d".into(), "4".into())
        ]
    );
    assert_eq!(store.saved_seq("api").unwrap(), Some(7));
    assert_eq!(store.load_entries("provisioner").unwrap(), None);
    assert_eq!(store.names().unwrap(), vec!["api".to_string()]);
}

#[test]
fn a_replacing_save_drops_old_entries_and_the_whole_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    store
        .save(
            "api",
            &Checkpoint {
                seq: 2,
                snapshot: b"whole".to_vec(),
            },
        )
        .unwrap();
    store
        .save_changes(
            "api",
            2,
            vec![(b"old".to_vec(), Some(b"x".to_vec()))],
            false,
        )
        .unwrap();
    // another consumer's entries are not touched
    store
        .save_changes("apix", 9, vec![(b"k".to_vec(), Some(b"y".to_vec()))], false)
        .unwrap();

    store
        .save_changes("api", 5, vec![(b"new".to_vec(), Some(b"z".to_vec()))], true)
        .unwrap();

    let cp = store.load_entries("api").unwrap().unwrap();
    assert_eq!(cp.seq, 5);
    assert_eq!(cp.entries, vec![(b"new".to_vec(), b"z".to_vec())]);
    assert_eq!(store.load("api").unwrap(), None, "the whole one is gone");
    assert_eq!(store.load_entries("apix").unwrap().unwrap().seq, 9);

    store.remove("api").unwrap();
    assert_eq!(store.load_entries("api").unwrap(), None);
    assert_eq!(store.saved_seq("api").unwrap(), None);
    assert_eq!(store.names().unwrap(), vec!["apix".to_string()]);
}

#[test]
fn an_empty_entry_key_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    let err = store
        .save_changes(
            "api",
            4,
            vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (vec![], Some(b"2".to_vec())),
            ],
            false,
        )
        .unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    assert_eq!(store.load_entries("api").unwrap(), None);
}

#[test]
fn a_fleet_saved_as_entries_restores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path()).unwrap();
    let mut state = full_lifecycle("acme").fold();
    let all = state
        .all_entries()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, Some(v)))
        .collect();
    store
        .save_changes("api", state.last_seq(), all, true)
        .unwrap();
    let cp = store.load_entries("api").unwrap().unwrap();
    assert_eq!(cp.seq, state.last_seq());
    assert_eq!(FleetState::restore_entries(cp.entries).unwrap(), state);
    assert!(store.entry_bytes("api").unwrap() > 0);
}
