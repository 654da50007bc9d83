//! Scenario 1 (with the checks of 4, 5, 6 and 8 on the same run): the
//! runbook's cluster of 3 servers and 3 workers on 1.30.5, upgraded with
//! the runbook's `execute_skill` call for the server template, then the
//! same for the worker template (`mod-k3s-agent`, `v-k3s-agent-1.31.0`).

use crate::world::*;
use crate::{dry_run, introspect, quorum, vip};
use anyhow::{ensure, Context as _};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_three_workers_upgrade_with_batch_pct_50() -> anyhow::Result<()> {
    let w = World::start().await?;
    let c = w.cluster("prod", 3, 3, |_| AgentFlags::default()).await?;
    let before = w.module_versions("k3s-server").await?;
    for s in &c.servers {
        ensure!(
            before.get(&s.instance_id) == Some(&Some(SERVER_FROM.into())),
            "{} pinned to {SERVER_FROM}: {before:?}",
            s.host
        );
    }

    // The servers: one at a time (quorum), the VIP holder last.
    let args = World::upgrade_inputs(&c.server_template, "mod-k3s-server", SERVER_TO, 50, 1);
    let plan = w.dry_run(args.clone()).await?;
    let prober = vip::Prober::start(&w, &c).await?;
    let exec = w.execute(args).await?;
    let id = exec["id"].as_str().context("execution id")?.to_string();
    ensure!(exec["status"] == "running", "{exec}");
    dry_run::assert_plan_is_the_execution(&plan, &exec)?;
    let done = w.wait_finished(&id).await;
    let probes = prober.stop().await?;
    let done = done?;
    ensure!(
        done["status"] == "completed" && done["succeeded"] == 3 && done["failed"] == 0,
        "{done}"
    );
    quorum::assert_servers_one_at_a_time(&w, &done, 3).await?;
    let holder = &c.servers[0].instance_id;
    let order: Vec<&str> = done["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["instance_id"].as_str())
        .collect();
    ensure!(
        done["batches"] == json!([[0], [1], [2]]) && order.last() == Some(&holder.as_str()),
        "three servers, one per batch, the holder last: {done}"
    );
    dry_run::assert_ran_as_planned(&w, &id, &plan).await?;
    vip::assert_holder_always_answered(&c, &probes)?;
    vip::assert_moved_before_the_holders_step(&w, &c, &done).await?;

    // The workers: batches of ceil(50 % × 3) = 2.
    let args = World::upgrade_inputs(&c.worker_template, "mod-k3s-agent", AGENT_TO, 50, 1);
    let plan = w.dry_run(args.clone()).await?;
    ensure!(plan["batches"] == json!([[0, 1], [2]]), "{plan}");
    let exec = w.execute(args).await?;
    let wid = exec["id"].as_str().context("execution id")?.to_string();
    dry_run::assert_plan_is_the_execution(&plan, &exec)?;
    let done = w.wait_finished(&wid).await?;
    ensure!(
        done["status"] == "completed" && done["succeeded"] == 3 && done["failed"] == 0,
        "{done}"
    );
    dry_run::assert_ran_as_planned(&w, &wid, &plan).await?;

    // Every node runs 1.31.0: as the platform has it, and as reported.
    let servers = w.module_versions("k3s-server").await?;
    let workers = w.module_versions("k3s-agent").await?;
    for s in &c.servers {
        ensure!(
            servers.get(&s.instance_id) == Some(&Some(SERVER_TO.into())),
            "{}: {servers:?}",
            s.host
        );
        introspect::assert_upgraded_node(&w, s, "k3s-server", SERVER_TO).await?;
    }
    for n in &c.workers {
        ensure!(
            workers.get(&n.instance_id) == Some(&Some(AGENT_TO.into())),
            "{}: {workers:?}",
            n.host
        );
        introspect::assert_upgraded_node(&w, n, "k3s-agent", AGENT_TO).await?;
    }
    // Every node is back in service, on the new release.
    for n in c.nodes() {
        w.wait_ready_node(&c.id, n).await?;
    }
    let nodes = w.op.nodes(&c.id).await?;
    ensure!(
        nodes.len() == 6 && nodes.iter().all(|n| n["status"] == "ready"),
        "{nodes:?}"
    );
    Ok(())
}
