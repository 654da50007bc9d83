//! `execute_skill` and the actions about one execution.

use super::world::*;
use anyhow::ensure;
use powernode_log::Filter;
use serde_json::{json, Value};

/// The kinds of the log's records after `after`.
async fn kinds_after(w: &World, after: u64) -> anyhow::Result<Vec<String>> {
    Ok(w.api
        .log
        .read(after + 1, 10_000, &Filter::all())
        .await?
        .iter()
        .map(|r| r.kind().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbook_call_as_written_answers_the_plan_in_a_dry_run() -> anyhow::Result<()> {
    let w = world().await?;
    let before = w.last_seq().await?;
    let d = w
        .ok(
            "execute_skill",
            json!({"skill": "system-rolling-module-upgrade", "inputs": w.runbook_inputs(), "dry_run": true}),
        )
        .await?;
    let e = &d["execution"];
    ensure!(e["id"] == "" && e["status"] == "planned", "{e}");
    ensure!(e["skill"] == "system-rolling-module-upgrade", "{e}");
    ensure!(
        e["scope"] == format!("template/{}", w.server_template),
        "{e}"
    );
    ensure!(e["inputs"] == w.runbook_inputs(), "{e}");
    // One server at a time (quorum of three), the VIP holder last.
    ensure!(e["batches"] == json!([[0], [1], [2]]), "{e}");
    let steps = e["steps"].as_array().cloned().unwrap_or_default();
    let order: Vec<String> = steps.iter().map(|s| s_of(s, "node_name")).collect();
    ensure!(
        order == ["prod-server-2", "prod-server-3", "prod-server-1"],
        "{order:?}"
    );
    for s in &steps {
        ensure!(s["action"] == "upgrade" && s["status"] == "pending", "{s}");
        ensure!(s["from_version_id"] == "v-k3s-1.30.0", "{s}");
        ensure!(s["to_version_id"] == "v-k3s-1.31.0", "{s}");
        ensure!(s["cluster_id"] == w.cluster_id.as_str(), "{s}");
    }
    ensure!(
        steps[2]["vip_moves"] == json!([{"virtual_ip_id": w.vip_id, "vip": "fd00:1::100"}]),
        "{}",
        steps[2]
    );
    ensure!(steps[0]["vip_moves"] == json!([]), "{}", steps[0]);
    ensure!(
        w.last_seq().await? == before,
        "a dry run appended something"
    );

    // The workers' template: 50% of three is two per batch.
    let d = w
        .ok(
            "execute_skill",
            json!({"skill": "system-rolling-module-upgrade", "dry_run": true, "inputs": {
                "template_id": w.worker_template, "module_id": "mod-k3s-agent",
                "target_version_id": "v-k3s-agent-1.31.0", "batch_pct": 50}}),
        )
        .await?;
    ensure!(d["execution"]["batches"] == json!([[0, 1], [2]]), "{d}");
    ensure!(
        w.last_seq().await? == before,
        "a dry run appended something"
    );
    Ok(())
}

fn s_of(v: &Value, k: &str) -> String {
    s(&v[k])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_code_and_appends_nothing() -> anyhow::Result<()> {
    let w = world().await?;
    let (_, other_token) = w
        .api
        .account_with_token("other", &["system.kubernetes_provision"])
        .await?;
    let with = |k: &str, v: Value| {
        let mut i = w.runbook_inputs();
        i[k] = v;
        i
    };
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        ("system-reboot", w.runbook_inputs(), 404, "unknown_skill", "known skills: system-rolling-module-upgrade, provision_cluster, system-pod-subnet-restamp"),
        ("system-rolling-module-upgrade", with("colour", json!("blue")), 400, "invalid_arguments", "inputs.colour"),
        ("system-rolling-module-upgrade", with("batch_pct", json!("50")), 400, "invalid_arguments", "inputs.batch_pct must be an integer from 1 to 100; got the string \"50\""),
        ("system-rolling-module-upgrade", with("batch_pct", json!(0)), 400, "invalid_arguments", "inputs.batch_pct"),
        ("system-rolling-module-upgrade", with("batch_pct", json!(101)), 400, "invalid_arguments", "inputs.batch_pct"),
        ("system-rolling-module-upgrade", with("target_version_id", json!("v-k3s-agent-1.31.0")), 422, "version_of_another_module", "v-k3s-agent-1.31.0 is a version of mod-k3s-agent"),
        ("system-rolling-module-upgrade", with("target_version_id", json!("v-k3s-1.30.0")), 409, "nothing_to_upgrade", "already runs v-k3s-1.30.0"),
        ("system-rolling-module-upgrade", with("template_id", json!("tmpl-nope")), 404, "not_found", "tmpl-nope"),
        ("provision_cluster", json!({"network_id": w.network_id, "server_template_id": w.server_template, "servers": 1}), 409, "not_enough_instances", "has 0 idle instance(s)"),
    ];
    for dry_run in [false, true] {
        let before = w.last_seq().await?;
        for (skill, inputs, status, code, says) in &cases {
            let (st, c, m) = w
                .refused(
                    "execute_skill",
                    json!({"skill": skill, "inputs": inputs, "dry_run": dry_run}),
                )
                .await?;
            ensure!(
                st == *status && c == *code,
                "{skill} {inputs}: {st} {c}: {m}"
            );
            ensure!(
                m.contains(says),
                "{skill} {inputs}: {m:?} does not say {says:?}"
            );
        }
        // Another account's template does not exist for it.
        let a = powernode_tests::http::action(
            w.api.port,
            Some(&other_token),
            "execute_skill",
            &json!({"skill": "system-rolling-module-upgrade", "inputs": w.runbook_inputs(), "dry_run": dry_run}),
        )
        .await?;
        ensure!(
            a.status == 404 && a.body["error"]["code"] == "not_found",
            "{}",
            a.body
        );
        ensure!(
            w.last_seq().await? == before,
            "a refusal appended something"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executions_on_one_template_never_both_start() -> anyhow::Result<()> {
    let w = world().await?;
    let before = w.last_seq().await?;
    let args = json!({"skill": "system-rolling-module-upgrade", "inputs": w.runbook_inputs()});
    let (a, b) = tokio::join!(
        w.call("execute_skill", args.clone()),
        w.call("execute_skill", args.clone())
    );
    let (a, b) = (a?, b?);
    let (won, lost) = match (a.status, b.status) {
        (200, 409) => (a, b),
        (409, 200) => (b, a),
        other => anyhow::bail!(
            "expected one start and one refusal, got {other:?}: {} / {}",
            a.body,
            b.body
        ),
    };
    let id = s(&won.body["data"]["execution"]["id"]);
    ensure!(id.starts_with("exec-"), "{}", won.body);
    ensure!(
        won.body["data"]["execution"]["status"] == "running",
        "{}",
        won.body
    );
    ensure!(
        lost.body["error"]["code"] == "execution_in_progress",
        "{}",
        lost.body
    );
    ensure!(
        s(&lost.body["error"]["message"]).contains(&id),
        "{}",
        lost.body
    );
    let started: Vec<String> = kinds_after(&w, before)
        .await?
        .into_iter()
        .filter(|k| k == "system.skill.execution.started")
        .collect();
    ensure!(started.len() == 1, "{started:?}");

    // The plan that runs is the dry run's.
    let planned = w
        .ok("execute_skill", json!({"skill": "system-rolling-module-upgrade", "inputs": w.runbook_inputs(), "dry_run": true}))
        .await?;
    ensure!(
        planned["execution"]["steps"] == won.body["data"]["execution"]["steps"],
        "dry run {} / run {}",
        planned["execution"]["steps"],
        won.body["data"]["execution"]["steps"]
    );

    // A third start is refused at once, naming the running one.
    let seq = w.last_seq().await?;
    let (status, code, message) = w.refused("execute_skill", args.clone()).await?;
    ensure!(
        status == 409 && code == "execution_in_progress" && message.contains(&id),
        "{message}"
    );
    ensure!(w.last_seq().await? == seq, "a refusal appended something");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_cancel_and_a_finished_execution() -> anyhow::Result<()> {
    let w = world().await?;
    let e = w
        .ok(
            "execute_skill",
            json!({"skill": "system-rolling-module-upgrade", "inputs": w.runbook_inputs()}),
        )
        .await?;
    let id = s(&e["execution"]["id"]);
    let one = json!({"execution_id": id});

    let p = w
        .ok(
            "system_pause_skill_execution",
            json!({"execution_id": id, "reason": "change freeze"}),
        )
        .await?;
    ensure!(p["execution"]["status"] == "paused", "{p}");
    ensure!(
        s(&p["execution"]["reason"]).ends_with(": change freeze"),
        "{p}"
    );
    // Pausing a paused execution answers it as it is.
    let seq = w.last_seq().await?;
    let again = w.ok("system_pause_skill_execution", one.clone()).await?;
    ensure!(again["execution"]["status"] == "paused", "{again}");
    ensure!(w.last_seq().await? == seq, "pausing twice appended");
    let r = w.ok("system_resume_skill_execution", one.clone()).await?;
    ensure!(
        r["execution"]["status"] == "running" && r["execution"]["reason"].is_null(),
        "{r}"
    );

    let listed = w
        .ok("system_list_skill_executions", json!({"status": "running"}))
        .await?;
    ensure!(
        listed["executions"].as_array().map(Vec::len) == Some(1),
        "{listed}"
    );
    let (status, code, _) = w
        .refused("system_list_skill_executions", json!({"skill": "nope"}))
        .await?;
    ensure!(status == 404 && code == "unknown_skill", "{code}");

    // Another account does not see it.
    let (_, other_token) = w
        .api
        .account_with_token("other", &["system.kubernetes_provision"])
        .await?;
    for name in [
        "system_get_skill_execution",
        "system_pause_skill_execution",
        "system_cancel_skill_execution",
    ] {
        let a = powernode_tests::http::action(w.api.port, Some(&other_token), name, &one).await?;
        ensure!(
            a.status == 404 && a.body["error"]["code"] == "not_found",
            "{name}: {}",
            a.body
        );
    }

    let c = w
        .ok(
            "system_cancel_skill_execution",
            json!({"execution_id": id, "reason": "wrong version"}),
        )
        .await?;
    ensure!(c["execution"]["status"] == "aborted", "{c}");
    let reason = s(&c["execution"]["reason"]);
    ensure!(
        reason.starts_with("cancelled: cancelled by operator:")
            && reason.ends_with(": wrong version"),
        "{reason}"
    );
    ensure!(
        c["execution"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s["status"] == "skipped"),
        "{c}"
    );

    // A finished execution is neither paused, resumed nor cancelled.
    let seq = w.last_seq().await?;
    for name in [
        "system_pause_skill_execution",
        "system_resume_skill_execution",
        "system_cancel_skill_execution",
    ] {
        let (status, code, message) = w.refused(name, one.clone()).await?;
        ensure!(
            status == 409 && code == "execution_finished",
            "{name}: {code}"
        );
        ensure!(
            message.contains(&id) && message.contains("aborted"),
            "{name}: {message}"
        );
    }
    ensure!(w.last_seq().await? == seq, "a refusal appended something");

    // The scope is free again: a new execution, a new id.
    let next = w
        .ok(
            "execute_skill",
            json!({"skill": "system-rolling-module-upgrade", "inputs": w.runbook_inputs()}),
        )
        .await?;
    let next_id = s(&next["execution"]["id"]);
    ensure!(next_id.starts_with("exec-") && next_id != id, "{next}");
    let got = w
        .ok("system_get_skill_execution", json!({"execution_id": id}))
        .await?;
    ensure!(got["execution"]["status"] == "aborted", "{got}");
    let all = w.ok("system_list_skill_executions", json!({})).await?;
    let ids: Vec<String> = all["executions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| s(&e["id"]))
        .collect();
    ensure!(ids == [id, next_id], "{ids:?}");
    Ok(())
}
