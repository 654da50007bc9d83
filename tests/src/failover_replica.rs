//! A second replica of a service as its own process — `powernode serve
//! <service> --nats URL --data-dir DIR --replica NAME` with the failover
//! flags — and what JetStream says about the durable cursors replicas read
//! the log with.

use crate::bins::powernode_bin;
use crate::lifecycle_support::{wait_until, WAIT};
use anyhow::Context as _;
use powernode_log::jetstream::{durable_name, DEFAULT_STREAM};
use powernode_server::services::failover::{FailoverConfig, FailoverPolicy};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `powernode up` / `serve` flags that select `config`.
pub fn failover_flags(config: &FailoverConfig) -> Vec<String> {
    let policy = match config.policy {
        FailoverPolicy::Auto => "auto",
        FailoverPolicy::RequireApproval => "require-approval",
    };
    let mut flags = vec![
        format!("--silence-threshold-ms={}", config.silence_threshold_ms),
        format!("--failover-policy={policy}"),
        format!("--approval-ttl-secs={}", config.approval_ttl_secs),
        format!("--failover-cooldown-secs={}", config.cooldown_secs),
        format!("--max-promotions={}", config.max_promotions),
        format!("--promotion-window-secs={}", config.window_secs),
    ];
    if let Some(o) = &config.observer {
        flags.push(format!("--observer={o}"));
    }
    flags
}

/// A running `powernode serve`; killed on drop.
pub struct ServeProcess {
    child: Option<Child>,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// The durable cursor it reads the log with.
    pub durable: String,
}

impl ServeProcess {
    /// Starts `powernode serve <service> --nats <nats_url> --data-dir
    /// <data_dir> --replica <replica> --listen 127.0.0.1:0` with `config`'s
    /// flags.
    pub fn spawn(
        nats_url: &str,
        service: &str,
        replica: &str,
        data_dir: &Path,
        config: &FailoverConfig,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join("serve.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(powernode_bin()?)
            .args([
                "serve",
                service,
                "--insecure-http",
                "--nats",
                nats_url,
                "--replica",
                replica,
            ])
            .envs(crate::nats::child_env(nats_url))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(failover_flags(config))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start powernode serve")?;
        Ok(Self {
            child: Some(child),
            log,
            durable: durable_name(&format!("{service}-{replica}")),
        })
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until its output has a line containing `text`.
    pub async fn wait_output(&self, text: &str) -> anyhow::Result<()> {
        wait_until(
            WAIT,
            &format!("{text:?} in {}", self.log.display()),
            || async move {
                let out = std::fs::read_to_string(&self.log).unwrap_or_default();
                if out.contains(text) {
                    Ok(())
                } else {
                    Err(self.log_tail(5))
                }
            },
        )
        .await
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What JetStream reports about one durable cursor.
#[derive(Debug, Clone, Copy)]
pub struct CursorInfo {
    /// Stream sequence of the last record delivered.
    pub delivered: u64,
    /// Records matching its filter not delivered yet.
    pub pending: u64,
}

/// The durable cursors on the event stream, by name.
pub async fn durables(nats_url: &str) -> anyhow::Result<Vec<String>> {
    use futures::TryStreamExt as _;
    let js = async_nats::jetstream::new(crate::nats::connect(nats_url).await?);
    let stream = js.get_stream(DEFAULT_STREAM).await?;
    let mut names: Vec<String> = stream.consumer_names().try_collect().await?;
    names.sort();
    Ok(names)
}

/// The state of the durable cursor `durable`, if it exists.
pub async fn cursor(nats_url: &str, durable: &str) -> anyhow::Result<Option<CursorInfo>> {
    let js = async_nats::jetstream::new(crate::nats::connect(nats_url).await?);
    let stream = js.get_stream(DEFAULT_STREAM).await?;
    Ok(match stream.consumer_info(durable).await {
        Ok(info) => Some(CursorInfo {
            delivered: info.delivered.stream_sequence,
            pending: info.num_pending,
        }),
        Err(_) => None,
    })
}

/// Waits until the cursor `durable` has been handed everything through
/// `seq` (and nothing matching is pending).
pub async fn wait_cursor_past(nats_url: &str, durable: &str, seq: u64) -> anyhow::Result<()> {
    wait_until(
        WAIT,
        &format!("durable cursor {durable} delivered through seq {seq}"),
        || async move {
            match cursor(nats_url, durable).await {
                Ok(Some(c)) if c.delivered >= seq && c.pending == 0 => Ok(()),
                Ok(c) => Err(format!("{c:?}")),
                Err(e) => Err(format!("{e:#}")),
            }
        },
    )
    .await
}
