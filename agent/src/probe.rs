//! The data-path check: probe each VIP of the agent's cluster through the
//! tunnel (`GET https://[vip]:6443/version`) and report who answered.
//!
//! Each heartbeat reply names the [`ProbeTarget`]s; a background task
//! ([`Prober::run`]) probes them all every interval (and at once when the
//! targets change). The answering runtime names itself in
//! `x-powernode-instance` and the generation it holds the VIP at in
//! `x-powernode-vip-generation`. The newest result per VIP goes into the
//! next heartbeat ([`Prober::take_unreported`]); a result that differs from
//! the previous one (another holder answers, or reachability flips) wakes
//! the agent so it heartbeats at once.
//!
//! The certificate is not verified: the probe only reports who answered,
//! and the platform checks that against its log.

use futures::future::join_all;
use powernode_protocol::{ProbeTarget, VipProbe};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The port probed (the Kubernetes API).
pub const PROBE_PORT: u16 = 6443;
/// The path probed.
pub const PROBE_PATH: &str = "/version";
/// Header naming the answering instance.
pub const INSTANCE_HEADER: &str = "x-powernode-instance";
/// Header naming the generation the answering holder holds the VIP at.
pub const GENERATION_HEADER: &str = "x-powernode-vip-generation";

/// Why the probe client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// TLS set-up failed.
    #[error("probe TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The HTTP client could not be built.
    #[error("probe HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

#[derive(Default)]
struct Book {
    targets: Vec<ProbeTarget>,
    /// Newest result per virtual IP id.
    results: BTreeMap<String, VipProbe>,
    /// Per virtual IP id: `probed_at_ms` of the result last reported.
    reported: BTreeMap<String, i64>,
}

/// The probe targets and results, shared between the agent's loop and the
/// probing task.
#[derive(Clone)]
pub struct Prober {
    book: Arc<Mutex<Book>>,
    targets_changed: Arc<Notify>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober that notifies `wake` when a result changes.
    pub fn new(wake: Arc<Notify>) -> Self {
        Self {
            book: Arc::default(),
            targets_changed: Arc::default(),
            wake,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A poisoned lock only means a panic elsewhere; the book is plain data.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the targets (from a heartbeat reply); results of VIPs no
    /// longer targeted are dropped. A change probes at once.
    pub fn set_targets(&self, targets: Vec<ProbeTarget>) {
        let mut book = self.book();
        if book.targets == targets {
            return;
        }
        book.results
            .retain(|id, _| targets.iter().any(|t| t.virtual_ip_id == *id));
        book.reported
            .retain(|id, _| targets.iter().any(|t| t.virtual_ip_id == *id));
        book.targets = targets;
        drop(book);
        self.targets_changed.notify_one();
    }

    /// The current targets.
    pub fn targets(&self) -> Vec<ProbeTarget> {
        self.book().targets.clone()
    }

    /// Records a result; `true` (and the agent is woken) when it differs
    /// from the previous one for that VIP in who answered, at which
    /// generation, or whether anything did.
    pub fn record(&self, probe: VipProbe) -> bool {
        let mut book = self.book();
        if !book
            .targets
            .iter()
            .any(|t| t.virtual_ip_id == probe.virtual_ip_id)
        {
            return false;
        }
        let changed = book.results.get(&probe.virtual_ip_id).is_none_or(|old| {
            (old.reached, &old.answered_by, old.generation)
                != (probe.reached, &probe.answered_by, probe.generation)
        });
        book.results.insert(probe.virtual_ip_id.clone(), probe);
        drop(book);
        if changed {
            self.wake.notify_one();
        }
        changed
    }

    /// The newest result per VIP not reported yet (what the next heartbeat
    /// carries); each is reported once.
    pub fn take_unreported(&self) -> Vec<VipProbe> {
        let mut book = self.book();
        let fresh: Vec<VipProbe> = book
            .results
            .values()
            .filter(|p| book.reported.get(&p.virtual_ip_id) != Some(&p.probed_at_ms))
            .cloned()
            .collect();
        for p in &fresh {
            book.reported
                .insert(p.virtual_ip_id.clone(), p.probed_at_ms);
        }
        fresh
    }

    /// Probes every target each `interval` (and at once when the targets
    /// change) until `shutdown`.
    pub async fn run(
        self,
        client: reqwest::Client,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            let targets = self.targets();
            let results = join_all(targets.iter().map(|t| probe(&client, t))).await;
            for result in results {
                if self.record(result.clone()) {
                    tracing::info!(virtual_ip_id = %result.virtual_ip_id, vip = %result.vip, reached = result.reached, answered_by = ?result.answered_by, generation = ?result.generation, "VIP probe changed");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = self.targets_changed.notified() => {}
            }
        }
    }
}

/// The probe client: HTTPS without certificate verification, no proxy, a
/// fresh connection per probe (a kept-alive one would outlive a VIP move),
/// giving up after `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("powernode-agent/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// One probe of `target`: reached when any HTTP answer came back.
pub async fn probe(client: &reqwest::Client, target: &ProbeTarget) -> VipProbe {
    let url = match target.vip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(a)) => format!("https://[{a}]:{PROBE_PORT}{PROBE_PATH}"),
        _ => format!("https://{}:{PROBE_PORT}{PROBE_PATH}", target.vip),
    };
    let answer = client.get(&url).send().await;
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (reached, answered_by, generation) = match &answer {
        Ok(r) => (
            true,
            header(r, INSTANCE_HEADER),
            header(r, GENERATION_HEADER).and_then(|g| g.parse().ok()),
        ),
        Err(e) => {
            tracing::debug!(vip = %target.vip, error = %e, "VIP probe failed");
            (false, None, None)
        }
    };
    VipProbe {
        virtual_ip_id: target.virtual_ip_id.clone(),
        vip: target.vip.clone(),
        reached,
        answered_by,
        generation,
        probed_at_ms: chrono::Utc::now().timestamp_millis(),
    }
}

/// Accepts any certificate (the signatures of the handshake itself are
/// still checked): a probe reports who answered, it trusts nothing.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
