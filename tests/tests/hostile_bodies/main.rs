//! Issue 13: a property test that throws malformed and hostile action
//! bodies at every action of the build (the names come from the code's
//! action table, `powernode_server::api::actions::ACTIONS`) and requires
//! each to be refused with a 4xx and an error code, never a 5xx or a 200,
//! and the log's last sequence to stay where it was.
//!
//! Every generated body is invalid by construction, so "refused, nothing
//! appended" is the honest expectation for each one: bodies that are not
//! JSON, not an object, repeat a key, hold a control character, carry an
//! unknown field, give a field the wrong type (negative, fractional or
//! overflowing numbers, nested junk), miss a required field, hold a string
//! over the argument limit, nest past the JSON depth limit, exceed the body
//! limit, or name another account's objects (well-typed otherwise, sent by
//! a non-admin token of this account: the ids do not exist for it).
//!
//! * `spec` — each action's arguments and their types;
//! * `cases` — the hostile bodies, as proptest strategies;
//! * `target` — the node under test and the check of one answer.
//!
//! Run: `cargo nextest run -p powernode-tests --test hostile_bodies
//! --no-capture` (prints how many bodies were tried: 1,500 on the embedded
//! log, 1,000 on JetStream).

use powernode_server::api::actions::{ACTIONS, MAX_ARGUMENT_TEXT};
use powernode_tests::api_support::Api;
use powernode_tests::http::{action, request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many bodies one run sends.
const CASES: u32 = 1_500;

mod cases;
mod spec;
mod target;

use cases::*;
use spec::*;
use target::*;

#[test]
fn hostile_bodies_are_refused_with_a_4xx_and_append_nothing() {
    hostile_bodies(false, CASES);
}

/// The same on a real nats-server (the harness's authenticated one).
#[test]
fn hostile_bodies_are_refused_on_jetstream_too() {
    hostile_bodies(true, 1_000);
}

fn hostile_bodies(jetstream: bool, cases: u32) {
    for name in ACTIONS {
        assert!(
            spec(name).is_some(),
            "{name} has no argument spec in this test: add one"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let target = rt.block_on(setup(jetstream)).expect("setup");
    let before = rt
        .block_on(target.api.log.last_seq())
        .expect("the log's last seq");
    let strategy = proptest::sample::select(ACTIONS.to_vec()).prop_flat_map(case);
    let tried = AtomicUsize::new(0);
    let seen: Mutex<BTreeMap<(&'static str, &'static str), usize>> = Mutex::default();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let result = runner.run(&strategy, |case| {
        tried.fetch_add(1, Ordering::Relaxed);
        *seen
            .lock()
            .unwrap()
            .entry((case.action, case.category))
            .or_default() += 1;
        rt.block_on(check(&target, &case, before))
            .map_err(TestCaseError::fail)
    });
    let tried = tried.into_inner();
    let seen = seen.into_inner().unwrap();
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    for ((a, c), n) in &seen {
        *by_category.entry(c).or_default() += n;
        *by_action.entry(a).or_default() += n;
    }
    println!(
        "hostile bodies tried on {}: {tried} (shrinking included) across {} actions; by category: {by_category:?}",
        if jetstream { "JetStream" } else { "the embedded log" },
        by_action.len()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(tried >= cases as usize, "only {tried} bodies were tried");
    for name in ACTIONS {
        assert!(
            by_action.get(name).is_some_and(|n| *n > 0),
            "{name} got no hostile body: {by_action:?}"
        );
    }
    let last = rt.block_on(target.api.log.last_seq()).expect("last seq");
    assert_eq!(last, before, "the log grew");
}
