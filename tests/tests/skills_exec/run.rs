//! Executions run to their end as agents report; restarts resume.

use crate::world::*;
use anyhow::ensure;
use powernode_events::EventPayload;
use powernode_server::services::skills::SkillsConfig;
use powernode_tests::lifecycle_support::error_code;
use std::collections::BTreeMap;

fn fast() -> SkillsConfig {
    SkillsConfig {
        tick_ms: 200,
        ..SkillsConfig::default()
    }
}

/// Every step started once at most.
fn once_each(started: &[u32]) -> anyhow::Result<()> {
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    for s in started {
        *count.entry(*s).or_default() += 1;
    }
    ensure!(
        count.values().all(|n| *n == 1),
        "a step started more than once: {count:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_runs_batch_by_batch_to_completion_as_agents_report() -> anyhow::Result<()> {
    let w = World::start(4, fast()).await?;
    let id = "exec-run";
    w.execute(id, 1).await?;
    w.wait_started(id, &[0, 1]).await?;
    ensure!(
        w.started(id).await? == vec![0, 1],
        "batch 1 waits for batch 0"
    );
    // The heartbeat's answer carries the step, with the versions pinned.
    let reply = beat(&w.agents[0]).await?;
    let order = &reply["ok"]["upgrade"];
    ensure!(
        order["execution_id"] == id && order["step"] == 0 && order["action"] == "upgrade",
        "{reply}"
    );
    ensure!(
        order["from"]["module_version_id"] == FROM
            && order["to"]["module_version_id"] == TO
            && order["to"]["k3s_version"] == "v1.31.0+k3s1",
        "{reply}"
    );
    ensure!(beat(&w.agents[2]).await?["ok"]["upgrade"].is_null());
    // Reports the intake refuses: another instance's step, an unknown
    // execution, a step not started.
    let r = report_ok(&w.agents[1], id, 0).await?;
    ensure!(error_code(&r) == Ok("not_your_step"), "{r}");
    let r = report_ok(&w.agents[0], "exec-nope", 0).await?;
    ensure!(error_code(&r) == Ok("unknown_execution"), "{r}");
    let r = report_ok(&w.agents[2], id, 2).await?;
    ensure!(error_code(&r) == Ok("step_not_running"), "{r}");
    // Batch 0 reports; a second report of a step is not a second fact.
    let first = report_ok(&w.agents[0], id, 0).await?;
    ensure!(first["ok"]["outcome"] == "accepted", "{first}");
    let again = report_ok(&w.agents[0], id, 0).await?;
    ensure!(
        again["ok"]["seq"] == first["ok"]["seq"],
        "{first} / {again}"
    );
    ensure!(report_ok(&w.agents[1], id, 1).await?["ok"]["outcome"] == "accepted");
    w.wait_started(id, &[2, 3]).await?;
    // Step 0 is done: no order any more, and its assignment pins the
    // version the upgrade put there; a node not upgraded yet has no pin.
    let reply = beat(&w.agents[0]).await?;
    ensure!(reply["ok"]["upgrade"].is_null(), "{reply}");
    ensure!(
        reply["ok"]["assignments"][0]["version"]["module_version_id"] == TO,
        "{reply}"
    );
    let reply = beat(&w.agents[2]).await?;
    ensure!(
        reply["ok"]["assignments"][0]["version"].is_null()
            && reply["ok"]["assignments"][0]["module_name"] == "k3s-agent",
        "{reply}"
    );
    ensure!(
        w.events("system.k3s.module.upgraded").await?.len() == 2,
        "one report per step"
    );
    for (i, a) in w.agents.iter().enumerate().skip(2) {
        let r = report_ok(a, id, i as u32).await?;
        ensure!(r["ok"]["outcome"] == "accepted", "{r}");
    }
    match w.wait_finished(id).await? {
        EventPayload::SkillExecutionCompleted(c) => {
            ensure!((c.succeeded, c.failed) == (4, 0), "{c:?}")
        }
        other => anyhow::bail!("completed, not {other:?}"),
    }
    once_each(&w.started(id).await?)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_the_limit_stops_the_rollout_and_no_later_node_is_touched(
) -> anyhow::Result<()> {
    let w = World::start(4, fast()).await?;
    let id = "exec-fail";
    w.execute(id, 1).await?;
    w.wait_started(id, &[0, 1]).await?;
    ensure!(report_failed(&w.agents[0], id, 0).await?["ok"]["outcome"] == "accepted");
    match w.wait_finished(id).await? {
        EventPayload::SkillExecutionAborted(a) => ensure!(
            a.reason == "max_consecutive_failures"
                && a.detail
                    == "1 failure(s) in a row: worker-0: node not ready within 60 s; no further node touched",
            "{a:?}"
        ),
        other => anyhow::bail!("aborted, not {other:?}"),
    }
    // The step under way still finishes; nothing later starts.
    ensure!(report_ok(&w.agents[1], id, 1).await?["ok"]["outcome"] == "accepted");
    powernode_tests::lifecycle_support::wait_until(WAIT, "step 1's outcome", || async {
        let n = w
            .events("system.skill.execution.step_succeeded")
            .await
            .map_err(|e| e.to_string())?
            .len();
        if n == 1 {
            Ok(())
        } else {
            Err(format!("{n} successes"))
        }
    })
    .await?;
    ensure!(w.started(id).await? == vec![0, 1], "no later step started");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_with_no_report_times_out() -> anyhow::Result<()> {
    let w = World::start(
        2,
        SkillsConfig {
            step_timeout_ms: 1500,
            tick_ms: 100,
        },
    )
    .await?;
    let id = "exec-silent";
    w.execute(id, 1).await?;
    w.wait_started(id, &[0, 1]).await?;
    ensure!(report_ok(&w.agents[0], id, 0).await?["ok"]["outcome"] == "accepted");
    match w.wait_finished(id).await? {
        EventPayload::SkillExecutionAborted(a) => ensure!(
            a.detail
                .contains("worker-1: no report from the agent within 1500 ms"),
            "{a:?}"
        ),
        other => anyhow::bail!("aborted, not {other:?}"),
    }
    // A late report is refused: the step is over.
    let r = report_ok(&w.agents[1], id, 1).await?;
    ensure!(error_code(&r) == Ok("step_not_running"), "{r}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_service_mid_execution_goes_on_where_it_was() -> anyhow::Result<()> {
    let mut w = World::start(6, fast()).await?;
    let id = "exec-restart";
    w.execute(id, 1).await?;
    w.wait_started(id, &[0, 1]).await?;
    ensure!(report_ok(&w.agents[0], id, 0).await?["ok"]["outcome"] == "accepted");
    ensure!(report_ok(&w.agents[1], id, 1).await?["ok"]["outcome"] == "accepted");
    w.wait_started(id, &[2, 3]).await?;
    // Stopped while batch 1 runs; its reports come in meanwhile.
    w.stop_skills().await?;
    ensure!(report_ok(&w.agents[2], id, 2).await?["ok"]["outcome"] == "accepted");
    ensure!(report_ok(&w.agents[3], id, 3).await?["ok"]["outcome"] == "accepted");
    ensure!(
        w.started(id).await? == vec![0, 1, 2, 3],
        "nothing starts while the service is down"
    );
    w.start_skills().await?;
    w.wait_started(id, &[4, 5]).await?;
    for i in 4..6 {
        ensure!(report_ok(&w.agents[i], id, i as u32).await?["ok"]["outcome"] == "accepted");
    }
    match w.wait_finished(id).await? {
        EventPayload::SkillExecutionCompleted(c) => {
            ensure!((c.succeeded, c.failed) == (6, 0), "{c:?}")
        }
        other => anyhow::bail!("completed, not {other:?}"),
    }
    once_each(&w.started(id).await?)?;
    Ok(())
}
