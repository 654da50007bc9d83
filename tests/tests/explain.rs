//! `powernode events explain <id>` (issue 5) through the real binary,
//! reading the JetStream stream of a real nats-server that a running
//! platform (every service, real `powernode-agent` processes) writes to.
//!
//! A failover scenario — the holder's agent is killed with SIGKILL, the
//! sensor reports the silence, the failover service proposes and asks for
//! approval, an operator approves, the candidate is promoted — and then:
//! * the VIP's explanation lists silence → proposal / approval requested →
//!   approved → promoted with the right causation links and state changes,
//!   and its "why" names the new holder and the approving operator;
//! * the approval's explanation says who granted it and walks back to the
//!   silence; the cluster's shows bootstrapping → active;
//! * `--until` explains as of a point (before the approval: still the old
//!   holder, waiting); the table output reads; an unknown id fails clearly.
//!
//! `cargo nextest run -p powernode-tests --test explain`

use anyhow::{ensure, Context as _};
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{powernode, text};
use powernode_tests::failover_support::*;
use powernode_tests::lifecycle_support::str_at;
use serde_json::{json, Value};
use std::process::Output;

const ALLOCATED: &str = "system.sdwan.virtual_ip.allocated";
const PROPOSED: &str = "system.sdwan.failover.proposed";
const REQUESTED: &str = "system.approval.requested";
const GRANTED: &str = "system.approval.granted";
const PROMOTED: &str = "system.sdwan.virtual_ip.promoted";

/// `powernode events explain <args…> --nats <url>` (stdin closed, no TTY).
async fn explain(nats: &str, args: &[&str]) -> anyhow::Result<Output> {
    let bin = powernode_bin()?;
    let mut cmd = powernode(&bin);
    cmd.args(["events", "explain"])
        .args(args)
        .args(["--nats", nats])
        .envs(powernode_tests::nats::child_env(nats));
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

/// The explanation of `id` as JSON (`-o json`); fails naming stderr.
async fn explain_json(nats: &str, id: &str, extra: &[&str]) -> anyhow::Result<Value> {
    let mut args = vec![id, "-o", "json"];
    args.extend_from_slice(extra);
    let out = explain(nats, &args).await?;
    ensure!(
        out.status.success(),
        "explain {id} failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("explain {id} -o json: {}", text(&out.stdout)))
}

/// The listed events of `kind`.
fn of_kind<'a>(e: &'a Value, kind: &str) -> Vec<&'a Value> {
    e["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind)
        .collect()
}

/// The one listed event of `kind`.
fn one<'a>(e: &'a Value, kind: &str) -> anyhow::Result<&'a Value> {
    match of_kind(e, kind).as_slice() {
        [s] => Ok(s),
        other => anyhow::bail!("exactly one {kind} in the chain, got {other:?}"),
    }
}

/// True when `step` lists `seq` among what it caused.
fn caused(step: &Value, seq: &Value) -> bool {
    step["caused"]
        .as_array()
        .is_some_and(|c| c.iter().any(|l| l["seq"] == *seq))
}

/// The change at `path` in `step`, as `(before, after)`.
fn change(step: &Value, path: &str) -> Option<(Value, Value)> {
    step["changes"]
        .as_array()?
        .iter()
        .find_map(|c| (c["path"] == path).then(|| (c["before"].clone(), c["after"].clone())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_tells_why_a_vip_moved_after_an_approved_failover() -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let mut c = f.cluster("prod", 2, 0).await?;
    let (s1, s2) = (c.servers[0].peer.clone(), c.servers[1].peer.clone());
    let (i1, i2) = (
        c.servers[0].instance_id().to_string(),
        c.servers[1].instance_id().to_string(),
    );
    f.kill(&mut c.servers[0]);
    let a = wait_approval(&f.op, "requested").await?;
    let approval = str_at(&a, "/id")?;
    f.op.ok("system_approve", json!({ "approval_id": approval }))
        .await?;
    c.wait_held(&c.servers[1], 2).await?;
    f.p.settle().await?;
    let granted = f.p.log_events(GRANTED).await?;
    let (granted_seq, granted_event) = granted.first().context("a granted event")?;
    let operator = granted_event.actor.to_string();
    ensure!(operator.starts_with("operator:"), "{operator}");
    let nats = f.p.nats_url();

    // The VIP: the chain and its causal links.
    let e = explain_json(&nats, &c.vip_id, &[]).await?;
    ensure!(
        e["object"]["type"] == "virtual_ip"
            && e["object"]["id"] == c.vip_id.as_str()
            && e["object"]["account_id"] == f.op.account_id.as_str()
            && e["object"]["state"]["holder_peer_id"] == s2.as_str()
            && e["object"]["state"]["holder_instance_id"] == i2.as_str()
            && e["object"]["state"]["generation"] == 2,
        "header: {}",
        e["object"]
    );
    let kinds: Vec<&str> = e["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    let order = [ALLOCATED, SILENT, PROPOSED, REQUESTED, GRANTED, PROMOTED];
    let mut at = 0;
    for k in order {
        at += kinds[at..]
            .iter()
            .position(|x| *x == k)
            .with_context(|| format!("{k} after {:?} in {kinds:?}", &order[..at.min(5)]))?;
    }
    let allocated = one(&e, ALLOCATED)?;
    ensure!(allocated["created"] == true, "{allocated}");
    let silent = one(&e, SILENT)?;
    let proposed = one(&e, PROPOSED)?;
    let requested = one(&e, REQUESTED)?;
    let grant = one(&e, GRANTED)?;
    let promoted = one(&e, PROMOTED)?;
    ensure!(
        change(silent, "holder_silent") == Some((json!(false), json!(true))),
        "the silence marks the holder silent: {silent}"
    );
    ensure!(
        proposed["cause"]["seq"] == silent["seq"]
            && proposed["cause"]["kind"] == SILENT
            && requested["cause"]["seq"] == silent["seq"]
            && caused(silent, &proposed["seq"])
            && caused(silent, &requested["seq"]),
        "proposal and request are caused by the silence: {proposed} {requested} {silent}"
    );
    ensure!(
        requested["via"] == approval.as_str() && grant["via"] == approval.as_str(),
        "the approval's events are listed through its id: {requested} {grant}"
    );
    ensure!(
        grant["actor"] == operator.as_str()
            && grant["seq"] == *granted_seq
            && caused(grant, &promoted["seq"]),
        "{grant}"
    );
    ensure!(
        promoted["cause"]["seq"] == grant["seq"]
            && promoted["cause"]["kind"] == GRANTED
            && promoted["cause"]["actor"] == operator.as_str()
            && promoted["payload"]["approval_id"] == approval.as_str(),
        "the promotion is caused by the grant: {promoted}"
    );
    ensure!(
        change(promoted, "generation") == Some((json!(1), json!(2)))
            && change(promoted, "holder_peer_id") == Some((json!(s1), json!(s2)))
            && change(promoted, "holder_instance_id") == Some((json!(i1), json!(i2))),
        "the promotion's state change: {}",
        promoted["changes"]
    );

    // The why: the new holder, the promotion, the approving operator, the
    // request, the silence.
    let why = &e["why"];
    ensure!(
        why["answer"]
            .as_str()
            .is_some_and(|a| a.contains(&i2) && a.contains(&s2) && a.contains("generation 2")),
        "{why}"
    );
    let steps: Vec<(&str, &str)> = why["steps"]
        .as_array()
        .context("why steps")?
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or("-"),
                s["actor"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    ensure!(
        steps.len() >= 4
            && steps[0].0 == PROMOTED
            && steps[1] == (GRANTED, operator.as_str())
            && steps[2].0 == REQUESTED
            && steps[3].0 == SILENT,
        "{why}"
    );
    ensure!(
        why["steps"][1]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&operator) && t.contains(&approval)),
        "{why}"
    );

    // The table reads the same story.
    let out = explain(&nats, &[&c.vip_id]).await?;
    let table = text(&out.stdout);
    ensure!(out.status.success(), "{}", text(&out.stderr));
    println!("$ powernode events explain {} --nats …\n{table}", c.vip_id);
    ensure!(
        table.starts_with(&format!("virtual IP {} in account", c.vip_id))
            && table.contains("~ generation: 1 → 2")
            && table.contains(&format!("Why: {i2} (peer {s2}) holds VIP"))
            && table.contains(&format!(
                "← caused by #{granted_seq} {GRANTED} ({operator})"
            )),
        "{table}"
    );

    // As of just before the approval: the old holder, silent, waiting.
    let before = (granted_seq - 1).to_string();
    let e = explain_json(&nats, &c.vip_id, &["--until", &before]).await?;
    let state = &e["object"]["state"];
    ensure!(
        e["as_of"]["seq"] == granted_seq - 1
            && state["holder_peer_id"] == s1.as_str()
            && state["generation"] == 1
            && state["holder_silent"] == true
            && state["pending_proposal"]["approval_id"] == approval.as_str()
            && of_kind(&e, PROMOTED).is_empty()
            && e["why"]["steps"][0]["kind"] == ALLOCATED,
        "{}",
        e["object"]
    );

    // The same point named by time: the time the log stored that record.
    let stored =
        f.p.raw_log()
            .await?
            .into_iter()
            .find(|r| r.seq == granted_seq - 1)
            .context("the record before the grant")?
            .stored_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let e = explain_json(&nats, &c.vip_id, &["--until", &stored]).await?;
    ensure!(
        e["as_of"]["seq"] == granted_seq - 1 && e["object"]["state"]["generation"] == 1,
        "as of {stored}: {}",
        e["as_of"]
    );

    // The approval: granted by the operator, requested because of the silence.
    let e = explain_json(&nats, &approval, &[]).await?;
    ensure!(
        e["object"]["type"] == "approval" && e["object"]["state"]["status"] == "granted",
        "{}",
        e["object"]
    );
    let steps = e["why"]["steps"].as_array().context("why steps")?;
    ensure!(
        e["why"]["answer"]
            .as_str()
            .is_some_and(|a| a.contains("granted") && a.contains(&operator))
            && steps.len() >= 3
            && steps[0]["kind"] == GRANTED
            && steps[0]["actor"] == operator.as_str()
            && steps[1]["kind"] == REQUESTED
            && steps[1]["relation"] == "decided the request of"
            && steps[2]["kind"] == SILENT,
        "{}",
        e["why"]
    );

    // The cluster: bootstrapping, then active.
    let e = explain_json(&nats, &c.id, &[]).await?;
    ensure!(
        e["object"]["type"] == "cluster" && e["object"]["state"]["status"] == "active",
        "{}",
        e["object"]
    );
    let created = one(&e, "system.k3s.cluster.bootstrapped")?;
    let activated = one(&e, "system.k3s.cluster.activated")?;
    ensure!(
        created["created"] == true
            && created["changes"].as_array().is_some_and(|c| c
                .iter()
                .any(|x| x["path"] == "status" && x["after"] == "bootstrapping")),
        "{created}"
    );
    ensure!(
        change(activated, "status") == Some((json!("bootstrapping"), json!("active")))
            && e["why"]["steps"][0]["kind"] == "system.k3s.cluster.activated"
            && e["why"]["steps"][1]["kind"] == "system.k3s.handshake.ready",
        "{activated} {}",
        e["why"]
    );

    let out = explain(&nats, &[&c.id]).await?;
    let table = text(&out.stdout);
    println!("$ powernode events explain {} --nats …\n{table}", c.id);
    ensure!(
        out.status.success()
            && table.contains("~ status: \"bootstrapping\" → \"active\"")
            && table.contains(&format!("({}) is active", c.id)),
        "{table}"
    );

    // An id nothing names.
    let out = explain(&nats, &["vip-nosuch", "-o", "json"]).await?;
    ensure!(
        !out.status.success() && text(&out.stderr).contains("no event names vip-nosuch"),
        "status {:?}, stderr {}",
        out.status,
        text(&out.stderr)
    );
    Ok(())
}
