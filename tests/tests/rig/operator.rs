//! The operator's side of the `dataplane` scenario, on the test machine
//! itself (not in a container): the access grant's wg-quick file brought up
//! as a userspace WireGuard interface (`boringtun-cli` configured with `wg`
//! and `ip`, as wg-quick would), the real `kubectl`, and a loop of
//! `GET /version` requests through the VIP saying who answered.

use anyhow::{bail, ensure, Context as _};
use powernode_tests::netns::probe::{Answer, ApiTarget, ProbeResult};
use powernode_tests::netns::wireguard::write_secret;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Interfaces this test makes are named `pnop<pid>`.
const PREFIX: &str = "pnop";
/// How long `boringtun-cli` may take to make its UAPI socket.
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// What a wg-quick file says (the fields the tunnel needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickConfig {
    /// `[Interface] Address`.
    pub addresses: Vec<String>,
    /// `[Peer] PublicKey`.
    pub peer_key: String,
    /// `[Peer] Endpoint`.
    pub endpoint: String,
    /// `[Peer] AllowedIPs`.
    pub allowed_ips: Vec<String>,
    /// `[Peer] PersistentKeepalive`.
    pub keepalive: Option<String>,
}

impl QuickConfig {
    /// Parses a wg-quick file with one `[Peer]` (an access grant's).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (mut section, mut peers) = (String::new(), 0);
        let mut cfg = Self {
            addresses: Vec::new(),
            peer_key: String::new(),
            endpoint: String::new(),
            allowed_ips: Vec::new(),
            keepalive: None,
        };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.starts_with('[') {
                section = line.to_ascii_lowercase();
                peers += usize::from(section == "[peer]");
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_string());
            let list = || value.split(',').map(|v| v.trim().to_string()).collect();
            match (section.as_str(), key.as_str()) {
                ("[interface]", "address") => cfg.addresses = list(),
                ("[peer]", "publickey") => cfg.peer_key = value,
                ("[peer]", "endpoint") => cfg.endpoint = value,
                ("[peer]", "allowedips") => cfg.allowed_ips = list(),
                ("[peer]", "persistentkeepalive") => cfg.keepalive = Some(value),
                _ => {}
            }
        }
        ensure!(peers == 1, "expected one [Peer], found {peers}:\n{text}");
        ensure!(
            !cfg.addresses.is_empty()
                && !cfg.peer_key.is_empty()
                && !cfg.endpoint.is_empty()
                && !cfg.allowed_ips.is_empty(),
            "the wg-quick file lacks Address, PublicKey, Endpoint or AllowedIPs:\n{text}"
        );
        Ok(cfg)
    }
}

/// A WireGuard interface on the test machine (`boringtun-cli` in the
/// foreground, a child of this process). Dropping it stops boringtun and
/// deletes the interface, its routes and the key file.
pub struct Tunnel {
    /// The interface (`pnop<pid>`).
    pub interface: String,
    child: Child,
    key_file: PathBuf,
}

impl Tunnel {
    /// Brings `config` up with `private_key` in `dir`.
    pub fn up(config: &QuickConfig, private_key: &str, dir: &Path) -> anyhow::Result<Self> {
        remove_stale();
        let interface = format!("{PREFIX}{}", std::process::id());
        let log = std::fs::File::create(dir.join(format!("{interface}.log")))?;
        let child = Command::new("boringtun-cli")
            .args(["-f", "--disable-drop-privileges", &interface])
            .env("WG_SUDO", "1")
            .env("WG_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot run boringtun-cli (scripts/test installs it)")?;
        let key_file = dir.join(format!("{interface}.key"));
        let tunnel = Self {
            interface,
            child,
            key_file,
        };
        tunnel.configure(config, private_key)?;
        Ok(tunnel)
    }

    fn configure(&self, config: &QuickConfig, private_key: &str) -> anyhow::Result<()> {
        let iface = self.interface.as_str();
        let socket = PathBuf::from(format!("/run/wireguard/{iface}.sock"));
        let started = Instant::now();
        while !socket.exists() {
            ensure!(
                started.elapsed() < SOCKET_WAIT,
                "boringtun-cli made no {} in {SOCKET_WAIT:?}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        write_secret(&self.key_file, &format!("{private_key}\n"))?;
        let key = self.key_file.to_string_lossy().into_owned();
        let allowed = config.allowed_ips.join(",");
        let mut wg = vec![
            "set",
            iface,
            "private-key",
            &key,
            "peer",
            &config.peer_key,
            "endpoint",
            &config.endpoint,
            "allowed-ips",
            &allowed,
        ];
        if let Some(k) = &config.keepalive {
            wg.extend(["persistent-keepalive", k]);
        }
        run("wg", &wg)?;
        for address in &config.addresses {
            run(
                "ip",
                &[family(address), "addr", "add", address, "dev", iface],
            )?;
        }
        run("ip", &["link", "set", iface, "up"])?;
        for net in &config.allowed_ips {
            run("ip", &[family(net), "route", "replace", net, "dev", iface])?;
        }
        Ok(())
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = run("ip", &["link", "del", &self.interface]);
        let _ = std::fs::remove_file(format!("/run/wireguard/{}.sock", self.interface));
        let _ = std::fs::remove_file(&self.key_file);
    }
}

/// Deletes `pnop<pid>` interfaces whose test process is gone (killed
/// before its `Drop` ran).
fn remove_stale() {
    let Ok(links) = run("ip", &["-o", "link", "show"]) else {
        return;
    };
    for name in links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default())
    {
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}

fn family(net: &str) -> &'static str {
    if net.contains(':') {
        "-6"
    } else {
        "-4"
    }
}

/// Runs `program args`; stdout, or an error with stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The real `kubectl` (`$KUBECTL` or the one on `PATH`) with `kubeconfig`;
/// its home (the discovery cache) is the kubeconfig's directory.
pub fn kubectl(kubeconfig: &Path, timeout: &str, args: &[&str]) -> anyhow::Result<String> {
    let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let home = kubeconfig.parent().context("the kubeconfig's directory")?;
    let out = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", timeout])
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {bin} (scripts/test installs kubectl)"))?;
    ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `kubectl get nodes -o json` showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// The node names.
    pub names: BTreeSet<String>,
    /// The instance that answered (`powernode.io/served-by-instance`).
    pub served_by: BTreeSet<String>,
}

/// `kubectl get nodes -o json`.
pub fn nodes(kubeconfig: &Path) -> anyhow::Result<Nodes> {
    let out = kubectl(kubeconfig, "5s", &["get", "nodes", "-o", "json"])?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("kubectl said {out}"))?;
    let items = v["items"]
        .as_array()
        .with_context(|| format!("no items: {v}"))?;
    let text = |n: &Value, p: &str| n.pointer(p).and_then(Value::as_str).map(str::to_string);
    Ok(Nodes {
        names: items
            .iter()
            .map(|n| {
                text(n, "/metadata/name").with_context(|| format!("a node without a name: {n}"))
            })
            .collect::<anyhow::Result<_>>()?,
        served_by: items
            .iter()
            .filter_map(|n| text(n, "/metadata/annotations/powernode.io~1served-by-instance"))
            .collect(),
    })
}

/// `GET /version` through the VIP every `every`, in the background, each
/// on a new connection, until [`stop`](Self::stop).
pub struct Prober {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<ProbeResult>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    /// Starts probing `target` (each request waits at most `timeout`).
    pub fn start(target: &ApiTarget, every: Duration, timeout: Duration) -> anyhow::Result<Self> {
        let client = target.client(timeout)?;
        let url = format!("{}/version", target.server.trim_end_matches('/'));
        let stop = Arc::new(AtomicBool::new(false));
        let results: Arc<Mutex<Vec<ProbeResult>>> = Arc::default();
        let (stop_in, into) = (stop.clone(), results.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop_in.load(Ordering::Relaxed) {
                tick.tick().await;
                let r = probe(&client, &url).await;
                into.lock().expect("probe results lock").push(r);
            }
        });
        Ok(Self {
            stop,
            results,
            task,
        })
    }

    /// Stops the loop; every result.
    pub async fn stop(self) -> Vec<ProbeResult> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let results = self.results.lock().expect("probe results lock");
        results.clone()
    }
}

/// One `GET /version` through the VIP.
pub async fn probe_once(target: &ApiTarget, timeout: Duration) -> anyhow::Result<ProbeResult> {
    let client = target.client(timeout)?;
    let url = format!("{}/version", target.server.trim_end_matches('/'));
    Ok(probe(&client, &url).await)
}

async fn probe(client: &reqwest::Client, url: &str) -> ProbeResult {
    let (at, sent) = (Instant::now(), chrono::Utc::now());
    let outcome = match client.get(url).send().await {
        Err(e) => Err(format!("{e:#}")),
        Ok(r) if !r.status().is_success() => Err(format!("HTTP {}", r.status())),
        Ok(r) => {
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match header("x-powernode-instance") {
                Some(instance) => Ok(Answer {
                    instance,
                    generation: header("x-powernode-vip-generation").and_then(|g| g.parse().ok()),
                }),
                None => Err("no x-powernode-instance header".into()),
            }
        }
    };
    ProbeResult {
        at,
        sent,
        took: at.elapsed(),
        outcome,
        retried: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_file_parses() {
        let c = "# grant\n[Interface]\n# PrivateKey = <fill in>\nAddress = fd00:1::9/128\n\n[Peer]\n# gateway\nPublicKey = abc=\nEndpoint = 10.0.0.3:51820\nAllowedIPs = fd00:1::/64, 10.42.0.0/16\nPersistentKeepalive = 25\n";
        let q = QuickConfig::parse(c).expect("parses");
        assert_eq!(q.addresses, vec!["fd00:1::9/128"]);
        assert_eq!(q.peer_key, "abc=");
        assert_eq!(q.endpoint, "10.0.0.3:51820");
        assert_eq!(q.allowed_ips, vec!["fd00:1::/64", "10.42.0.0/16"]);
        assert_eq!(q.keepalive.as_deref(), Some("25"));
        assert!(QuickConfig::parse("[Interface]\nAddress = fd00::1/128\n").is_err());
    }
}
