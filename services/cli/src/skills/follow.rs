//! Following an execution until it finishes: polled through
//! `system_get_skill_execution`, with each running node's live phase from
//! `agent_introspect`. On a terminal the progress view is redrawn in
//! place; elsewhere (a pipe, a log file, a test) each change is one line.

use super::render::{batch_bar, frame, node_line, summary, LivePhases};
use crate::output::{emit, Ctx};
use anyhow::Context;
use powernode_actions::skills::{ExecutionAnswer, SkillExecution, StepStatus};
use powernode_actions::ActionName;
use powernode_client::Api;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often the execution is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Turns successive looks at an execution into output.
pub struct Follower {
    start: Instant,
    status: String,
    nodes: BTreeMap<u32, String>,
    batches: BTreeMap<usize, String>,
    drawn: usize,
}

impl Default for Follower {
    fn default() -> Self {
        Self::new()
    }
}

impl Follower {
    /// A follower with nothing seen yet.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            status: String::new(),
            nodes: BTreeMap::new(),
            batches: BTreeMap::new(),
            drawn: 0,
        }
    }

    /// The lines for what changed since the last look: the execution's
    /// status, each node whose state changed, each batch whose count of
    /// ended steps changed.
    pub fn changes(&mut self, e: &SkillExecution, live: &LivePhases) -> Vec<String> {
        let t = format!("[{:>6.1}s]", self.start.elapsed().as_secs_f64());
        let mut out = Vec::new();
        let status = format!("{}{:?}", e.status.as_str(), e.reason);
        if status != self.status {
            out.push(format!("{t} {}", summary(e)));
            self.status = status;
        }
        for (b, numbers) in e.batches.iter().enumerate() {
            for n in numbers {
                let Some(s) = e.steps.iter().find(|s| s.step == *n) else {
                    continue;
                };
                let text = node_line(s, live);
                let first = !self.nodes.contains_key(n);
                if self.nodes.get(n) != Some(&text) {
                    self.nodes.insert(*n, text.clone());
                    // Pending nodes are listed by the plan already.
                    if !(first && s.status == StepStatus::Pending) {
                        out.push(format!(
                            "{t} batch {}/{} {}",
                            b + 1,
                            e.batches.len(),
                            text.trim_start()
                        ));
                    }
                }
            }
            let bar = batch_bar(e, b);
            let any_ended = numbers.iter().any(|n| {
                e.steps.iter().any(|s| {
                    s.step == *n && !matches!(s.status, StepStatus::Pending | StepStatus::Running)
                })
            });
            if any_ended && self.batches.get(&b) != Some(&bar) {
                out.push(format!("{t} {bar}"));
                self.batches.insert(b, bar);
            }
        }
        out
    }

    /// The progress view, to be written over the previous one on a
    /// terminal (cursor up over what was drawn, clear to the end).
    pub fn redraw(&mut self, e: &SkillExecution, live: &LivePhases) -> String {
        let text = frame(e, live);
        let up = if self.drawn > 0 {
            format!("\x1b[{}A\x1b[J", self.drawn)
        } else {
            String::new()
        };
        self.drawn = text.lines().count();
        format!("{up}{text}")
    }
}

/// `<execution>/<step>/<phase>` → the phase, when it is this execution's
/// step `step`.
pub fn live_phase(upgrading: &str, execution: &str, step: u32) -> Option<String> {
    let mut parts = upgrading.rsplitn(3, '/');
    let phase = parts.next()?;
    let n: u32 = parts.next()?.parse().ok()?;
    let exec = parts.next()?;
    (exec == execution && n == step).then(|| phase.to_string())
}

/// The live phase of each running step, asked of its agent
/// (`agent_introspect`); an agent that cannot say is left out.
pub async fn live_phases(api: &Api, e: &SkillExecution) -> LivePhases {
    let mut live = LivePhases::new();
    for s in e.steps.iter().filter(|s| s.status == StepStatus::Running) {
        let Ok(a) = api
            .call(
                ActionName::AgentIntrospect.as_str(),
                &json!({ "agent_id": s.instance_id }),
            )
            .await
        else {
            continue;
        };
        if let Some(phase) = a["node"]["upgrading"]
            .as_str()
            .and_then(|u| live_phase(u, &e.id, s.step))
        {
            live.insert(s.step, phase);
        }
    }
    live
}

/// The execution as it is now.
pub async fn get(api: &Api, id: &str) -> anyhow::Result<SkillExecution> {
    let data = api
        .call(
            ActionName::GetSkillExecution.as_str(),
            &json!({ "execution_id": id }),
        )
        .await?;
    let a: ExecutionAnswer = serde_json::from_value(data)
        .context("system_get_skill_execution answered something unexpected")?;
    Ok(a.execution)
}

/// Follows execution `id` until it completes or is aborted, drawing its
/// progress unless `quiet`; answers the finished execution. Ctrl-C stops
/// following (the execution goes on) with an error that says so.
pub async fn follow(ctx: &Ctx, id: &str, quiet: bool) -> anyhow::Result<SkillExecution> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut f = Follower::new();
    let watch = async {
        loop {
            let e = get(&ctx.api, id).await?;
            let done = e.status.is_finished();
            if !quiet {
                let live = if done {
                    LivePhases::new()
                } else {
                    live_phases(&ctx.api, &e).await
                };
                if tty {
                    emit(&f.redraw(&e, &live));
                } else {
                    for l in f.changes(&e, &live) {
                        emit(&format!("{l}\n"));
                    }
                }
            }
            if done {
                return anyhow::Ok(e);
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::select! {
        e = watch => e,
        _ = tokio::signal::ctrl_c() => anyhow::bail!(
            "stopped following execution {id}; it goes on (follow it again with `powernode skills get {id} --follow`, stop it with `powernode skills pause|cancel {id}`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skills::tests::{execution, set};
    use powernode_actions::skills::ExecutionStatus;

    #[test]
    fn live_phases_belong_to_their_execution_and_step() {
        assert_eq!(
            live_phase("exec-1/2/drain", "exec-1", 2).as_deref(),
            Some("drain")
        );
        assert_eq!(live_phase("exec-1/3/drain", "exec-1", 2), None);
        assert_eq!(live_phase("exec-2/2/drain", "exec-1", 2), None);
        assert_eq!(live_phase("garbage", "exec-1", 2), None);
    }

    #[test]
    fn changes_are_one_line_each_and_only_once() {
        let mut f = Follower::new();
        let mut e = execution();
        let none = LivePhases::new();
        let first = f.changes(&e, &none);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].contains("running"), "{first:?}");
        assert!(f.changes(&e, &none).is_empty());

        set(&mut e, 0, StepStatus::Running);
        let live: LivePhases = [(0, "drain".to_string())].into();
        let lines = f.changes(&e, &live);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("batch 1/2 ▶ w-0") && lines[0].ends_with("running: drain"),
            "{lines:?}"
        );

        set(&mut e, 0, StepStatus::Succeeded);
        e.succeeded = 1;
        let lines = f.changes(&e, &none);
        assert!(lines.iter().any(|l| l.contains("✓ w-0")), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("batch 1/2 [") && l.contains("1/2 done")),
            "{lines:?}"
        );

        e.status = ExecutionStatus::Aborted;
        e.reason = Some("max_consecutive_failures: w-1 failed".into());
        let lines = f.changes(&e, &none);
        assert!(
            lines[0].contains("aborted") && lines[0].contains("w-1 failed"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_redraw_goes_back_over_the_last_frame() {
        let mut f = Follower::new();
        let e = execution();
        let one = f.redraw(&e, &LivePhases::new());
        assert!(!one.starts_with('\x1b'));
        let lines = one.lines().count();
        let two = f.redraw(&e, &LivePhases::new());
        assert!(two.starts_with(&format!("\x1b[{lines}A\x1b[J")), "{two:?}");
    }
}
