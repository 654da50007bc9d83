//! Real `powernode-agent` processes for the lifecycle tests, and watching
//! the requests on a NATS subject.

use super::*;
use anyhow::{anyhow, Context as _};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};

/// The requests seen on one NATS subject.
pub struct Watch {
    seen: Arc<std::sync::Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Subscribes to `subject` on `nats_url`; returns once subscribed.
    pub async fn start(nats_url: &str, subject: &str) -> anyhow::Result<Self> {
        use futures::StreamExt as _;
        let client = crate::nats::connect(nats_url).await?;
        let mut sub = client.subscribe(subject.to_string()).await?;
        client.flush().await?;
        let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
        let into = seen.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(msg) = sub.next().await {
                let v = serde_json::from_slice(&msg.payload).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&msg.payload).into())
                });
                into.lock().expect("watch lock").push(v);
            }
        });
        Ok(Self { seen, task })
    }

    /// How many requests matched `pred`.
    pub fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.seen
            .lock()
            .expect("watch lock")
            .iter()
            .filter(|v| pred(v))
            .count()
    }

    /// Every request seen so far.
    pub fn all(&self) -> Vec<Value> {
        self.seen.lock().expect("watch lock").clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A running `powernode-agent`; killed on drop.
pub struct AgentProcess {
    child: Option<Child>,
    /// Its state dir.
    pub state_dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Its heartbeat interval (milliseconds; `None`: the binary's
    /// default), kept across restarts.
    pub heartbeat_ms: Option<u64>,
    /// More arguments (`--node-upgrade-ms`, `--k3s-api-listen`, …), kept
    /// across restarts.
    pub extra_args: Vec<String>,
}

impl AgentProcess {
    /// Starts `powernode-agent --nats URL [--enroll C] --runtime simulated
    /// --state-dir DIR --heartbeat-ms HEARTBEAT_MS`.
    pub fn spawn(
        nats_url: &str,
        credential: Option<&str>,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_with(nats_url, credential, state_dir, Some(HEARTBEAT_MS))
    }

    /// [`spawn`](Self::spawn) with a heartbeat interval of `heartbeat_ms`
    /// (`None`: no `--heartbeat-ms`, the binary's default).
    pub fn spawn_with(
        nats_url: &str,
        credential: Option<&str>,
        state_dir: &Path,
        heartbeat_ms: Option<u64>,
    ) -> anyhow::Result<Self> {
        Self::spawn_with_args(nats_url, credential, state_dir, heartbeat_ms, &[])
    }

    /// [`spawn_with`](Self::spawn_with) passing `extra_args` too (kept for
    /// [`restart`](Self::restart)).
    pub fn spawn_with_args(
        nats_url: &str,
        credential: Option<&str>,
        state_dir: &Path,
        heartbeat_ms: Option<u64>,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let log = state_dir.with_extension("log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(agent_bin()?);
        cmd.args(["--nats", nats_url, "--runtime", "simulated", "--state-dir"])
            .arg(state_dir)
            .env("RUST_LOG", "info")
            .env_remove("POWERNODE_ENROLL")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(c) = credential {
            cmd.args(["--enroll", c]);
        }
        if let Some(ms) = heartbeat_ms {
            cmd.args(["--heartbeat-ms", &ms.to_string()]);
        }
        cmd.args(extra_args);
        let child = cmd.spawn().context("cannot start powernode-agent")?;
        Ok(Self {
            child: Some(child),
            state_dir: state_dir.to_path_buf(),
            log,
            heartbeat_ms,
            extra_args: extra_args.to_vec(),
        })
    }

    /// Restarts the agent with the same state dir, passing `credential`
    /// again or not (an enrolled agent does not need it).
    pub fn restart(&mut self, nats_url: &str, credential: Option<&str>) -> anyhow::Result<()> {
        self.kill();
        let again = Self::spawn_with_args(
            nats_url,
            credential,
            &self.state_dir,
            self.heartbeat_ms,
            &self.extra_args,
        )?;
        *self = again;
        Ok(())
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The persisted `state.json`.
    pub fn state(&self) -> anyhow::Result<Value> {
        let path = self.state_dir.join("state.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Waits until its persisted phase is `phase` (`ready`, `joined`, …); the state.
    pub async fn wait_phase(&self, phase: &str) -> anyhow::Result<Value> {
        wait_until(
            WAIT,
            &format!(
                "agent in {} to persist phase {phase}",
                self.state_dir.display()
            ),
            || async move {
                let state = self.state().map_err(|e| format!("{e:#}"))?;
                if state["phase"] == phase {
                    Ok(state)
                } else {
                    Err(format!(
                        "phase {}, last rejection {}",
                        state["phase"], state["last_rejection"]
                    ))
                }
            },
        )
        .await
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds `powernode-agent` once per test process (as `binary.rs` builds
/// `powernode`) and returns its path; `POWERNODE_AGENT_BIN=<path>` uses that
/// binary instead (no build).
pub fn agent_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("POWERNODE_AGENT_BIN") {
            return Ok(PathBuf::from(path));
        }
        let status = crate::bins::cargo_build("powernode-agent", "powernode-agent")
            .status()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build of powernode-agent failed".into());
        }
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        Ok(target.join("debug/powernode-agent"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}
