//! For the event-tail tests: the API as a `powernode serve api` process
//! that can be killed and started again on the same port, a `powernode
//! events tail -o json` process whose lines are collected as they come,
//! and events appended straight to the log (faster than actions, so
//! appends really race the tail).

use crate::bins::powernode_bin;
use crate::cli_support::{admin_token, free_port, powernode};
use anyhow::{bail, Context};
use powernode_events::payloads::fleet::TemplateCreated;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::{EventLog, Expect, LogError};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The account of the bootstrap admin token.
pub fn system_account() -> AccountId {
    AccountId::new("system").expect("literal is a valid account id")
}

/// A `system.template.created` event in `account` (kind prefix `system.template`).
pub fn template_event(account: &AccountId, name: &str) -> Envelope {
    Envelope::new(
        account.clone(),
        Actor::service("tail-test"),
        TemplateCreated {
            template_id: format!("tmpl-{}", uuid::Uuid::now_v7().simple()),
            name: name.to_string(),
        },
    )
}

/// Appends `ev`, retrying while the log is unavailable (a nats-server
/// restart) until `deadline`; the sequence it was stored at.
pub async fn append_retrying(
    log: &dyn EventLog,
    ev: &Envelope,
    deadline: Instant,
) -> Result<u64, LogError> {
    loop {
        match log.append(ev, Expect::Any).await {
            Ok(a) => return Ok(a.seq),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `powernode serve api --nats URL` on a fixed port; killed on drop.
pub struct ApiProcess {
    child: Option<Child>,
    /// The API's port (kept across restarts).
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The admin token.
    pub token: String,
    nats_url: String,
    data_dir: PathBuf,
    log: PathBuf,
}

impl ApiProcess {
    /// Starts the API on `nats_url` with its state in `data_dir`.
    pub async fn start(nats_url: &str, data_dir: &Path) -> anyhow::Result<Self> {
        let port = free_port();
        let mut api = Self {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            nats_url: nats_url.to_string(),
            data_dir: data_dir.to_path_buf(),
            log: data_dir.join("api.log"),
        };
        api.spawn()?;
        api.token = admin_token(port, data_dir).await?;
        Ok(api)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = powernode(&powernode_bin()?)
            .args(["serve", "api", "--insecure-http", "--nats", &self.nats_url])
            .envs(crate::nats::child_env(&self.nats_url))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start powernode serve api")?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the process (like a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()?;
        admin_token(self.port, &self.data_dir).await?;
        Ok(())
    }

    /// The last `n` lines of its output.
    pub fn log_tail(&self, n: usize) -> String {
        tail_lines(&self.log, n)
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `powernode events tail … -o json`, its stdout parsed line
/// by line as it comes; killed on drop.
pub struct TailProcess {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: PathBuf,
}

impl TailProcess {
    /// `powernode events tail <args> -o json --url <api.url> --token <api.token>`.
    pub fn spawn(api: &ApiProcess, args: &[&str], dir: &Path) -> anyhow::Result<Self> {
        let stderr = dir.join(format!("tail-{}.err", uuid::Uuid::now_v7().simple()));
        let mut child = powernode(&powernode_bin()?)
            .args(["events", "tail"])
            .args(args)
            .args(["-o", "json", "--url", &api.url, "--token", &api.token])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("cannot start powernode events tail")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| Value::String(format!("not JSON: {line}")));
                sink.lock().expect("tail lines lock").push(v);
            }
        });
        Ok(Self {
            child,
            lines,
            stderr,
        })
    }

    /// Everything printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.lines.lock().expect("tail lines lock").clone()
    }

    /// The `seq` of every line printed so far (0 for a line without one).
    pub fn seqs(&self) -> Vec<u64> {
        self.events()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap_or(0))
            .collect()
    }

    /// Waits until a line with `seq >= at_least` was printed.
    pub async fn wait_for_seq(&mut self, at_least: u64, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.seqs().iter().any(|&s| s >= at_least) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("tail exited ({status}): {}", self.stderr());
            }
            if start.elapsed() > timeout {
                bail!(
                    "tail printed no seq >= {at_least} within {timeout:?}; last seqs {:?}; stderr: {}",
                    last_n(&self.seqs(), 10),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What it wrote on stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for TailProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks that `got` is exactly `want` (both ascending), naming the first
/// gaps and duplicates when not.
pub fn exactly(got: &[u64], want: &[u64]) -> anyhow::Result<()> {
    if got == want {
        return Ok(());
    }
    let dups: Vec<u64> = got
        .windows(2)
        .filter(|w| w[1] <= w[0])
        .map(|w| w[1])
        .collect();
    let missing: Vec<u64> = want.iter().filter(|s| !got.contains(s)).copied().collect();
    let extra: Vec<u64> = got.iter().filter(|s| !want.contains(s)).copied().collect();
    bail!(
        "got {} seqs for {} expected: out of order or repeated {:?}, missing {:?}, unexpected {:?}",
        got.len(),
        want.len(),
        last_n(&dups, 20),
        last_n(&missing, 20),
        last_n(&extra, 20)
    )
}

fn last_n(v: &[u64], n: usize) -> Vec<u64> {
    v[v.len().saturating_sub(n)..].to_vec()
}

/// The last `n` lines of a file.
fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}
