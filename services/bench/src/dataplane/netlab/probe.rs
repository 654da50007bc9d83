//! HTTPS requests to a cluster's API from inside a host (an operator's
//! namespace): `GET /version` at the kubeconfig's server, verified with the
//! kubeconfig's CA, reading which instance answered and at which VIP
//! generation (`x-powernode-instance`, `x-powernode-vip-generation`). One
//! request at a time, or a loop every few milliseconds in the background.
//! A request is a GET as kubectl sends it: a new connection each time, sent
//! once more when the connection was reset (client-go retries a GET on
//! `ECONNRESET`); the result says when that happened.

use super::{spawn_in_netns, Host};
use anyhow::{anyhow, bail, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a kubeconfig points and the CA that verifies it.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    /// The `server:` URL, e.g. `https://[fd00::…]:6443`.
    pub server: String,
    /// The CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
}

impl ApiTarget {
    /// Reads `server:` and `certificate-authority-data:` of the kubeconfig's
    /// (first) cluster.
    pub fn from_kubeconfig(kubeconfig: &str) -> anyhow::Result<Self> {
        let field = |name: &str| {
            kubeconfig
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
                .with_context(|| format!("no `{name}` in the kubeconfig:\n{kubeconfig}"))
        };
        let server = field("server:")?;
        let ca = field("certificate-authority-data:")?;
        let ca_pem = powernode_events::wireguard::decode_base64(&ca)
            .context("certificate-authority-data is not base64")?;
        Ok(Self { server, ca_pem })
    }

    /// An HTTP client trusting only the CA; no pooled connections (every
    /// request is a new TCP connection and TLS handshake, routed afresh).
    pub fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.context("the kubeconfig's CA")?)?;
        }
        anyhow::ensure!(!roots.is_empty(), "the kubeconfig's CA has no certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .pool_max_idle_per_host(0)
            .no_proxy()
            .timeout(timeout)
            .build()?)
    }
}

/// Who answered a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `x-powernode-instance`.
    pub instance: String,
    /// `x-powernode-vip-generation`, when the request reached a VIP holder.
    pub generation: Option<u64>,
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// When it was sent.
    pub at: Instant,
    /// When it was sent, by the clock (to read beside agents' logs).
    pub sent: chrono::DateTime<chrono::Utc>,
    /// How long it took (a retry included).
    pub took: Duration,
    /// Who answered, or why it failed.
    pub outcome: Result<Answer, String>,
    /// The first attempt's error, when the connection was reset and the
    /// request sent again (as kubectl's client-go does for a GET).
    pub retried: Option<String>,
}

/// `GET <server>/version` the way kubectl's client-go sends a GET: once
/// more when the connection was reset before an answer (a connection in
/// flight while the VIP moved reaches the new holder, which knows nothing
/// of it). `(outcome, the first attempt's error when retried)`.
async fn probe(client: &reqwest::Client, server: &str) -> (Result<Answer, String>, Option<String>) {
    match get_version(client, server).await {
        Err(Failure::Reset(first)) => {
            let again = get_version(client, server)
                .await
                .map_err(Failure::into_message);
            (again, Some(first))
        }
        other => (other.map_err(Failure::into_message), None),
    }
}

/// Why a request failed.
enum Failure {
    /// The connection was reset before an answer.
    Reset(String),
    /// Anything else.
    Other(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Self::Reset(m) | Self::Other(m) => m,
        }
    }
}

/// Whether `e` is what client-go retries a GET after: a connection reset,
/// or one closed before the answer (`IsConnectionReset`, `IsProbableEOF`).
fn was_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{ConnectionReset, UnexpectedEof};
    let mut next = Some(e);
    while let Some(err) = next {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | UnexpectedEof))
            || err
                .to_string()
                .contains("connection closed before message completed")
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// `GET <server>/version` once; who answered.
async fn get_version(client: &reqwest::Client, server: &str) -> Result<Answer, Failure> {
    let url = format!("{}/version", server.trim_end_matches('/'));
    let r = client.get(&url).send().await.map_err(|e| {
        let message = format!("{url}: {}", chain(&e));
        if was_reset(&e) {
            Failure::Reset(message)
        } else {
            Failure::Other(message)
        }
    })?;
    let status = r.status();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let instance = header("x-powernode-instance");
    let generation = header("x-powernode-vip-generation").and_then(|g| g.parse().ok());
    if !status.is_success() {
        return Err(Failure::Other(format!("{url}: HTTP {status}")));
    }
    let instance =
        instance.ok_or_else(|| Failure::Other(format!("{url}: no x-powernode-instance header")))?;
    Ok(Answer {
        instance,
        generation,
    })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// One `GET /version` from inside `host`.
pub fn probe_once(
    host: &Host,
    target: &ApiTarget,
    timeout: Duration,
) -> anyhow::Result<ProbeResult> {
    let target = target.clone();
    let handle = spawn_in_netns(host.netns(), move || -> anyhow::Result<ProbeResult> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = target.client(timeout)?;
        let (at, sent) = (Instant::now(), chrono::Utc::now());
        let (outcome, retried) = rt.block_on(probe(&client, &target.server));
        Ok(ProbeResult {
            at,
            sent,
            took: at.elapsed(),
            outcome,
            retried,
        })
    })?;
    handle
        .join()
        .map_err(|_| anyhow!("the probe thread panicked"))??
}

/// `GET /version` from inside a host every `every`, in the background,
/// until [`stop`](Self::stop) (or drop).
pub struct ProbeLoop {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<ProbeResult>>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<anyhow::Result<()>>>>,
}

impl ProbeLoop {
    /// Starts probing `target` from `host` every `every` (each request
    /// waits at most `timeout`).
    pub fn start(
        host: &Host,
        target: &ApiTarget,
        every: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let results: Arc<Mutex<Vec<ProbeResult>>> = Arc::default();
        let (target, stop_in, into) = (target.clone(), stop.clone(), results.clone());
        let thread = spawn_in_netns(host.netns(), move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let client = target.client(timeout)?;
            rt.block_on(async {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop_in.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (at, sent) = (Instant::now(), chrono::Utc::now());
                    let (outcome, retried) = probe(&client, &target.server).await;
                    into.lock().expect("probe results lock").push(ProbeResult {
                        at,
                        sent,
                        took: at.elapsed(),
                        outcome,
                        retried,
                    });
                }
            });
            Ok(())
        })?;
        Ok(Self {
            stop,
            results,
            thread: Some(thread),
        })
    }

    /// The results so far.
    pub fn results(&self) -> Vec<ProbeResult> {
        self.results.lock().expect("probe results lock").clone()
    }

    /// Stops the loop (after the request in flight); every result.
    pub fn stop(mut self) -> anyhow::Result<Vec<ProbeResult>> {
        self.halt()?;
        Ok(self.results())
    }

    fn halt(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r??,
                Err(_) => bail!("the probe loop's thread panicked"),
            }
        }
        Ok(())
    }
}

impl Drop for ProbeLoop {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// The longest run of failures in `results` (first failure → the next
/// success), and how many requests failed in it.
pub fn longest_outage(results: &[ProbeResult]) -> Option<(Duration, usize)> {
    let mut best: Option<(Duration, usize)> = None;
    let mut since: Option<(Instant, usize)> = None;
    for r in results {
        match (&r.outcome, since) {
            (Err(_), None) => since = Some((r.at, 1)),
            (Err(_), Some((t, n))) => since = Some((t, n + 1)),
            (Ok(_), Some((t, n))) => {
                let d = r.at + r.took - t;
                if best.is_none_or(|(b, _)| d > b) {
                    best = Some((d, n));
                }
                since = None;
            }
            (Ok(_), None) => {}
        }
    }
    best
}
