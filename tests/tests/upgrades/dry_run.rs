//! Scenario 4: the dry run's plan is what runs — its batches and steps
//! equal the started execution's, the plan frozen in
//! `system.skill.execution.started`, and the order the steps started in.

use crate::world::*;
use anyhow::{ensure, Context as _};
use powernode_events::EventPayload;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_plan_is_what_runs() -> anyhow::Result<()> {
    let w = World::start().await?;
    let c = w.cluster("plan", 3, 1, |_| AgentFlags::default()).await?;
    let args = World::upgrade_inputs(&c.server_template, "mod-k3s-server", SERVER_TO, 50, 1);
    let plan = w.dry_run(args.clone()).await?;
    ensure!(
        w.events("system.skill.").await?.is_empty(),
        "a dry run appends nothing"
    );
    ensure!(
        plan["steps"][2]["instance_id"] == c.servers[0].instance_id.as_str()
            && plan["steps"][2]["vip_moves"]
                .as_array()
                .is_some_and(|m| m.len() == 1),
        "the plan says the holder goes last and which VIP moves: {plan}"
    );
    let exec = w.execute(args).await?;
    assert_plan_is_the_execution(&plan, &exec)?;
    let id = exec["id"].as_str().context("execution id")?;
    let done = w.wait_finished(id).await?;
    ensure!(done["status"] == "completed", "{done}");
    assert_plan_is_the_execution(&plan, &done)?;
    assert_ran_as_planned(&w, id, &plan).await
}

/// What the plan fixes of a step (not its progress).
fn planned(step: &Value) -> Value {
    let field = |k: &str| step.get(k).cloned().unwrap_or(Value::Null);
    let moves = match step.get("vip_moves") {
        Some(Value::Array(a)) => Value::Array(a.clone()),
        _ => json!([]),
    };
    json!({
        "step": field("step"),
        "batch": field("batch"),
        "action": field("action"),
        "instance_id": field("instance_id"),
        "node_name": field("node_name"),
        "role": field("role"),
        "cluster_id": field("cluster_id"),
        "from_version_id": field("from_version_id"),
        "to_version_id": field("to_version_id"),
        "vip_moves": moves,
    })
}

fn planned_steps(e: &Value) -> Vec<Value> {
    e["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(planned)
        .collect()
}

/// The dry run `plan` (`status: planned`, nothing started) has the
/// batches and steps of the execution `exec` that `execute_skill`
/// answered with the same inputs.
pub fn assert_plan_is_the_execution(plan: &Value, exec: &Value) -> anyhow::Result<()> {
    ensure!(
        plan["status"] == "planned" && plan["id"] == "",
        "a dry run answers a plan: {plan}"
    );
    ensure!(
        plan["batches"].as_array().is_some_and(|b| !b.is_empty()),
        "the plan has batches: {plan}"
    );
    ensure!(
        plan["batches"] == exec["batches"],
        "dry-run batches {} but the execution's {}",
        plan["batches"],
        exec["batches"]
    );
    let (p, e) = (planned_steps(plan), planned_steps(exec));
    ensure!(
        p == e,
        "dry-run steps differ from the execution's:\n{}\n{}",
        Value::Array(p.clone()),
        Value::Array(e)
    );
    ensure!(plan["scope"] == exec["scope"], "{plan} / {exec}");
    Ok(())
}

/// What ran is the plan: the steps frozen in the log's
/// `system.skill.execution.started` are the dry run's, every step started
/// once, and batch by batch (a step of a later batch never started before
/// one of an earlier batch).
pub async fn assert_ran_as_planned(w: &World, id: &str, plan: &Value) -> anyhow::Result<()> {
    let frozen = w
        .events("system.skill.execution.started")
        .await?
        .into_iter()
        .find_map(|(_, e)| match e.payload {
            EventPayload::SkillExecutionStarted(s) if s.execution_id == id => Some(s.steps),
            _ => None,
        })
        .with_context(|| format!("no start of {id} in the log"))?;
    let frozen: Vec<Value> = frozen
        .iter()
        .map(|s| serde_json::to_value(s).map(|v| planned(&v)))
        .collect::<Result<_, _>>()?;
    ensure!(
        frozen == planned_steps(plan),
        "the log's plan differs from the dry run's:\n{}\n{plan}",
        Value::Array(frozen)
    );
    let batch_of = |step: u32| {
        plan["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["step"] == step)
            .and_then(|s| s["batch"].as_u64())
    };
    let started = w.started(id).await?;
    let mut steps: Vec<u32> = started.iter().map(|(_, s)| *s).collect();
    let batches: Vec<Option<u64>> = steps.iter().map(|s| batch_of(*s)).collect();
    ensure!(
        batches.windows(2).all(|b| b[0] <= b[1]) && batches.iter().all(Option::is_some),
        "steps started out of batch order: {started:?} (batches {batches:?})"
    );
    steps.sort_unstable();
    let all: Vec<u32> = (0..frozen.len() as u32).collect();
    ensure!(steps == all, "every planned step started once: {started:?}");
    Ok(())
}
