//! A simulated Kubernetes API server that the real `kubectl` accepts.
//!
//! It serves HTTPS (HTTP/1.1 over rustls) with a certificate issued by the
//! cluster's CA ([`pki`]), so the kubeconfig's `certificate-authority-data`
//! verifies it, at the node's own addresses and at a VIP while the address
//! is on this host. It answers enough of the API for `kubectl version`,
//! `get nodes [-o wide|-o json]` and `cluster-info` ([`kube`]); the nodes
//! are the cluster's as the platform knows them. Clients authenticate with
//! a client certificate issued by the same CA (the admin kubeconfig's);
//! `/version` and the health paths are public, as in k3s. Every answer
//! names the node that gave it ([`http`]'s headers).
//!
//! The listener is bound synchronously (errors surface to the caller, and
//! a port 0 is known at once) and served on the current tokio runtime until
//! the [`ApiServer`] is dropped.

pub mod http;
pub mod kube;
pub mod pki;

use crate::driver::{ClusterCa, ClusterNode, RuntimeError};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pki::IssuedCert;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Looks up the fencing generation at which this node holds a VIP, by
/// address (`None`: not held).
pub type VipLookup = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// What the API answers from.
#[derive(Clone)]
pub struct ApiState {
    /// This node's Kubernetes name.
    pub node_name: String,
    /// The k3s version it reports (`v1.31.4+k3s1`).
    pub version: String,
    /// This node's platform instance id, once known.
    pub instance_id: Option<String>,
    /// The cluster's nodes as the platform last listed them.
    pub nodes: Vec<ClusterNode>,
    /// When this API server started (this node's age until the platform
    /// lists it).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The VIPs this node holds.
    pub vip_generation: VipLookup,
    /// k3s is restarting (an upgrade's install phase): every request is
    /// answered 503, as a real apiserver that is down would not answer.
    pub restarting: bool,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("node_name", &self.node_name)
            .field("version", &self.version)
            .field("instance_id", &self.instance_id)
            .field("nodes", &self.nodes.len())
            .field("restarting", &self.restarting)
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<ApiState>,
    /// `None` until a certificate is set (connections are closed).
    tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, ApiState> {
        // A poisoned lock only means a panic elsewhere; the state is intact.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running simulated API server; dropping it stops it.
pub struct ApiServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Binds `addr` and serves on the current tokio runtime (the caller
    /// must be inside one, e.g. in `spawn_blocking`). Connections are
    /// closed until [`ApiServer::set_certificate`] is called.
    pub fn bind(addr: SocketAddr, state: ApiState) -> Result<Self, RuntimeError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            RuntimeError::Unexpected(format!(
                "the simulated k3s API on {addr} needs a tokio runtime to serve on"
            ))
        })?;
        let io = |e: std::io::Error| RuntimeError::Io {
            path: format!("k3s API listener {addr}"),
            source: e,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let local_addr = listener.local_addr().map_err(io)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(io)?
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            tls: RwLock::new(None),
        });
        let stop = CancellationToken::new();
        runtime.spawn(serve(listener, shared.clone(), stop.clone()));
        tracing::info!(%local_addr, "simulated k3s API listening");
        Ok(Self {
            local_addr,
            shared,
            stop,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `cert` (issued by `ca`) from the next connection on, and
    /// accepts client certificates issued by `ca`.
    pub fn set_certificate(&self, ca: &ClusterCa, cert: &IssuedCert) -> Result<(), RuntimeError> {
        let config = tls_config(ca, cert)?;
        *self.shared.tls.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(config));
        Ok(())
    }

    /// Changes what the API answers from.
    pub fn update(&self, change: impl FnOnce(&mut ApiState)) {
        change(&mut self.shared.state());
    }

    /// A copy of what the API answers from.
    pub fn state(&self) -> ApiState {
        self.shared.state().clone()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn tls_error(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Unexpected(format!("cannot configure the k3s API's TLS: {e}"))
}

/// TLS with `cert` (and the CA behind it), HTTP/1.1, and client
/// certificates of `ca` accepted but not required (the public paths).
fn tls_config(ca: &ClusterCa, cert: &IssuedCert) -> Result<rustls::ServerConfig, RuntimeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_der = pki::ca_der(ca)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone()).map_err(tls_error)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(tls_error)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der.clone(), ca_der], cert.private_key())
        .map_err(tls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "k3s API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = connection(stream, shared) => {}
            }
        });
    }
}

async fn connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let Some(config) = shared.tls() else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "k3s API: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let authenticated = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|certs| !certs.is_empty());
    let conn = http::Connection {
        local,
        authenticated,
    };
    let service = service_fn(move |req| {
        let state = shared.state().clone();
        let response = http::respond(&state, conn, &req);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(error = %e, "k3s API: connection ended with an error");
    }
}
