//! https: a server certificate from a CA made in the test is accepted
//! with that CA's file, refused without it.

use crate::support::Server;
use axum::extract::Path;
use axum::routing::post;
use axum::{Json, Router};
use powernode_client::{ActionError, Api, ClientConfig, ConfigError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path as FilePath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener that hands axum only connections whose TLS handshake
/// succeeded (a client that refuses the certificate is skipped).
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            self.accepted.fetch_add(1, Ordering::SeqCst);
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves `router` over https with `config`, as `https://localhost:<port>`.
async fn serve_tls(router: Router, config: rustls::ServerConfig) -> Server {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("local addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        accepted: accepted.clone(),
    };
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server {
        url: format!("https://localhost:{port}"),
        accepted,
        task,
    }
}

/// A fresh CA (its certificate written as PEM to `<dir>/<name>.pem`) and a
/// server configuration whose certificate it signed, for `localhost` and
/// `127.0.0.1`.
fn ca_and_server(dir: &FilePath, name: &str) -> (PathBuf, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("powernode test CA {name}"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::NoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("server certificate");

    let ca_path = dir.join(format!("{name}.pem"));
    std::fs::write(&ca_path, ca_cert.pem()).expect("write CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server TLS config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_path, config)
}

fn router() -> Router {
    let api = Router::new().route(
        "/v1/actions/{name}",
        post(|Path(name): Path<String>| async move { Json(json!({"data": {"action": name}})) }),
    );
    Router::new().nest("/powernode", api)
}

#[tokio::test]
async fn https_is_trusted_with_the_ca_file_and_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, server_config) = ca_and_server(dir.path(), "ours");
    let server = serve_tls(router(), server_config).await;
    let base = format!("{}/powernode/", server.url);

    // With the CA file: accepted, under the path prefix, on one connection.
    let api = Api::from_config(&ClientConfig::new(&base, "t").with_ca_cert(&ca)).unwrap();
    for _ in 0..5 {
        let data: Value = api.call("ping", &json!({})).await.unwrap();
        assert_eq!(data["action"], "ping");
    }
    assert_eq!(server.connections(), 1);

    // The same name on 127.0.0.1 (an IP in the certificate).
    let by_ip = base.replace("localhost", "127.0.0.1");
    let api = Api::from_config(&ClientConfig::new(&by_ip, "t").with_ca_cert(&ca)).unwrap();
    api.call("ping", &json!({})).await.unwrap();

    // Another CA's file: refused.
    let (other_ca, _) = ca_and_server(dir.path(), "theirs");
    let api = Api::from_config(&ClientConfig::new(&base, "t").with_ca_cert(&other_ca)).unwrap();
    let e = api.call("ping", &json!({})).await.unwrap_err();
    assert!(matches!(e, ActionError::Certificate { .. }), "{e:?}");
    assert_eq!(e.code(), "untrusted_certificate");
    assert!(
        e.to_string().contains("not signed by the CA in --ca-cert"),
        "{e}"
    );

    // The other CA pinned in a context: refused naming the context and
    // both fingerprints.
    let pem = std::fs::read_to_string(&other_ca).unwrap();
    let api = Api::from_config(&ClientConfig::new(&base, "t").with_pinned_ca("prod", pem)).unwrap();
    let e = api.call("ping", &json!({})).await.unwrap_err().to_string();
    assert!(
        e.contains("not signed by the CA pinned in context `prod` (pinned sha256:")
            && e.contains("presented sha256:"),
        "{e}"
    );
    // Our CA pinned: accepted.
    let pem = std::fs::read_to_string(&ca).unwrap();
    let api = Api::from_config(&ClientConfig::new(&base, "t").with_pinned_ca("prod", pem)).unwrap();
    api.call("ping", &json!({})).await.unwrap();

    // The system's roots: refused (no system trusts a CA made a moment ago).
    // A machine without any system roots fails already at set-up.
    match Api::new(&base, "t") {
        Ok(api) => {
            let e = api.call("ping", &json!({})).await.unwrap_err();
            assert!(matches!(e, ActionError::Certificate { .. }), "{e:?}");
            assert!(e.refusal().is_none() && !e.is_unheard());
            assert!(e.to_string().contains("not trusted"), "{e}");
        }
        Err(e) => assert!(matches!(e, ConfigError::Tls(_)), "{e:?}"),
    }
}

#[tokio::test]
async fn an_unusable_ca_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = Api::from_config(&ClientConfig::new("https://localhost:1", "t").with_ca_cert(&missing))
        .unwrap_err();
    assert!(matches!(e, ConfigError::CaFile { .. }), "{e:?}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let e = Api::from_config(&ClientConfig::new("https://localhost:1", "t").with_ca_cert(&garbage))
        .unwrap_err();
    assert!(matches!(e, ConfigError::CaCert { .. }), "{e:?}");
}
