//! The simulated driver: realistic artefacts, fresh tokens, and the same
//! refusals a real k3s would give.

use powernode_agent::driver::simulated::{new_token, SimulatedRuntime};
use powernode_agent::driver::{AgentPlan, Role, Runtime, RuntimeError, ServerPlan};

const VERSION: &str = "v1.30.5+k3s1";
const URL: &str = "https://[fd00:abcd:1::100]:6443";

fn simulated() -> SimulatedRuntime {
    SimulatedRuntime::new("node-a".to_owned(), VERSION.to_owned())
}

fn bootstrap(token: &str) -> ServerPlan {
    ServerPlan {
        cluster_init: true,
        token: token.to_owned(),
        tls_sans: vec!["fd00:abcd:1::100".to_owned()],
        ..ServerPlan::default()
    }
}

/// `K10<64 hex>::server:<password>` → the password.
fn password_of(node_token: &str) -> &str {
    let rest = node_token.strip_prefix("K10").expect("K10 prefix");
    let (hash, password) = rest.split_once("::server:").expect("::server:");
    assert_eq!(hash.len(), 64, "{node_token}");
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{node_token}");
    password
}

fn field<'a>(yaml: &'a str, key: &str) -> &'a str {
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in\n{yaml}"))
}

#[test]
fn bootstrap_artifacts_look_like_k3s_ones() {
    let mut rt = simulated();
    let token = new_token();
    rt.install(Role::Server).unwrap();
    rt.start_server(&bootstrap(&token)).unwrap();

    let artifacts = rt.read_artifacts().unwrap();
    assert_eq!(password_of(&artifacts.node_token), token);

    let kubeconfig = &artifacts.kubeconfig;
    for line in [
        "apiVersion: v1\n",
        "kind: Config\n",
        "current-context: default\n",
        "    server: https://127.0.0.1:6443\n",
        "- name: default\n",
    ] {
        assert!(kubeconfig.contains(line), "{line:?} not in\n{kubeconfig}");
    }
    for key in [
        "certificate-authority-data",
        "client-certificate-data",
        "client-key-data",
    ] {
        let data = field(kubeconfig, key);
        // base64 of "-----BEGIN …".
        assert!(data.starts_with("LS0tLS1CRUdJTi"), "{key}: {data}");
        assert!(data
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)));
        assert_eq!(data.len() % 4, 0);
    }
    assert_eq!(
        format!("{artifacts:?}"),
        "BootstrapArtifacts { kubeconfig: \"<redacted>\", node_token: \"<redacted>\", \
         cluster_ca: Some(\"<redacted>\") }"
    );
    // The CA is a real one: the kubeconfig carries it, the token's hash is
    // its SHA-256 (as k3s's `K10` tokens are), and its key is PKCS#8 PEM.
    let ca = artifacts
        .cluster_ca
        .clone()
        .expect("a simulated bootstrap makes a CA");
    assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(
        field(kubeconfig, "certificate-authority-data"),
        powernode_events::wireguard::encode_base64(ca.cert_pem.as_bytes())
    );
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        ca.cert_pem.as_bytes(),
    ));
    assert!(artifacts.node_token.starts_with(&format!("K10{hash}::")));
    assert!(!kubeconfig.contains(&ca.key_pem) && !format!("{artifacts:?}").contains("PRIVATE"));

    // Reading again (or restarting with the same token) gives the same.
    rt.start_server(&bootstrap(&token)).unwrap();
    assert_eq!(rt.read_artifacts().unwrap(), artifacts);
}

#[test]
fn tokens_and_clusters_differ_between_calls() {
    let (a, b) = (new_token(), new_token());
    assert_ne!(a, b);
    for token in [&a, &b] {
        assert_eq!(token.len(), 64);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    }

    let artifacts = |token: &str| {
        let mut rt = simulated();
        rt.install(Role::Server).unwrap();
        rt.start_server(&bootstrap(token)).unwrap();
        rt.read_artifacts().unwrap()
    };
    let (first, second) = (artifacts(&a), artifacts(&a));
    assert_ne!(first.kubeconfig, second.kubeconfig);
    assert_ne!(
        first.node_token, second.node_token,
        "each cluster its own CA"
    );

    // With no token, k3s makes up a password.
    let generated = artifacts("");
    assert_eq!(password_of(&generated.node_token).len(), 32);
}

#[test]
fn read_artifacts_needs_a_started_bootstrap_server() {
    let mut rt = simulated();
    let err = rt.read_artifacts().unwrap_err();
    assert!(matches!(err, RuntimeError::Unexpected(_)), "{err:?}");

    rt.install(Role::Server).unwrap();
    rt.start_server(&ServerPlan {
        server_url: Some(URL.to_owned()),
        token: "K10abcdef::server:pw".to_owned(),
        ..ServerPlan::default()
    })
    .unwrap();
    assert!(
        rt.read_artifacts().is_err(),
        "a joining server hands out nothing"
    );
}

#[test]
fn it_refuses_what_k3s_would_refuse() {
    let mut rt = simulated();
    let not_installed = rt.start_server(&bootstrap(&new_token())).unwrap_err();
    assert!(not_installed.to_string().contains("not installed"));
    let not_installed = rt
        .start_agent(&AgentPlan {
            server_url: URL.to_owned(),
            token: "t".to_owned(),
        })
        .unwrap_err();
    assert!(not_installed.to_string().contains("not installed"));

    rt.install(Role::Server).unwrap();
    let secure = rt
        .start_server(&bootstrap("K10abcdef::server:pw"))
        .unwrap_err();
    assert!(secure.to_string().contains("short token"), "{secure}");
    let unbracketed = rt
        .start_server(&ServerPlan {
            server_url: Some("https://fd00:abcd:1::100:6443".to_owned()),
            token: "t".to_owned(),
            ..ServerPlan::default()
        })
        .unwrap_err();
    assert!(
        unbracketed.to_string().contains("bracketed"),
        "{unbracketed}"
    );

    // Once the cluster exists: its node token restarts it, another does not.
    let token = new_token();
    rt.start_server(&bootstrap(&token)).unwrap();
    let node_token = rt.read_artifacts().unwrap().node_token;
    rt.start_server(&bootstrap(&node_token)).unwrap();
    assert!(rt.start_server(&bootstrap(&new_token())).is_err());
}

#[test]
fn it_remembers_what_was_started() {
    let mut rt = simulated();
    assert_eq!(rt.name(), "simulated");
    assert_eq!(rt.version(), VERSION);
    assert_eq!(rt.node_name(), "node-a");
    assert!(rt.started_server().is_none() && rt.started_agent().is_none());

    rt.install(Role::Agent).unwrap();
    assert!(rt.is_installed(Role::Agent) && !rt.is_installed(Role::Server));
    let plan = AgentPlan {
        server_url: URL.to_owned(),
        token: "K10abcdef::server:pw".to_owned(),
    };
    rt.start_agent(&plan).unwrap();
    assert_eq!(rt.started_agent(), Some(&plan));
    assert!(rt.started_server().is_none());

    rt.install(Role::Server).unwrap();
    let server = bootstrap(&new_token());
    rt.start_server(&server).unwrap();
    assert_eq!(rt.started_server(), Some(&server));

    // Usable as the agent's boxed driver.
    let boxed: Box<dyn Runtime> = Box::new(rt);
    assert_eq!(boxed.name(), "simulated");
}
