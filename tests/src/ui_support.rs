//! The dashboard's browser test (issue 18): a `powernode up
//! --simulate-agents` over https with an account, its operator token and
//! K3s clusters built through the API; an export of its log served by
//! `powernode ui --file`; and the Selenium script
//! (`tests/python/ui_browser.py`, headless Debian chromium) run against
//! both, its JSON report read back.

use crate::bins::powernode_bin;
use crate::cli_support::{free_port, powernode, text, Running};
use crate::tls_support::Up;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a holder may stay unheard before the sensor finds it silent
/// (short: the failover check waits for it).
pub const SILENCE_MS: u64 = 1500;

/// A platform for the dashboard: the node, its admin, an account and its
/// operator token.
pub struct UiPlatform {
    /// Keeps the data dir until the end of the test.
    pub dir: tempfile::TempDir,
    /// The node.
    pub up: Up,
    /// The API as the account's operator.
    pub api: powernode_client::Api,
    /// The API as the bootstrap admin.
    pub admin: powernode_client::Api,
    /// The account's id.
    pub account: String,
    /// The account's operator token (may provision, decommission, download
    /// kubeconfigs and fail over).
    pub token: String,
}

/// The permissions of the test's operator token: everything an operator
/// does from the dashboard.
pub const PERMISSIONS: &[&str] = &[
    "system.kubernetes_provision",
    "system.kubernetes_decommission",
    "system.kubernetes_kubeconfig",
    "system.sdwan_failover",
];

impl UiPlatform {
    /// Starts `powernode up --simulate-agents` over https (its own CA),
    /// with an account `ui` and its operator token.
    pub async fn start() -> anyhow::Result<UiPlatform> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let port = free_port();
        let silence = SILENCE_MS.to_string();
        let up = Up::start(
            &data,
            port,
            &[
                "--simulate-agents",
                "--heartbeat-ms",
                "200",
                "--silence-threshold-ms",
                &silence,
            ],
        )
        .await?;
        let admin_token = std::fs::read_to_string(data.join("admin.token"))?;
        let admin = api(&up, admin_token.trim())?;
        let account = admin
            .call("system_create_account", &json!({ "name": "ui" }))
            .await?["account"]["id"]
            .as_str()
            .context("no account id")?
            .to_string();
        let t = admin
            .call(
                "system_create_operator_token",
                &json!({ "account_id": account, "permissions": PERMISSIONS }),
            )
            .await?;
        let token = t["token"].as_str().context("no token")?.to_string();
        Ok(UiPlatform {
            api: api(&up, &token)?,
            admin,
            dir,
            up,
            account,
            token,
        })
    }

    /// Runs action `name` as the operator; its `data`.
    pub async fn call(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        self.api
            .call(name, &args)
            .await
            .with_context(|| format!("{name} {args}"))
    }

    /// An operator token of the account that expires in `ttl_secs`; the
    /// token and its `expires_at`.
    pub async fn expiring_token(&self, ttl_secs: u64) -> anyhow::Result<(String, String)> {
        let t = self
            .admin
            .call(
                "system_create_operator_token",
                &json!({ "account_id": self.account, "permissions": PERMISSIONS, "ttl_secs": ttl_secs }),
            )
            .await?;
        Ok((
            t["token"].as_str().context("no token")?.to_string(),
            t["expires_at"]
                .as_str()
                .context("no expires_at")?
                .to_string(),
        ))
    }

    /// The log's head: every event up to this sequence is written.
    pub async fn head(&self) -> anyhow::Result<u64> {
        let a = self.call("recent_events", json!({ "limit": 1 })).await?;
        a["through"].as_u64().context("no through")
    }

    /// A template, node, instance and SD-WAN peer on `network`, with
    /// `k3s-server` assigned (joining `target` when given); the instance id.
    pub async fn server(
        &self,
        network: &str,
        hostname: &str,
        target: Option<&str>,
    ) -> anyhow::Result<String> {
        let tmpl = self
            .call("system_create_template", json!({ "name": hostname }))
            .await?;
        let node = self
            .call(
                "system_create_node",
                json!({"hostname": hostname, "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
            )
            .await?;
        let inst = self
            .call(
                "system_provision_instance",
                json!({ "node_id": node["node"]["id"] }),
            )
            .await?;
        self.call(
            "system_sdwan_attach_peer",
            json!({ "network_id": network, "node_instance_id": inst["id"] }),
        )
        .await?;
        let mut assign =
            json!({ "template_id": tmpl["template"]["id"], "module_name": "k3s-server" });
        if let Some(c) = target {
            assign["config"] = json!({ "target_cluster_id": c });
        }
        self.call("system_assign_module_to_template", assign)
            .await?;
        Ok(inst["id"].as_str().context("no instance id")?.to_string())
    }

    /// A network called `name`; its id.
    pub async fn network(&self, name: &str) -> anyhow::Result<String> {
        let net = self
            .call("system_sdwan_create_network", json!({ "name": name }))
            .await?;
        Ok(net["network"]["id"]
            .as_str()
            .context("no network id")?
            .to_string())
    }

    /// The cluster on `network` once it is active; its id.
    pub async fn active_cluster(&self, network: &str) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            let list = self.call("kubernetes_list_clusters", json!({})).await?;
            if let Some(c) = list["clusters"].as_array().and_then(|a| {
                a.iter()
                    .find(|c| c["status"] == "active" && c["network_id"] == network)
            }) {
                return Ok(c["id"].as_str().context("no cluster id")?.to_string());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("no active cluster on {network} within 60 s: {list}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The VIP of `cluster` once `check` holds on it.
    pub async fn vip_until(
        &self,
        cluster: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            let a = self
                .api
                .call(
                    "system_sdwan_get_virtual_ip",
                    &json!({ "cluster_id": cluster }),
                )
                .await;
            if let Ok(a) = &a {
                if check(&a["virtual_ip"]) {
                    return Ok(a["virtual_ip"].clone());
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("{what}: not within 60 s: {a:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `powernode events export --api` of the whole log (as the admin) to
    /// `<dir>/export.pnx`; its path.
    pub async fn export(&self) -> anyhow::Result<PathBuf> {
        let file = self.dir.path().join("export.pnx");
        let mut cmd = powernode(&powernode_bin()?);
        cmd.env("POWERNODE_URL", self.up.url())
            .env("POWERNODE_TOKEN", self.admin.token())
            .env("POWERNODE_CA_CERT", self.up.ca())
            .args(["events", "export", "--api", "--force", "--out"])
            .arg(&file);
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        if !out.status.success() {
            bail!(
                "events export failed:\n{}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        Ok(file)
    }
}

/// The API at `up` with `token`, trusting the data dir's CA.
fn api(up: &Up, token: &str) -> anyhow::Result<powernode_client::Api> {
    let config = powernode_client::ClientConfig::new(up.url(), token).with_ca_cert(up.ca());
    Ok(powernode_client::Api::from_config(&config)?)
}

/// `powernode ui --file <export> --listen 127.0.0.1:<port>`: the
/// read-only dashboard over an export file.
pub struct Offline {
    /// The child (killed on drop).
    pub child: Running,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Offline {
    /// Starts it and waits until `/ui/fleet` answers (a page or a redirect).
    pub async fn start(file: &Path) -> anyhow::Result<Offline> {
        let port = free_port();
        let log = file.with_extension("ui.log");
        let out = std::fs::File::create(&log)?;
        let child = Running(
            powernode(&powernode_bin()?)
                .args(["ui", "--file"])
                .arg(file)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()?,
        );
        let offline = Offline {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let start = Instant::now();
        loop {
            if status_of(port, "/ui/fleet").await.is_some_and(|s| s < 500) {
                return Ok(offline);
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "powernode ui --file did not serve /ui/fleet within 30 s: {}",
                    std::fs::read_to_string(&offline.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The status of `GET path` on `127.0.0.1:port` (plain http), if it answers.
async fn status_of(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut head = [0u8; 32];
    let n = s.read(&mut head).await.ok()?;
    // `HTTP/1.1 200 OK`
    std::str::from_utf8(&head[..n])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// Where the screenshots go: `$POWERNODE_TEST_OUT/ui-screenshots`, else
/// `target/ui-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    match std::env::var_os("POWERNODE_TEST_OUT") {
        Some(out) => PathBuf::from(out).join("ui-screenshots"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots"),
    }
}

/// Runs `tests/python/ui_browser.py` with `config` (JSON, its first
/// argument); its report (the last line of its stdout), and whether it
/// exited zero. Fails when the script could not run or wrote no report.
pub async fn run_browser(config: Value) -> anyhow::Result<(Value, bool, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/ui_browser.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script)
        .arg(config.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("cannot run python3 (scripts/test installs selenium==4.27.1)")?;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(last).with_context(|| {
        format!(
            "{} wrote no JSON report:\nstdout:\n{stdout}\nstderr:\n{stderr}",
            script.display()
        )
    })?;
    Ok((report, out.status.success(), stderr))
}
