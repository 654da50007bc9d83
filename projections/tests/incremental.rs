//! Incremental snapshots: the changes taken after each step, written over
//! the stored entries (removals included), always restore the state
//! exactly; a change costs what changed, not what the fleet holds.

mod common;

use common::*;
use powernode_projections::{FleetState, Projection, SnapshotError};
use std::collections::BTreeMap;

/// Two accounts' lifecycles interleaved, with a decommission (removals)
/// and an approval.
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

/// A store of entries, as the checkpoint store keeps them.
#[derive(Default)]
struct Entries(BTreeMap<Vec<u8>, Vec<u8>>);

impl Entries {
    /// Writes `state`'s changes over the entries; how many it wrote.
    fn save(&mut self, state: &mut FleetState) -> usize {
        let changes = state.take_changes()().unwrap();
        let n = changes.len();
        for (k, v) in changes {
            match v {
                Some(v) => self.0.insert(k, v),
                None => self.0.remove(&k),
            };
        }
        n
    }

    fn restore(&self) -> Result<FleetState, SnapshotError> {
        FleetState::restore_entries(self.0.clone().into_iter().collect())
    }
}

#[test]
fn changes_saved_after_every_event_restore_the_state_exactly() {
    // given a fresh state whose changes are saved after every event
    let s = mixed_stream();
    let mut state = FleetState::default();
    let mut store = Entries::default();
    for (seq, env) in &s.events {
        state.apply(*seq, env);
        store.save(&mut state);

        // then the entries restore this state, byte for byte
        let restored = store.restore().unwrap();
        assert_eq!(restored, state, "after seq {seq}");
        assert_eq!(restored.snapshot().unwrap(), state.snapshot().unwrap());
    }
    assert_eq!(state, s.fold());
}

#[test]
fn changes_saved_now_and_then_restore_exactly_and_resume_like_a_full_replay() {
    let s = mixed_stream();
    let all = s.fold();
    for every in [2, 5, 17] {
        // given changes saved every `every` events, the state dropped and
        // restored from the entries at each save
        let mut state = FleetState::default();
        let mut store = Entries::default();
        for (i, (seq, env)) in s.events.iter().enumerate() {
            state.apply(*seq, env);
            if i % every == every - 1 {
                store.save(&mut state);
                state = store.restore().unwrap();
            }
        }
        store.save(&mut state);

        // then the last restore equals folding everything at once
        assert_eq!(store.restore().unwrap(), all, "saving every {every}");
    }
}

#[test]
fn a_decommission_removes_the_entries_of_the_rows_it_drops() {
    // given a cluster with worker rows, saved
    let mut s = Stream::new();
    let ids = Ids::new("gamma");
    setup(&mut s, "gamma", &ids);
    bootstrap(&mut s, "gamma", &ids);
    worker_join(&mut s, "gamma", &ids);
    let mut state = s.fold();
    let mut store = Entries::default();
    for (k, v) in state.all_entries().unwrap() {
        store.0.insert(k, v);
    }
    let rows = |e: &Entries| {
        e.0.keys()
            .filter(|k| k.windows(10).any(|w| w == b"k8s_nodes\0"))
            .count()
    };
    assert!(rows(&store) > 0, "the cluster has node rows stored");

    // when it is decommissioned and the changes are saved
    let mut more = Stream::new();
    decommission(&mut more, "gamma", &ids);
    let last = s.events.last().unwrap().0;
    for (i, (_, env)) in more.events.iter().enumerate() {
        state.apply(last + 1 + i as u64, env);
    }
    store.save(&mut state);

    // then the rows' entry is gone and the rest restores exactly
    assert_eq!(rows(&store), 0);
    assert_eq!(store.restore().unwrap(), state);
}

#[test]
fn a_change_writes_what_changed_not_the_whole_fleet() {
    // given a fleet of many clusters, saved
    let mut s = Stream::new();
    for c in 0..40 {
        let account = format!("acct{c}");
        let ids = Ids::new(&format!("c{c}"));
        setup(&mut s, &account, &ids);
        bootstrap(&mut s, &account, &ids);
        worker_join(&mut s, &account, &ids);
    }
    let mut state = s.fold();
    let all = state.all_entries().unwrap().len();
    assert!(all > 400, "only {all} entries");
    assert_eq!(state.take_changes()().unwrap().len(), 1, "only the head");

    // when one more cluster joins
    let mut more = Stream::new();
    let ids = Ids::new("late");
    setup(&mut more, "late", &ids);
    bootstrap(&mut more, "late", &ids);
    let last = s.events.last().unwrap().0;
    for (i, (_, env)) in more.events.iter().enumerate() {
        state.apply(last + 1 + i as u64, env);
    }

    // then its changes are its own entries, a few dozen at most
    let changed = state.take_changes()().unwrap();
    assert!(changed.len() < 40, "{} of {all} entries", changed.len());
}

#[test]
fn bad_entries_are_named_errors() {
    let state = mixed_stream().fold();
    let mut state = state;
    let good: Vec<_> = state.all_entries().unwrap();

    // no head entry: not a fleet
    let headless: Vec<_> = good.iter().filter(|(k, _)| k != b"m").cloned().collect();
    assert!(matches!(
        FleetState::restore_entries(headless),
        Err(SnapshotError::BadHeader { .. })
    ));
    // an unknown key
    let mut unknown = good.clone();
    unknown.push((b"zz".to_vec(), vec![0]));
    assert!(matches!(
        FleetState::restore_entries(unknown),
        Err(SnapshotError::Corrupt { .. })
    ));
    // a value cut short
    let mut cut = good.clone();
    let last = cut.last_mut().unwrap();
    last.1.truncate(last.1.len() / 2);
    assert!(matches!(
        FleetState::restore_entries(cut),
        Err(SnapshotError::Corrupt { .. })
    ));
    // the good ones restore
    assert_eq!(FleetState::restore_entries(good).unwrap(), state);
}
