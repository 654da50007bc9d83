//! `powernode events export`, `events import` and `replay --hash` as an
//! operator runs them (the real binary, off the test's async workers), the
//! records of a log to compare, and damaged copies of an export.

use crate::bins::powernode_bin;
use crate::cli_support::{powernode, text};
use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use powernode_archive::Reader;
use powernode_log::embedded::EmbeddedLog;
use powernode_log::{Filter, SharedLog};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

/// A record as compared across logs: sequence, subject, bytes.
pub type Stored = (u64, String, Bytes);

/// The `powernode` binary with a clean environment plus `env`.
pub struct Cli {
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Cli {
    /// Builds the binary if needed.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            bin: powernode_bin()?,
            env: Vec::new(),
        })
    }

    /// The same binary with `key=value` in its environment.
    pub fn with_env(&self, key: &str, value: &str) -> Self {
        let mut env = self.env.clone();
        env.push((key.to_string(), value.to_string()));
        Self {
            bin: self.bin.clone(),
            env,
        }
    }

    /// Runs `powernode <args>`.
    pub async fn output(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = powernode(&self.bin);
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .envs(crate::nats::child_env_for_args(args));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
    }

    /// Runs `powernode <args>`, which must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.output(args).await?;
        if !out.status.success() {
            bail!(
                "powernode {} failed ({})\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        Ok(text(&out.stdout))
    }

    /// [`ok`](Self::ok) with `-o json`, parsed.
    pub async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ok(&all).await?;
        serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))
    }

    /// Runs `powernode <args>`, which must fail; its stderr.
    pub async fn refused(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.output(args).await?;
        ensure!(
            !out.status.success(),
            "powernode {} succeeded\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        Ok(text(&out.stderr))
    }

    /// `powernode replay <source…> --hash -o json`: `(state_hash, seq)`.
    pub async fn state_hash(&self, source: &[&str]) -> anyhow::Result<(String, u64)> {
        let mut args = vec!["replay"];
        args.extend(source);
        args.push("--hash");
        let h = self.json(&args).await?;
        Ok((
            h["state_hash"]
                .as_str()
                .with_context(|| format!("no state_hash in {h}"))?
                .to_string(),
            h["seq"]
                .as_u64()
                .with_context(|| format!("no seq in {h}"))?,
        ))
    }
}

/// Every record of `log` through `until` (all of them when `None`).
pub async fn log_records(log: &SharedLog, until: Option<u64>) -> anyhow::Result<Vec<Stored>> {
    let last = match until {
        Some(u) => u,
        None => log.last_seq().await?,
    };
    let mut out = Vec::new();
    let mut next = 1;
    while next <= last {
        let page = log.read(next, 1000, &Filter::all()).await?;
        let Some(tail) = page.last() else { break };
        next = tail.seq + 1;
        out.extend(
            page.into_iter()
                .filter(|r| r.seq <= last)
                .map(|r| (r.seq, r.subject, r.bytes)),
        );
    }
    Ok(out)
}

/// Every record of the embedded log in `<data_dir>/log` (closed again
/// before returning, so a process may open it next).
pub async fn embedded_records(data_dir: &Path) -> anyhow::Result<Vec<Stored>> {
    let log: SharedLog = Arc::new(EmbeddedLog::open(&data_dir.join("log"))?);
    log_records(&log, None).await
}

/// Every record of an export held in memory, as stored.
pub fn export_records(bytes: &[u8]) -> anyhow::Result<Vec<powernode_log::Record>> {
    Ok(Reader::new(bytes)?.collect::<Result<Vec<_>, _>>()?)
}

/// Byte offsets where each record frame of an export starts, and where the
/// trailer starts (the last element).
pub fn frame_offsets(bytes: &[u8]) -> anyhow::Result<Vec<u64>> {
    let mut reader = Reader::new(bytes)?;
    let mut out = vec![reader.offset()];
    loop {
        let Some(r) = reader.next() else { break };
        r?;
        out.push(reader.offset());
    }
    Ok(out)
}

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
