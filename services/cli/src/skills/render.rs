//! How skill executions read: the plan of a dry run, one execution in
//! full, the list, and the progress view `skills run` draws while it
//! follows an execution.

use crate::output::{key_values, printable, Table};
use powernode_actions::skills::{SkillExecution, StepStatus, StepView};
use std::collections::BTreeMap;

/// The phase each running step's agent reports now, by step number.
pub type LivePhases = BTreeMap<u32, String>;

/// Width of a batch's progress bar, in cells.
const BAR: usize = 24;

/// `3 nodes`, `1 node`.
fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

/// An input as text (`-` when absent).
fn input(e: &SkillExecution, key: &str) -> String {
    match e.inputs.get(key) {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// `mod-k3s-server → v-k3s-1.31.0 on template/tmpl-…`, or the skill's
/// scope for other skills.
fn headline(e: &SkillExecution) -> String {
    match e.skill.as_str() {
        "system-rolling-module-upgrade" => format!(
            "{} → {} on {}, batch_pct {}, stops after {} failure(s) in a row",
            input(e, "module_id"),
            input(e, "target_version_id"),
            e.scope,
            input(e, "batch_pct"),
            e.max_consecutive_failures
        ),
        _ => format!(
            "on {}, stops after {} failure(s) in a row",
            e.scope, e.max_consecutive_failures
        ),
    }
}

/// `v-k3s-1.30.5 → v-k3s-1.31.0` (`unpinned` for none).
fn versions(s: &StepView) -> String {
    let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "unpinned".into());
    format!("{} → {}", v(&s.from_version_id), v(&s.to_version_id))
}

/// `vip-1 (10.0.0.1)` list, `-` for none.
fn vip_moves(s: &StepView) -> String {
    if s.vip_moves.is_empty() {
        return "-".into();
    }
    s.vip_moves
        .iter()
        .map(|m| format!("{} ({}) moves first", m.virtual_ip_id, m.vip))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The steps of batch `b`, in plan order.
fn batch_steps(e: &SkillExecution, b: usize) -> Vec<&StepView> {
    let numbers = e.batches.get(b).cloned().unwrap_or_default();
    numbers
        .iter()
        .filter_map(|n| e.steps.iter().find(|s| s.step == *n))
        .collect()
}

/// A dry run's plan: per batch the nodes in order, their versions and the
/// VIPs that move off them first.
pub fn render_plan(e: &SkillExecution) -> String {
    let mut out = format!(
        "Plan of {} ({}): {} in {} batch(es)\n",
        e.skill.as_str(),
        headline(e),
        nodes(e.steps.len()),
        e.batches.len()
    );
    for b in 0..e.batches.len() {
        let steps = batch_steps(e, b);
        out.push_str(&format!(
            "batch {}/{} ({}):\n",
            b + 1,
            e.batches.len(),
            nodes(steps.len())
        ));
        let mut t = Table::new(&[
            "STEP", "NODE", "INSTANCE", "ROLE", "CLUSTER", "ACTION", "VERSIONS", "VIP",
        ]);
        for s in steps {
            t.row(vec![
                s.step.to_string(),
                s.node_name.clone(),
                s.instance_id.clone(),
                s.role.clone(),
                s.cluster_id.clone().unwrap_or_else(|| "-".into()),
                format!("{:?}", s.action).to_lowercase(),
                versions(s),
                vip_moves(s),
            ]);
        }
        out.push_str(&t.render_indented(2, "(empty)"));
    }
    let moves: usize = e.steps.iter().map(|s| s.vip_moves.len()).sum();
    if moves == 0 {
        out.push_str("No VIP moves: no node of the plan holds a VIP.\n");
    } else {
        out.push_str(&format!(
            "{moves} VIP move(s): each holder goes last in its cluster, its VIP drained to an upgraded server first.\n"
        ));
    }
    out
}

/// A step's state as the progress view shows it: the live phase while
/// running, the phases when done, the reason when failed.
pub fn step_state(s: &StepView, live: &LivePhases) -> String {
    match s.status {
        StepStatus::Pending => "pending".into(),
        StepStatus::Skipped => "skipped (execution stopped first)".into(),
        StepStatus::Running => match live.get(&s.step) {
            Some(phase) => format!("running: {phase}"),
            None => "running".into(),
        },
        StepStatus::Succeeded => {
            let phases = phases(s);
            let now = s.to_version_id.clone().unwrap_or_else(|| "-".into());
            if phases.is_empty() {
                format!("succeeded, runs {now}")
            } else {
                format!("succeeded, runs {now} ({phases})")
            }
        }
        StepStatus::Failed => {
            let back = match s.rolled_back {
                Some(true) => format!(
                    "; back in service on {}",
                    s.from_version_id.as_deref().unwrap_or("its old version")
                ),
                Some(false) if s.phases.is_empty() => "; the node was not touched".into(),
                Some(false) => "; NOT rolled back".into(),
                None => String::new(),
            };
            format!(
                "FAILED: {}{back}",
                s.reason.as_deref().unwrap_or("no reason recorded")
            )
        }
    }
}

/// `cordon ✓ drain ✓ upgrade ✗`.
fn phases(s: &StepView) -> String {
    s.phases
        .iter()
        .map(|p| {
            let name = serde_json::to_value(p.phase)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", p.phase));
            format!("{name} {}", if p.ok { "✓" } else { "✗" })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The mark before a node's line.
fn mark(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "·",
        StepStatus::Running => "▶",
        StepStatus::Succeeded => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
    }
}

/// How many steps of a batch have ended (succeeded, failed or skipped).
fn ended(steps: &[&StepView]) -> usize {
    steps
        .iter()
        .filter(|s| {
            matches!(
                s.status,
                StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped
            )
        })
        .count()
}

/// `batch 1/2 [████████░░░░] 1/2 nodes`.
pub fn batch_bar(e: &SkillExecution, b: usize) -> String {
    let steps = batch_steps(e, b);
    let done = ended(&steps);
    let total = steps.len().max(1);
    let filled = done * BAR / total;
    format!(
        "batch {}/{} [{}{}] {done}/{} done",
        b + 1,
        e.batches.len(),
        "█".repeat(filled),
        "░".repeat(BAR - filled),
        steps.len()
    )
}

/// One node's line in the progress view.
pub fn node_line(s: &StepView, live: &LivePhases) -> String {
    printable(&format!(
        "  {} {} ({}, {})  {}",
        mark(s.status),
        s.node_name,
        s.instance_id,
        s.role,
        step_state(s, live)
    ))
}

/// The execution's one-line summary.
pub fn summary(e: &SkillExecution) -> String {
    let reason = e
        .reason
        .as_deref()
        .map(|r| format!(" — {r}"))
        .unwrap_or_default();
    printable(&format!(
        "execution {} {}: {} ({} of {} steps succeeded, {} failed){reason}",
        e.id,
        e.skill.as_str(),
        e.status.as_str(),
        e.succeeded,
        e.steps.len(),
        e.failed
    ))
}

/// The whole progress view: the summary, then each batch's bar and its
/// nodes (batches not started yet show their bar only).
pub fn frame(e: &SkillExecution, live: &LivePhases) -> String {
    let mut out = summary(e);
    out.push('\n');
    for b in 0..e.batches.len() {
        out.push_str(&batch_bar(e, b));
        out.push('\n');
        for s in batch_steps(e, b) {
            out.push_str(&node_line(s, live));
            out.push('\n');
        }
    }
    out
}

/// One execution in full: its fields, then every step.
pub fn render_execution(e: &SkillExecution) -> String {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut out = key_values(&[
        ("ID", e.id.clone()),
        ("Skill", e.skill.as_str().to_string()),
        ("Status", e.status.as_str().to_string()),
        ("Scope", e.scope.clone()),
        ("What", headline(e)),
        (
            "Steps",
            format!(
                "{} in {} batch(es): {} succeeded, {} failed, {} failure(s) in a row",
                e.steps.len(),
                e.batches.len(),
                e.succeeded,
                e.failed,
                e.consecutive_failures
            ),
        ),
        ("Started", opt(&e.started_at)),
        ("Finished", opt(&e.finished_at)),
        ("Reason", opt(&e.reason)),
        ("Cluster", opt(&e.cluster_id)),
    ]);
    let mut t = Table::new(&[
        "STEP", "BATCH", "NODE", "INSTANCE", "ROLE", "VERSIONS", "STATUS", "DETAIL",
    ]);
    let none = LivePhases::new();
    for s in &e.steps {
        t.row(vec![
            s.step.to_string(),
            (s.batch + 1).to_string(),
            s.node_name.clone(),
            s.instance_id.clone(),
            s.role.clone(),
            versions(s),
            status_word(s.status).into(),
            match s.status {
                StepStatus::Running | StepStatus::Pending => vip_moves(s),
                _ => step_state(s, &none),
            },
        ]);
    }
    out.push('\n');
    out.push_str(&t.render("No steps."));
    out
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
    }
}

/// The executions as a table, oldest first.
pub fn render_list(executions: &[SkillExecution]) -> String {
    let mut t = Table::new(&[
        "ID", "SKILL", "STATUS", "SCOPE", "STEPS", "OK", "FAILED", "STARTED", "REASON",
    ]);
    for e in executions {
        t.row(vec![
            e.id.clone(),
            e.skill.as_str().into(),
            e.status.as_str().into(),
            e.scope.clone(),
            e.steps.len().to_string(),
            e.succeeded.to_string(),
            e.failed.to_string(),
            e.started_at.clone().unwrap_or_else(|| "-".into()),
            e.reason.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.render("No skill executions.")
}
