//! `powernode replay` (issue 5) against a real nats-server: a log recorded
//! from a lifecycle (a cluster of two servers and a worker, real agents)
//! and a failover (the holder killed, the proposal approved), with one
//! forged agent record in it. Replayed to the API's own position, the fleet
//! equals what the live API answers; two replays print the same bytes; the
//! trusted mode ends in the same state; `--diff` shows a cluster going
//! active; `--until` by time stops where the log says.
//!
//! `cargo nextest run -p powernode-tests --test replay`

use anyhow::{ensure, Context as _};
use chrono::SecondsFormat;
use ed25519_dalek::SigningKey;
use powernode_events::payloads::sdwan::VirtualIpApplied;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::Expect;
use powernode_tests::failover_support::*;
use powernode_tests::lifecycle_support::{str_at, wait_until, WAIT};
use powernode_tests::replay_support::{agrees, ids, ReplayCli};
use serde_json::{json, Value};

const ACTIVATED: &str = "system.k3s.cluster.activated";

/// The API's applied sequence once it has caught up with a quiet log.
async fn live_position(f: &Fleet) -> anyhow::Result<u64> {
    let last = f.p.settle().await?;
    wait_until(WAIT, &format!("the API at seq {last}"), || async move {
        let h = powernode_tests::http::request(f.p.port, "GET", "/healthz", None, b"")
            .await
            .map_err(|e| format!("{e:#}"))?;
        match h.body["applied_seq"].as_u64() {
            Some(s) if s == last => Ok(s),
            _ => Err(h.body.to_string()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_lifecycle_and_failover_log_equals_the_live_projection() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let step = |what: &str| println!("{:>7.1?} {what}", started.elapsed());
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let cli = ReplayCli::new(&f.p.nats_url())?;
    step("binary built");
    let acct = f.op.account_id.clone();
    let mut c = f.cluster("prod", 2, 1).await?;
    let activated = f
        .p
        .log_events(ACTIVATED)
        .await?
        .into_iter()
        .find(|(_, e)| matches!(&e.payload, EventPayload::ClusterActivated(p) if p.cluster_id == c.id))
        .map(|(seq, _)| seq)
        .context("the cluster's activation is in the log")?;

    // A record no agent could have written: the worker "holding" the VIP,
    // signed with a key it never enrolled. Every consumer refuses it.
    let worker = &c.workers[0];
    let mut forged = Envelope::new(
        AccountId::new(acct.as_str())?,
        Actor::Agent {
            instance_id: worker.instance_id().to_string(),
        },
        VirtualIpApplied {
            virtual_ip_id: c.vip_id.clone(),
            instance_id: worker.instance_id().to_string(),
            peer_id: worker.peer.clone(),
            generation: 7,
            held: true,
        },
    );
    forged.sign(&SigningKey::from_bytes(&[9; 32]))?;
    let forged_seq = f.p.log.append(&forged, Expect::Any).await?.seq;

    // Failover: the holder dies, the proposal is approved, the second server holds.
    f.kill(&mut c.servers[0]);
    let approval = wait_approval(&f.op, "requested").await?;
    let approval_id = str_at(&approval, "/id")?;
    f.op.ok("system_approve", json!({ "approval_id": approval_id }))
        .await?;
    c.wait_held(&c.servers[1], 2).await?;

    step("lifecycle and failover done");
    let n = live_position(&f).await?;
    step("live position");
    let until = n.to_string();
    let replayed = cli.json(&["--until", &until, "--show", "all"]).await?;
    ensure!(
        replayed["seq"] == n && replayed["records"] == n && replayed["first_seq"] == 1,
        "replayed through the API's position: {}",
        replayed["seq"]
    );
    let refused = replayed["refused"].as_array().cloned().unwrap_or_default();
    ensure!(
        refused.len() == 1
            && refused[0]["seq"] == forged_seq
            && refused[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("signature does not verify")),
        "only the forged record is refused: {refused:?}"
    );
    step("replayed");
    let mine = &replayed["accounts"][acct.as_str()];

    // Clusters, as kubernetes_list_clusters answers them.
    let live =
        f.op.ok(
            "kubernetes_list_clusters",
            json!({ "include_decommissioned": true }),
        )
        .await?;
    let live = live["clusters"].as_array().cloned().unwrap_or_default();
    ensure!(
        ids(&mine["clusters"]) == vec![c.id.clone()] && live.len() == 1,
        "one cluster: replayed {:?}, live {live:?}",
        ids(&mine["clusters"])
    );
    agrees("cluster", &mine["clusters"][c.id.as_str()], &live[0], 15)?;
    ensure!(mine["clusters"][c.id.as_str()]["node_count"] == 3);

    // The VIP, as system_sdwan_get_virtual_ip answers it.
    let vip = c.vip().await?;
    let rv = &mine["virtual_ips"][c.vip_id.as_str()];
    agrees("virtual IP", rv, &vip, 10)?;
    ensure!(
        rv["applied"] == vip["applied_generations"]
            && rv["promotions"].as_array().and_then(|p| p.last()) == Some(&vip["last_promotion"])
            && rv["generation"] == 2
            && rv["applied"].get(worker.peer.as_str()).is_none(),
        "replayed VIP {rv}\nlive {vip}"
    );

    // Networks and approvals.
    let nets = f.op.ok("system_sdwan_list_networks", json!({})).await?;
    let nets = nets["networks"].as_array().cloned().unwrap_or_default();
    ensure!(ids(&mine["networks"]) == vec![f.net.clone()] && nets.len() == 1);
    agrees("network", &mine["networks"][f.net.as_str()], &nets[0], 8)?;
    let live_approvals = approvals(&f.op, "all").await?;
    ensure!(ids(&mine["approvals"]) == vec![approval_id.clone()] && live_approvals.len() == 1);
    let ra = &mine["approvals"][approval_id.as_str()];
    agrees("approval", ra, &live_approvals[0], 8)?;
    ensure!(ra["status"] == "granted", "{ra}");

    // Deterministic: the same point prints the same bytes, table and JSON.
    let again = cli
        .run(&["--until", &until, "--show", "all", "-o", "json"])
        .await?;
    ensure!(again == serde_json::to_string_pretty(&replayed)? + "\n");
    let table = cli.run(&["--until", &until]).await?;
    ensure!(
        table == cli.run(&["--until", &until]).await?,
        "table output differs"
    );
    ensure!(
        table.contains(&format!(
            "records:     {n} read, {} applied, 1 refused",
            n - 1
        )) && table.contains(&format!("account {acct}"))
            && table.contains(&c.id),
        "{table}"
    );
    let hash_line = cli.run(&["--until", &until, "--hash"]).await?;
    ensure!(
        hash_line.trim_end()
            == format!(
                "{}  seq {n}",
                replayed["state_hash"].as_str().unwrap_or("?")
            ),
        "{hash_line}"
    );
    // The live API's own digest, at the same position, is the same line.
    let live = powernode_tests::lifecycle_support::call(
        f.p.port,
        &f.p.admin,
        "system_state_hash",
        &json!({}),
    )
    .await
    .map_err(|e| anyhow::anyhow!("system_state_hash: {e}"))?;
    ensure!(
        live["seq"].as_u64() == Some(n)
            && hash_line.starts_with(live["hash"].as_str().unwrap_or("?")),
        "live {live} vs replay {hash_line}"
    );

    step("determinism");
    // Trusting the stored signatures ends in the same state: the forged
    // record is refused as the consumers recorded it.
    let trusted = cli
        .json(&["--until", &until, "--hash", "--trust-signatures"])
        .await?;
    ensure!(
        trusted["state_hash"] == replayed["state_hash"]
            && trusted["refused"] == replayed["refused"]
            && trusted["signatures"] == "trusted",
        "trusted {trusted}\nverified {replayed}"
    );

    step("trusted");
    // --diff: the activation, one event, changes the cluster's status.
    let before = (activated - 1).to_string();
    let at = activated.to_string();
    let d = cli.run(&["--diff", &before, &at, "-o", "json"]).await?;
    let events: Vec<Value> = d
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(events.len() == 1 && events[0]["kind"] == ACTIVATED, "{d}");
    let status = format!("clusters.{}.status", c.id);
    ensure!(
        events[0]["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|ch| ch["path"] == status.as_str()
                && ch["before"] == "bootstrapping"
                && ch["after"] == "active"),
        "{d}"
    );
    let text = cli.run(&["--diff", &before, &at]).await?;
    ensure!(
        text.contains(&format!("~ {status}: \"bootstrapping\" → \"active\"")),
        "{text}"
    );
    // … and over the failover, the forged record changes nothing, the
    // promotion moves the VIP to generation 2.
    let from = (forged_seq - 1).to_string();
    let text = cli.run(&["--diff", &from, &until]).await?;
    ensure!(
        text.contains(&format!("#{forged_seq}  system.sdwan.virtual_ip.applied"))
            && text.contains("refused: agent")
            && text.contains(&format!("~ virtual_ips.{}.generation: 1 → 2", c.vip_id)),
        "{text}"
    );
    ensure!(
        text.contains(&format!(
            "state:       {}",
            replayed["state_hash"].as_str().unwrap_or("?")
        )),
        "the diff ends in the same state: {text}"
    );

    step("diffs");
    // --until a time: the last record stored at or before it.
    let log = f.p.raw_log().await?;
    let t = log
        .iter()
        .find(|r| r.seq == activated)
        .context("activation record")?
        .stored_at;
    let expected = log
        .iter()
        .filter(|r| r.stored_at <= t)
        .map(|r| r.seq)
        .max()
        .unwrap_or(0);
    let (by_time, seq) = cli
        .hash(&t.to_rfc3339_opts(SecondsFormat::Nanos, true), &[])
        .await?;
    ensure!(
        seq == expected && seq >= activated,
        "until {t}: seq {seq}, expected {expected}"
    );
    let (by_seq, _) = cli.hash(&expected.to_string(), &[]).await?;
    ensure!(by_time == by_seq);
    let early = cli
        .json(&["--until", &before, "--show", "clusters"])
        .await?;
    ensure!(
        early["accounts"][acct.as_str()]["clusters"][c.id.as_str()]["status"] == "bootstrapping"
            && early["accounts"][acct.as_str()]
                .get("virtual_ips")
                .is_none(),
        "{early}"
    );
    step("until");
    Ok(())
}
