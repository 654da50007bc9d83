//! The k3s driver's day-2 operations against a temp root and a recording
//! runner: a pinned install's installer environment, the commands of each
//! upgrade phase (server and worker kubeconfigs), readiness polling, the
//! rollback's reinstall, and join-token rotation (the rotate command on one
//! server, the stored token rewritten in place everywhere) without a token
//! in any error.

use powernode_agent::driver::k3s::upgrade::WORKER_KUBECONFIG;
use powernode_agent::driver::k3s::{
    K3sRuntime, AGENT_DROP_IN, CONFIG_FILE, DEFAULT_VERSION, K3S_BIN, SERVER_DROP_IN,
};
use powernode_agent::driver::runner::{CommandOutput, RecordedCommand, RecordingRunner};
use powernode_agent::driver::{AgentPlan, ModuleVersionPin, Role, Runtime, ServerPlan};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Calls = Arc<Mutex<Vec<RecordedCommand>>>;

const OLD_TOKEN: &str = "old-token-0123456789abcdef";
const NEW_TOKEN: &str = "new-token-fedcba9876543210";

fn under(root: &Path, node_path: &str) -> std::path::PathBuf {
    root.join(node_path.trim_start_matches('/'))
}

fn pin(id: &str, k3s: &str) -> ModuleVersionPin {
    ModuleVersionPin {
        module_version_id: id.into(),
        version: id.trim_start_matches("v-k3s-").into(),
        k3s_version: k3s.into(),
    }
}

/// The installer leaves the binary; `kubectl get node` answers `status`;
/// a command line containing `fail` in `failing` exits 1.
fn runtime(
    root: &Path,
    ready: Arc<Mutex<&'static str>>,
    failing: Option<&'static str>,
) -> (K3sRuntime, Calls) {
    let runner = RecordingRunner::new(root).on_run(move |call, root| {
        let line = call.line();
        if failing.is_some_and(|f| line.contains(f)) {
            return CommandOutput {
                status: 1,
                stdout: String::new(),
                stderr: format!("error: {line} refused"),
            };
        }
        if line.starts_with("sh -c curl -sfL https://get.k3s.io") {
            let bin = under(root, K3S_BIN);
            std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
            std::fs::write(bin, "#!/bin/sh\n").unwrap();
        }
        let stdout = if line.contains(" get node ") {
            format!("node-a {} <none> 5m v1.31.0+k3s1\n", ready.lock().unwrap())
        } else {
            String::new()
        };
        CommandOutput {
            status: 0,
            stdout,
            stderr: String::new(),
        }
    });
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

#[test]
fn a_pinned_install_runs_the_installer_with_that_release() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), None);
    rt.install_version(Role::Server, Some(&pin("v-k3s-1.31.0", "v1.31.0+k3s1")))
        .unwrap();
    let installer = calls.lock().unwrap()[0].clone();
    assert_eq!(
        installer.env_value("INSTALL_K3S_VERSION"),
        Some("v1.31.0+k3s1")
    );
    assert_eq!(installer.env_value("INSTALL_K3S_SKIP_START"), Some("true"));
    assert_eq!(rt.version(), "v1.31.0+k3s1");
    // Unpinned: the driver's default release.
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), None);
    rt.install_version(Role::Agent, None).unwrap();
    assert_eq!(
        calls.lock().unwrap()[0].env_value("INSTALL_K3S_VERSION"),
        Some(DEFAULT_VERSION)
    );
}

#[test]
fn upgrade_phases_on_a_server_use_its_admin_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), None);
    let to = pin("v-k3s-1.31.0", "v1.31.0+k3s1");
    rt.cordon(Role::Server).unwrap();
    rt.drain(Role::Server, Duration::from_secs(120)).unwrap();
    rt.upgrade(Role::Server, Some(&to)).unwrap();
    rt.wait_ready(Role::Server, Duration::from_secs(5)).unwrap();
    rt.uncordon(Role::Server).unwrap();
    let got = lines(&calls);
    assert_eq!(got[0], format!("{K3S_BIN} kubectl cordon node-a"));
    assert_eq!(
        got[1],
        format!(
            "{K3S_BIN} kubectl drain node-a --ignore-daemonsets --delete-emptydir-data --timeout=120s"
        )
    );
    assert!(got[2].starts_with("sh -c curl -sfL https://get.k3s.io | sh -s - server"));
    assert_eq!(
        calls.lock().unwrap()[2].env_value("INSTALL_K3S_VERSION"),
        Some("v1.31.0+k3s1")
    );
    assert_eq!(got[3], "systemctl restart k3s");
    assert_eq!(
        got[4],
        format!("{K3S_BIN} kubectl get node node-a --no-headers")
    );
    assert_eq!(got[5], format!("{K3S_BIN} kubectl uncordon node-a"));
    assert_eq!(got.len(), 6);
}

#[test]
fn a_worker_uses_its_kubelet_credentials_and_says_so_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), Some("drain"));
    rt.cordon(Role::Agent).unwrap();
    let kubeconfig = under(dir.path(), WORKER_KUBECONFIG).display().to_string();
    assert_eq!(
        lines(&calls)[0],
        format!("{K3S_BIN} kubectl --kubeconfig {kubeconfig} cordon node-a")
    );
    let err = rt.drain(Role::Agent, Duration::from_secs(60)).unwrap_err();
    assert!(
        err.to_string().contains("kubelet's credentials"),
        "the error explains the worker's credentials: {err}"
    );
}

#[test]
fn readiness_is_polled_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let status = Arc::new(Mutex::new("NotReady"));
    let (mut rt, calls) = runtime(dir.path(), status.clone(), None);
    let err = rt
        .wait_ready(Role::Server, Duration::from_millis(700))
        .unwrap_err();
    assert!(err.to_string().contains("not Ready within"), "{err}");
    assert!(lines(&calls).len() >= 2, "polled more than once");
    *status.lock().unwrap() = "Ready,SchedulingDisabled";
    rt.wait_ready(Role::Server, Duration::from_secs(5)).unwrap();
}

#[test]
fn a_rollback_reinstalls_the_old_release_and_restarts_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), None);
    rt.upgrade(Role::Agent, Some(&pin("v-k3s-1.31.0", "v1.31.0+k3s1")))
        .unwrap();
    rt.upgrade(Role::Agent, Some(&pin("v-k3s-1.30.5", "v1.30.5+k3s1")))
        .unwrap();
    let calls = calls.lock().unwrap();
    let installs: Vec<_> = calls
        .iter()
        .filter(|c| c.program == "sh")
        .map(|c| c.env_value("INSTALL_K3S_VERSION").unwrap().to_owned())
        .collect();
    assert_eq!(installs, ["v1.31.0+k3s1", "v1.30.5+k3s1"]);
    assert_eq!(calls.last().unwrap().line(), "systemctl restart k3s-agent");
    assert_eq!(rt.version(), "v1.30.5+k3s1");
}

#[test]
fn the_rotating_server_runs_k3s_token_rotate_and_rewrites_its_config() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), None);
    rt.install(Role::Server).unwrap();
    rt.start_server(&ServerPlan {
        cluster_init: true,
        token: OLD_TOKEN.into(),
        ..ServerPlan::default()
    })
    .unwrap();
    calls.lock().unwrap().clear();
    rt.adopt_token(Role::Server, OLD_TOKEN, NEW_TOKEN, true)
        .unwrap();
    assert_eq!(
        lines(&calls),
        [format!(
            "{K3S_BIN} token rotate --token {OLD_TOKEN} --new-token {NEW_TOKEN}"
        )],
        "rotates, and restarts nothing"
    );
    for file in [CONFIG_FILE, SERVER_DROP_IN] {
        let text = std::fs::read_to_string(under(dir.path(), file)).unwrap();
        assert!(
            text.contains(NEW_TOKEN) && !text.contains(OLD_TOKEN),
            "{file}"
        );
    }
}

#[test]
fn another_node_only_rewrites_its_token_and_errors_hold_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), None);
    rt.install(Role::Agent).unwrap();
    rt.start_agent(&AgentPlan {
        server_url: "https://[fd00:abcd:1::100]:6443".into(),
        token: OLD_TOKEN.into(),
    })
    .unwrap();
    calls.lock().unwrap().clear();
    rt.adopt_token(Role::Agent, OLD_TOKEN, NEW_TOKEN, false)
        .unwrap();
    assert!(lines(&calls).is_empty(), "no command, no restart");
    let drop_in = std::fs::read_to_string(under(dir.path(), AGENT_DROP_IN)).unwrap();
    assert!(drop_in.contains(&format!("K3S_TOKEN={NEW_TOKEN}")));
    assert!(!drop_in.contains(OLD_TOKEN));

    // A failing rotation names the command without either token.
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, _) = runtime(
        dir.path(),
        Arc::new(Mutex::new("Ready")),
        Some("token rotate"),
    );
    let err = rt
        .adopt_token(Role::Server, OLD_TOKEN, NEW_TOKEN, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("token rotate"), "{err}");
    assert!(
        !err.contains(OLD_TOKEN) && !err.contains(NEW_TOKEN),
        "{err}"
    );
    // A worker is never the rotating node.
    let err = rt
        .adopt_token(Role::Agent, OLD_TOKEN, NEW_TOKEN, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("only a server"), "{err}");
}

#[test]
fn a_workers_restamp_writes_its_flannel_iface_to_the_config_and_restarts_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, calls) = runtime(dir.path(), Arc::new(Mutex::new("Ready")), None);
    rt.restamp(Role::Agent, &["--flannel-iface=wg-sdwan-prod".to_string()])
        .unwrap();
    let config = std::fs::read_to_string(under(dir.path(), CONFIG_FILE)).unwrap();
    assert!(
        config.lines().any(|l| l == "flannel-iface: \"wg-sdwan-prod\""
            || l == "flannel-iface: wg-sdwan-prod"),
        "{config}"
    );
    assert!(!config.contains("cluster-cidr"), "{config}");
    assert_eq!(
        lines(&calls).last().map(String::as_str),
        Some("systemctl restart k3s-agent")
    );
}
