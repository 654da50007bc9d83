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
