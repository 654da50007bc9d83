//! `powernode replay` as an operator runs it (the real binary, off the
//! test's async workers), and comparisons of what it prints with what the
//! live API answers.

use crate::export_support::Cli;
use anyhow::{bail, ensure, Context as _};
use serde_json::Value;

/// `powernode replay --nats <url> …`.
pub struct ReplayCli {
    cli: Cli,
    nats: String,
}

impl ReplayCli {
    /// Builds the binary if needed; replays the JetStream log at `nats`.
    pub fn new(nats: &str) -> anyhow::Result<Self> {
        Ok(Self {
            cli: Cli::new()?,
            nats: nats.to_string(),
        })
    }

    /// Runs `powernode replay --nats <url> <args>`; its stdout, or an error
    /// with both streams when it fails.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["replay", "--nats", self.nats.as_str()];
        all.extend(args);
        self.cli.ok(&all).await
    }

    /// [`run`](Self::run) with `-o json`, parsed.
    pub async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = vec!["replay", "--nats", self.nats.as_str()];
        all.extend(args);
        self.cli.json(&all).await
    }

    /// `--hash -o json` through `until`: `(state_hash, seq)`.
    pub async fn hash(&self, until: &str, extra: &[&str]) -> anyhow::Result<(String, u64)> {
        let mut args = vec!["--until", until, "--hash"];
        args.extend(extra);
        let h = self.json(&args).await?;
        Ok((
            h["state_hash"].as_str().context("state_hash")?.to_string(),
            h["seq"].as_u64().context("seq")?,
        ))
    }
}

/// Every field of `replayed` that `live` also has is equal in both, and
/// there are at least `min_shared` such fields (`what` names the object).
pub fn agrees(what: &str, replayed: &Value, live: &Value, min_shared: usize) -> anyhow::Result<()> {
    let (Some(r), Some(l)) = (replayed.as_object(), live.as_object()) else {
        bail!("{what}: not objects: replayed {replayed}, live {live}");
    };
    let mut shared = 0;
    for (k, v) in r {
        if let Some(lv) = l.get(k) {
            ensure!(
                v == lv,
                "{what}: field {k} is {v} in the replay but {lv} live\nreplayed: {replayed}\nlive: {live}"
            );
            shared += 1;
        }
    }
    ensure!(
        shared >= min_shared,
        "{what}: only {shared} fields in common\nreplayed: {replayed}\nlive: {live}"
    );
    Ok(())
}

/// The ids (keys) of a JSON map, sorted.
pub fn ids(map: &Value) -> Vec<String> {
    map.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}
