//! Virtual IPs through the runtime drivers: the k3s driver's `ip -6 addr`
//! commands (against a temp root and a recording runner), and the
//! simulated driver's in-memory set.

use powernode_agent::driver::k3s::{K3sRuntime, DEFAULT_VERSION, DEFAULT_VIP_INTERFACE};
use powernode_agent::driver::runner::{CommandOutput, RecordedCommand, RecordingRunner};
use powernode_agent::driver::simulated::SimulatedRuntime;
use powernode_agent::driver::{Runtime, RuntimeError};
use std::path::Path;
use std::sync::{Arc, Mutex};

type Calls = Arc<Mutex<Vec<RecordedCommand>>>;

fn k3s(root: &Path, runner: RecordingRunner) -> (K3sRuntime, Calls) {
    let calls = runner.calls();
    let rt = K3sRuntime::new(
        root.to_path_buf(),
        Box::new(runner),
        DEFAULT_VERSION.to_owned(),
        "node-a".to_owned(),
    );
    (rt, calls)
}

fn lines(calls: &Calls) -> Vec<String> {
    calls.lock().unwrap().iter().map(|c| c.line()).collect()
}

/// `ip` failing like the kernel does, with exit status 2.
fn ip_fails_with(stderr: &'static str) -> impl FnMut(&RecordedCommand, &Path) -> CommandOutput {
    move |call, _| {
        if call.program == "ip" && call.args.get(2).map(String::as_str) == Some("del") {
            CommandOutput {
                status: 2,
                stdout: String::new(),
                stderr: format!("RTNETLINK answers: {stderr}\n"),
            }
        } else {
            CommandOutput::default()
        }
    }
}

#[test]
fn k3s_driver_holds_and_releases_a_vip_on_the_wireguard_interface() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = k3s(dir.path(), RecordingRunner::new(dir.path()));
    assert_eq!(rt.vip_interface(), DEFAULT_VIP_INTERFACE);
    assert_eq!(DEFAULT_VIP_INTERFACE, "wg0");

    rt.hold_vip("fd00:abcd:1::100", 3).unwrap();
    // A newer generation is the same idempotent `replace`.
    rt.hold_vip("fd00:abcd:1::100", 4).unwrap();
    rt.release_vip("fd00:abcd:1::100").unwrap();
    assert_eq!(
        lines(&calls),
        [
            "ip -6 addr replace fd00:abcd:1::100/128 dev wg0",
            "ip -6 addr replace fd00:abcd:1::100/128 dev wg0",
            "ip -6 addr del fd00:abcd:1::100/128 dev wg0",
        ]
    );
}

#[test]
fn k3s_driver_uses_the_configured_interface_and_a_canonical_address() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, calls) = k3s(dir.path(), RecordingRunner::new(dir.path()));
    let mut rt = rt.with_vip_interface("wg-sdwan-prod");
    rt.hold_vip("[FD00:ABCD:0001:0000::100]", 1).unwrap();
    assert_eq!(
        lines(&calls),
        ["ip -6 addr replace fd00:abcd:1::100/128 dev wg-sdwan-prod"]
    );
}

#[test]
fn releasing_an_address_that_is_not_there_is_not_an_error() {
    for stderr in [
        "Cannot assign requested address",
        "Cannot find device \"wg0\"",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let runner = RecordingRunner::new(dir.path()).on_run(ip_fails_with(stderr));
        let (mut rt, calls) = k3s(dir.path(), runner);
        rt.release_vip("fd00::100").unwrap();
        assert_eq!(lines(&calls), ["ip -6 addr del fd00::100/128 dev wg0"]);
    }
}

#[test]
fn any_other_release_failure_is_an_error_naming_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let runner = RecordingRunner::new(dir.path()).on_run(ip_fails_with("Operation not permitted"));
    let (mut rt, _calls) = k3s(dir.path(), runner);
    let err = rt.release_vip("fd00::100").unwrap_err();
    match &err {
        RuntimeError::Command { command, detail } => {
            assert_eq!(command, "ip -6 addr del fd00::100/128 dev wg0");
            assert!(detail.contains("Operation not permitted"), "{detail}");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
}

#[test]
fn bad_addresses_and_interfaces_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = k3s(dir.path(), RecordingRunner::new(dir.path()));
    for bad in ["10.0.0.1", "", "fd00::1 dev lo", "not-an-ip"] {
        let err = rt.hold_vip(bad, 1).unwrap_err();
        assert!(err.to_string().contains("not an IPv6 address"), "{err}");
        assert!(rt.release_vip(bad).is_err(), "{bad:?}");
    }
    for bad in ["", "-wg0", "wg0 up", "an-interface-name-too-long"] {
        let (rt2, calls2) = k3s(dir.path(), RecordingRunner::new(dir.path()));
        let mut rt2 = rt2.with_vip_interface(bad);
        let err = rt2.hold_vip("fd00::1", 1).unwrap_err();
        assert!(err.to_string().contains("network interface"), "{err}");
        assert!(lines(&calls2).is_empty(), "{bad:?}");
    }
    assert!(lines(&calls).is_empty());
}

#[test]
fn simulated_driver_keeps_one_generation_per_address_and_forgets_on_restart() {
    let mut rt = SimulatedRuntime::new("node-a".into(), "v1.30.5+k3s1".into());
    let held = rt.held_addresses();
    rt.hold_vip("fd00::100", 1).unwrap();
    rt.hold_vip("fd00::200", 5).unwrap();
    rt.hold_vip("fd00::100", 2).unwrap();
    assert_eq!(held.generation("fd00::100"), Some(2));
    assert_eq!(held.snapshot().len(), 2);

    rt.release_vip("fd00::100").unwrap();
    rt.release_vip("fd00::300").unwrap(); // never held: fine
    assert_eq!(held.generation("fd00::100"), None);
    assert_eq!(
        held.snapshot().into_iter().collect::<Vec<_>>(),
        [("fd00::200".to_string(), 5)]
    );
    assert!(rt.hold_vip(" ", 1).is_err());

    let fresh = SimulatedRuntime::new("node-a".into(), "v1.30.5+k3s1".into());
    assert!(fresh.held_addresses().snapshot().is_empty());
}
