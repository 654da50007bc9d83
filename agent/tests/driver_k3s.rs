//! The k3s driver against a temp root and a recording runner: the files it
//! writes, the commands it runs and in which order, and that no token leaks
//! into an error. Plus the system runner's redaction on a real `sh`.

use powernode_agent::driver::k3s::{
    api_server_url, K3sRuntime, AGENT_DROP_IN, CONFIG_FILE, DEFAULT_VERSION, INSTALLED_MARKER,
    K3S_BIN, KUBECONFIG_FILE, NODE_TOKEN_FILE, SERVER_CA_FILE, SERVER_DROP_IN,
};
use powernode_agent::driver::runner::{
    CommandOutput, CommandRunner, RecordedCommand, RecordingRunner, SystemRunner,
};
use powernode_agent::driver::{AgentPlan, Role, Runtime, RuntimeError, ServerPlan};
use powernode_protocol::token::new_token;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VIP: &str = "fd00:abcd:1::100";
const JOIN_TOKEN: &str =
    "K10aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa::server:0123456789abcdef";

type Calls = Arc<Mutex<Vec<RecordedCommand>>>;

fn under(root: &Path, node_path: &str) -> std::path::PathBuf {
    root.join(node_path.trim_start_matches('/'))
}

/// What the installer and a started k3s server leave behind: the binary,
/// and after `systemctl restart k3s` the CA, kubeconfig and node token
/// (`K10<sha256 of the CA>::server:<the configured token>`).
fn fake_k3s(call: &RecordedCommand, root: &Path) -> CommandOutput {
    let write = |node_path: &str, contents: &str| {
        let path = under(root, node_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    };
    match call.line().as_str() {
        line if line.starts_with("sh -c curl -sfL https://get.k3s.io | sh -s - ") => {
            write(K3S_BIN, "#!/bin/sh\n");
        }
        "systemctl restart k3s" => {
            let config = std::fs::read_to_string(under(root, CONFIG_FILE)).unwrap();
            let token = config
                .lines()
                .find_map(|l| l.strip_prefix("token: "))
                .unwrap()
                .trim_matches('"')
                .to_owned();
            let ca = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
            write(SERVER_CA_FILE, ca);
            write(
                KUBECONFIG_FILE,
                "apiVersion: v1\nkind: Config\ncurrent-context: default\n",
            );
            let hash = hex::encode(Sha256::digest(ca.as_bytes()));
            write(NODE_TOKEN_FILE, &format!("K10{hash}::server:{token}\n"));
        }
        _ => {}
    }
    CommandOutput::default()
}

fn runtime(root: &Path, runner: RecordingRunner) -> (K3sRuntime, Calls) {
    let calls = runner.calls();
    let rt = K3sRuntime::new(
        root.to_path_buf(),
        Box::new(runner),
        DEFAULT_VERSION.to_owned(),
        "node-a".to_owned(),
    )
    .with_artifact_timeout(Duration::from_secs(5));
    (rt, calls)
}

fn lines(calls: &Calls) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .map(RecordedCommand::line)
        .collect()
}

fn read(root: &Path, node_path: &str) -> String {
    std::fs::read_to_string(under(root, node_path)).unwrap()
}

#[cfg(unix)]
fn mode(root: &Path, node_path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(under(root, node_path))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

fn bootstrap_plan(token: &str) -> ServerPlan {
    ServerPlan {
        cluster_init: true,
        server_url: None,
        token: token.to_owned(),
        tls_sans: vec![VIP.to_owned()],
        extra_flags: vec![
            "--flannel-iface=wg-sdwan-prod".to_owned(),
            "--flannel-backend=host-gw".to_owned(),
            "--cluster-cidr=10.42.0.0/16".to_owned(),
        ],
        overlay_ip: None,
        cluster_ca: None,
    }
}

#[test]
fn bootstrap_server_installs_writes_config_and_drop_in_then_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, calls) = runtime(root, RecordingRunner::new(root).on_run(fake_k3s));
    let token = new_token();

    rt.install(Role::Server).unwrap();
    rt.start_server(&bootstrap_plan(&token)).unwrap();

    assert_eq!(
        lines(&calls),
        [
            "sh -c curl -sfL https://get.k3s.io | sh -s - server",
            "systemctl daemon-reload",
            "systemctl enable k3s",
            "systemctl restart k3s",
        ]
    );
    let installer = calls.lock().unwrap()[0].clone();
    assert_eq!(
        installer.env_value("INSTALL_K3S_VERSION"),
        Some("v1.30.5+k3s1")
    );
    assert_eq!(installer.env_value("INSTALL_K3S_SKIP_START"), Some("true"));
    assert_eq!(installer.env_value("INSTALL_K3S_SKIP_ENABLE"), Some("true"));
    assert_eq!(read(root, INSTALLED_MARKER).trim(), "v1.30.5+k3s1 server");

    let config = read(root, CONFIG_FILE);
    for line in [
        "cluster-init: true\n".to_owned(),
        format!("token: \"{token}\"\n"),
        format!("tls-san:\n  - \"{VIP}\"\n"),
        "flannel-iface: \"wg-sdwan-prod\"\n".to_owned(),
        "flannel-backend: \"host-gw\"\n".to_owned(),
        "cluster-cidr: \"10.42.0.0/16\"\n".to_owned(),
    ] {
        assert!(config.contains(&line), "{line:?} not in\n{config}");
    }
    assert!(!config.contains("server:"), "{config}");

    let drop_in = read(root, SERVER_DROP_IN);
    assert!(
        drop_in.contains("[Service]\nExecStart=\nExecStart="),
        "{drop_in}"
    );
    let exec = drop_in
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .find(|l| !l.is_empty())
        .unwrap();
    assert_eq!(
        exec,
        format!(
            "/usr/local/bin/k3s server --cluster-init --token {token} --tls-san {VIP} \
             --flannel-iface=wg-sdwan-prod --flannel-backend=host-gw --cluster-cidr=10.42.0.0/16"
        )
    );

    #[cfg(unix)]
    {
        assert_eq!(mode(root, CONFIG_FILE), 0o600);
        assert_eq!(mode(root, SERVER_DROP_IN), 0o600);
    }

    let artifacts = rt.read_artifacts().unwrap();
    assert!(artifacts.kubeconfig.starts_with("apiVersion: v1"));
    assert!(artifacts.node_token.starts_with("K10"));
    assert!(
        artifacts.node_token.ends_with(&format!("::server:{token}")),
        "trimmed, and made from the bootstrap token"
    );
    assert!(!format!("{artifacts:?}").contains(&token));
}

#[test]
fn starting_again_with_the_same_plan_restarts_nothing_but_a_new_plan_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, calls) = runtime(root, RecordingRunner::new(root).on_run(fake_k3s));
    let token = new_token();
    rt.install(Role::Server).unwrap();
    rt.start_server(&bootstrap_plan(&token)).unwrap();
    calls.lock().unwrap().clear();

    rt.start_server(&bootstrap_plan(&token)).unwrap();
    assert_eq!(lines(&calls), ["systemctl is-active --quiet k3s"]);
    calls.lock().unwrap().clear();

    let mut wider = bootstrap_plan(&token);
    wider.tls_sans.push("cluster.example.net".to_owned());
    rt.start_server(&wider).unwrap();
    assert_eq!(
        lines(&calls),
        [
            "systemctl daemon-reload",
            "systemctl enable k3s",
            "systemctl restart k3s",
        ]
    );
    assert!(read(root, SERVER_DROP_IN).contains("--tls-san cluster.example.net"));
}

#[test]
fn an_unchanged_plan_restarts_a_unit_that_is_not_active() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let runner = RecordingRunner::new(root).on_run(|call, root| {
        if call.line() == "systemctl is-active --quiet k3s" {
            return CommandOutput {
                status: 3,
                ..CommandOutput::default()
            };
        }
        fake_k3s(call, root)
    });
    let (mut rt, calls) = runtime(root, runner);
    let plan = bootstrap_plan(&new_token());
    rt.start_server(&plan).unwrap();
    calls.lock().unwrap().clear();

    rt.start_server(&plan).unwrap();
    assert_eq!(
        lines(&calls),
        [
            "systemctl is-active --quiet k3s",
            "systemctl daemon-reload",
            "systemctl enable k3s",
            "systemctl restart k3s",
        ]
    );
}

#[test]
fn joining_server_points_at_the_bracketed_vip_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, calls) = runtime(root, RecordingRunner::new(root));
    let plan = ServerPlan {
        cluster_init: false,
        server_url: Some(api_server_url(VIP)),
        token: JOIN_TOKEN.to_owned(),
        tls_sans: vec![format!("[{VIP}]")],
        extra_flags: vec!["--flannel-iface=wg-sdwan-prod".to_owned()],
        // The node's overlay /128 is a SAN too; the CA the platform hands
        // a joining server is for the simulated runtime (k3s shares its
        // own) and is written nowhere.
        overlay_ip: Some("fd00:abcd:1::12".to_owned()),
        cluster_ca: Some(powernode_agent::driver::ClusterCa {
            cert_pem: "CA-CERT-NOT-WRITTEN".to_owned(),
            key_pem: "CA-KEY-NEVER-WRITTEN".to_owned(),
        }),
    };

    rt.start_server(&plan).unwrap();

    let drop_in = read(root, SERVER_DROP_IN);
    assert!(
        drop_in.contains(&format!(
            "ExecStart=/usr/local/bin/k3s server --server https://[fd00:abcd:1::100]:6443 \
             --token {JOIN_TOKEN} --tls-san fd00:abcd:1::100 --tls-san fd00:abcd:1::12 \
             --flannel-iface=wg-sdwan-prod\n"
        )),
        "{drop_in}"
    );
    let config = read(root, CONFIG_FILE);
    assert!(
        config.contains("server: \"https://[fd00:abcd:1::100]:6443\"\n"),
        "{config}"
    );
    assert!(config.contains(&format!("token: \"{JOIN_TOKEN}\"\n")));
    assert!(config.contains("tls-san:\n  - \"fd00:abcd:1::100\"\n  - \"fd00:abcd:1::12\"\n"));
    assert!(!config.contains("cluster-init"), "{config}");
    assert!(
        !config.contains("CA-") && !drop_in.contains("CA-"),
        "{config}{drop_in}"
    );
    assert_eq!(
        lines(&calls),
        [
            "systemctl daemon-reload",
            "systemctl enable k3s",
            "systemctl restart k3s",
        ]
    );
}

#[test]
fn worker_gets_the_agent_drop_in_with_url_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, calls) = runtime(root, RecordingRunner::new(root).on_run(fake_k3s));

    rt.install(Role::Agent).unwrap();
    rt.start_agent(&AgentPlan {
        server_url: api_server_url(VIP),
        token: JOIN_TOKEN.to_owned(),
    })
    .unwrap();

    assert_eq!(
        lines(&calls),
        [
            "sh -c curl -sfL https://get.k3s.io | sh -s - agent",
            "systemctl daemon-reload",
            "systemctl enable k3s-agent",
            "systemctl restart k3s-agent",
        ]
    );
    let drop_in = read(root, AGENT_DROP_IN);
    assert!(
        drop_in.contains(&format!(
            "[Service]\nEnvironment=\"K3S_URL=https://[fd00:abcd:1::100]:6443\"\n\
             Environment=\"K3S_TOKEN={JOIN_TOKEN}\"\n"
        )),
        "{drop_in}"
    );
    #[cfg(unix)]
    assert_eq!(mode(root, AGENT_DROP_IN), 0o600);
    assert!(!under(root, SERVER_DROP_IN).exists());
    assert!(!under(root, CONFIG_FILE).exists());
}

#[test]
fn install_is_idempotent_per_version_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, calls) = runtime(root, RecordingRunner::new(root).on_run(fake_k3s));
    rt.install(Role::Server).unwrap();
    rt.install(Role::Server).unwrap();
    assert_eq!(lines(&calls).len(), 1, "{:?}", lines(&calls));

    // Another version on the same root installs again.
    let runner = RecordingRunner::new(root).on_run(fake_k3s);
    let calls = runner.calls();
    let mut newer = K3sRuntime::new(
        root.to_path_buf(),
        Box::new(runner),
        "v1.31.1+k3s1".to_owned(),
        "node-a".to_owned(),
    );
    newer.install(Role::Server).unwrap();
    assert_eq!(
        calls.lock().unwrap()[0].env_value("INSTALL_K3S_VERSION"),
        Some("v1.31.1+k3s1")
    );
    assert_eq!(read(root, INSTALLED_MARKER).trim(), "v1.31.1+k3s1 server");

    // A lost binary is reinstalled even though the marker matches.
    std::fs::remove_file(under(root, K3S_BIN)).unwrap();
    newer.install(Role::Server).unwrap();
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[test]
fn an_installer_that_leaves_no_binary_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, _calls) = runtime(root, RecordingRunner::new(root));
    let err = rt.install(Role::Server).unwrap_err();
    assert!(matches!(err, RuntimeError::Unexpected(_)), "{err:?}");
    assert!(err.to_string().contains("usr/local/bin/k3s"), "{err}");
    assert!(!under(root, INSTALLED_MARKER).exists());
}

#[test]
fn read_artifacts_times_out_naming_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (rt, _calls) = runtime(root, RecordingRunner::new(root));
    let mut rt = rt.with_artifact_timeout(Duration::from_millis(300));

    let started = Instant::now();
    let err = rt.read_artifacts().unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, RuntimeError::Unexpected(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("etc/rancher/k3s/k3s.yaml"), "{message}");
    assert!(message.contains("server/node-token"), "{message}");

    let kubeconfig = under(root, KUBECONFIG_FILE);
    std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
    std::fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();
    let message = rt.read_artifacts().unwrap_err().to_string();
    assert!(message.contains("server/node-token"), "{message}");
    assert!(!message.contains("k3s.yaml"), "{message}");
}

#[test]
fn read_artifacts_waits_for_k3s_to_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let (mut rt, _calls) = runtime(&root, RecordingRunner::new(&root));
    let writer = {
        let root = root.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            for (node_path, contents) in [
                (KUBECONFIG_FILE, "apiVersion: v1\n"),
                (NODE_TOKEN_FILE, "K10abc::server:pw\n"),
            ] {
                let path = under(&root, node_path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, contents).unwrap();
            }
        })
    };
    let artifacts = rt.read_artifacts().unwrap();
    writer.join().unwrap();
    assert_eq!(artifacts.kubeconfig, "apiVersion: v1\n");
    assert_eq!(artifacts.node_token, "K10abc::server:pw");
}

#[test]
fn a_failing_command_is_named_and_the_token_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let token = new_token();
    let echoed = token.clone();
    let runner = RecordingRunner::new(root).on_run(move |call, _| {
        if call.line() == "systemctl restart k3s" {
            CommandOutput {
                status: 1,
                stdout: String::new(),
                stderr: format!("Job for k3s.service failed: bad token {echoed}"),
            }
        } else {
            CommandOutput::default()
        }
    });
    let (mut rt, calls) = runtime(root, runner);

    let err = rt.start_server(&bootstrap_plan(&token)).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RuntimeError::Command { .. }), "{err:?}");
    assert!(message.contains("systemctl restart k3s"), "{message}");
    assert!(message.contains("exit status 1"), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
    assert!(!message.contains(&token), "{message}");
    assert!(!format!("{err:?}").contains(&token));

    // Nothing was recorded as applied: the next call restarts again.
    calls.lock().unwrap().clear();
    let _ = rt.start_server(&bootstrap_plan(&token));
    assert!(lines(&calls).contains(&"systemctl restart k3s".to_owned()));
}

#[test]
fn a_secure_token_is_refused_on_the_first_server_but_accepted_by_its_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, calls) = runtime(root, RecordingRunner::new(root).on_run(fake_k3s));

    let err = rt.start_server(&bootstrap_plan(JOIN_TOKEN)).unwrap_err();
    assert!(err.to_string().contains("short token"), "{err}");
    assert!(!err.to_string().contains(JOIN_TOKEN));
    assert!(lines(&calls).is_empty());
    assert!(!under(root, CONFIG_FILE).exists());

    // Once the cluster exists, restarting with its own node token is fine,
    // another cluster's is not.
    rt.start_server(&bootstrap_plan(&new_token())).unwrap();
    let node_token = rt.read_artifacts().unwrap().node_token;
    rt.start_server(&bootstrap_plan(&node_token)).unwrap();
    let err = rt.start_server(&bootstrap_plan(JOIN_TOKEN)).unwrap_err();
    assert!(err.to_string().contains("another cluster"), "{err}");
}

#[test]
fn plans_k3s_would_misread_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (mut rt, calls) = runtime(root, RecordingRunner::new(root));
    let join = |url: &str| ServerPlan {
        server_url: Some(url.to_owned()),
        token: JOIN_TOKEN.to_owned(),
        ..ServerPlan::default()
    };
    for (plan, why) in [
        (join("https://fd00:abcd:1::100:6443"), "bracketed"),
        (join("fd00:abcd:1::100"), "https://"),
        (
            ServerPlan {
                cluster_init: true,
                ..join("https://[fd00:abcd:1::100]:6443")
            },
            "cannot both",
        ),
        (ServerPlan::default(), "either"),
        (
            ServerPlan {
                token: String::new(),
                ..join("https://[fd00:abcd:1::100]:6443")
            },
            "token",
        ),
        (
            ServerPlan {
                extra_flags: vec!["--token=x".to_owned()],
                ..join("https://[fd00:abcd:1::100]:6443")
            },
            "conflicts",
        ),
    ] {
        let err = rt.start_server(&plan).unwrap_err();
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    let err = rt
        .start_agent(&AgentPlan {
            server_url: api_server_url(VIP),
            token: String::new(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("token"), "{err}");
    assert!(lines(&calls).is_empty());
}

#[test]
fn identity_of_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _) = runtime(dir.path(), RecordingRunner::new(dir.path()));
    assert_eq!(rt.name(), "k3s");
    assert_eq!(rt.version(), "v1.30.5+k3s1");
    assert_eq!(rt.node_name(), "node-a");
    assert_eq!(
        rt.path(CONFIG_FILE),
        dir.path().join("etc/rancher/k3s/config.yaml")
    );
    let system = K3sRuntime::system();
    assert_eq!(system.root(), Path::new("/"));
    assert!(!system.node_name().is_empty());
    assert_eq!(system.node_name(), system.node_name().to_lowercase());
}

#[cfg(unix)]
#[test]
fn system_runner_reports_failures_without_secrets() {
    let secret = "s3cret-join-token";
    let mut runner = SystemRunner::new();
    let args: Vec<String> = [
        "-c",
        "echo \"cannot join with $K3S_TOKEN\" >&2; exit 3",
        "sh",
        "--token",
        secret,
    ]
    .map(String::from)
    .to_vec();
    let env = vec![("K3S_TOKEN".to_owned(), secret.to_owned())];
    let err = runner.run("sh", &args, &env).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("exit status 3"), "{message}");
    assert!(message.contains("cannot join with <redacted>"), "{message}");
    assert!(message.contains("K3S_TOKEN=<redacted>"), "{message}");
    assert!(message.contains("--token <redacted>"), "{message}");
    assert!(!message.contains(secret), "{message}");

    // Strings it is told are secret are hidden wherever they appear.
    let mut runner = SystemRunner::new().with_secrets(["hunter2".to_owned()]);
    let args: Vec<String> = ["-c", "echo hunter2 >&2; false # hunter2"]
        .map(String::from)
        .to_vec();
    let message = runner.run("sh", &args, &[]).unwrap_err().to_string();
    assert!(!message.contains("hunter2"), "{message}");

    let ok = SystemRunner::new()
        .run(
            "sh",
            &["-c".to_owned(), "echo out; echo err >&2".to_owned()],
            &[],
        )
        .unwrap();
    assert_eq!(
        ok,
        CommandOutput {
            status: 0,
            stdout: "out\n".to_owned(),
            stderr: "err\n".to_owned(),
        }
    );
}

#[cfg(unix)]
#[test]
fn system_runner_kills_a_hung_command_and_names_a_missing_one() {
    let started = Instant::now();
    let err = SystemRunner::new()
        .with_timeout(Duration::from_millis(200))
        .run("sleep", &["30".to_owned()], &[])
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("killed"), "{err}");

    let err = SystemRunner::new()
        .run("powernode-no-such-program", &[], &[])
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("powernode-no-such-program"), "{message}");
    assert!(message.contains("could not start"), "{message}");
}
