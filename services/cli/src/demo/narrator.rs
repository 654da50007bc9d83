//! The demo's voice: numbered steps, indented details, the events each step
//! caused, and waits with progress and a deadline.

use crate::events::{brief_summary, seq, since};
use anyhow::bail;
use powernode_actions::ActionName;
use powernode_client::Api;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

/// Prints a line; a closed stdout does not stop the demo (it still cleans up).
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Prints multi-line text as is (tables carry their own indent).
pub fn say_block(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{text}");
    let _ = out.flush();
}

/// Numbers the steps and shows what each step appended to the log.
pub struct Narrator {
    /// The operator's API client (the demo account).
    pub api: Api,
    /// How long a wait may take.
    pub timeout: Duration,
    step: usize,
    title: String,
    last_seq: u64,
}

impl Narrator {
    /// A narrator that shows events after `last_seq`.
    pub fn new(api: Api, timeout: Duration) -> Self {
        Self {
            api,
            timeout,
            step: 0,
            title: String::new(),
            last_seq: 0,
        }
    }

    /// Starts step N: `[N] <phase> — <what>`.
    pub fn step(&mut self, phase: &str, what: &str) {
        self.step += 1;
        self.title = format!("step {} ({phase})", self.step);
        say("");
        say(&format!("[{}] {phase} — {what}", self.step));
    }

    /// The current step, for error messages.
    pub fn current(&self) -> &str {
        &self.title
    }

    /// An indented detail line.
    pub fn info(&self, text: &str) {
        say(&format!("    {text}"));
    }

    /// Prints the events appended since the last call (one line per kind,
    /// aggregate and summary, repeats counted) and returns them.
    pub async fn events(&mut self) -> anyhow::Result<Vec<Value>> {
        let (events, truncated) = since(&self.api, "", self.last_seq).await?;
        if let Some(max) = events.iter().map(seq).max() {
            self.last_seq = max;
        }
        let mut lines: Vec<(String, usize)> = Vec::new();
        for e in &events {
            let text = format!(
                "{} {} {}",
                e["kind"].as_str().unwrap_or("?"),
                e["aggregate"]["id"].as_str().unwrap_or("?"),
                brief_summary(e)
            );
            let text = text.trim_end().to_string();
            match lines.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => *n += 1,
                None => lines.push((text, 1)),
            }
        }
        if truncated {
            say("  → (older events of this step skipped)");
        }
        for (text, n) in lines {
            if n > 1 {
                say(&format!("  → {text}  (×{n})"));
            } else {
                say(&format!("  → {text}"));
            }
        }
        Ok(events)
    }

    /// Calls an action, naming the step on failure.
    pub async fn call(&self, action: &str, args: Value) -> anyhow::Result<Value> {
        self.api
            .call(action, &args)
            .await
            .map_err(|e| anyhow::Error::from(e).context(format!("{}: {action} failed", self.title)))
    }

    /// Starts a wait for `what`.
    pub fn wait(&self, what: &str) -> Waiter {
        self.info(&format!("waiting for {what} …"));
        Waiter {
            what: what.to_string(),
            step: self.title.clone(),
            start: Instant::now(),
            timeout: self.timeout,
            last: String::new(),
        }
    }

    /// The cluster `bootstrap_instance` created, if any.
    pub async fn cluster_of(&self, bootstrap_instance: &str) -> anyhow::Result<Option<Value>> {
        let data = self
            .call(
                ActionName::ListClusters.as_str(),
                json!({ "include_decommissioned": true }),
            )
            .await?;
        Ok(data["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["bootstrap_instance_id"] == bootstrap_instance)
            .cloned())
    }
}

/// A poll loop with progress lines (one per new state) and a deadline.
pub struct Waiter {
    what: String,
    step: String,
    start: Instant,
    timeout: Duration,
    last: String,
}

impl Waiter {
    /// Records the state just seen; fails once the deadline has passed,
    /// otherwise sleeps a little before the next look.
    pub async fn pending(&mut self, state: &str) -> anyhow::Result<()> {
        let elapsed = self.start.elapsed();
        if state != self.last {
            say(&format!("      … {state} ({:.1}s)", elapsed.as_secs_f64()));
            self.last = state.to_string();
        }
        if elapsed > self.timeout {
            bail!(
                "{}: timed out after {:?} waiting for {}; last seen: {state}",
                self.step,
                self.timeout,
                self.what
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok(())
    }

    /// Reports success.
    pub fn done(&self, text: &str) {
        say(&format!(
            "    ✓ {text} (after {:.1}s)",
            self.start.elapsed().as_secs_f64()
        ));
    }
}
