//! WireGuard keys at the intake, straight over NATS against a real
//! nats-server and every service: an agent registers its key and endpoint
//! with a signed `system.sdwan.wireguard_key.registered`; bad input (a key
//! that is not 32 bytes of base64, an endpoint that is not address:port,
//! another instance's key) is refused naming the problem and recorded as a
//! `system.agent.submission_rejected`, and nothing else is appended. The
//! heartbeat answer then carries the desired config, and
//! `system_sdwan_get_peer_config` shows it with the applied revision.
//!
//! `cargo nextest run -p powernode-tests --test intake_wireguard`

use anyhow::{ensure, Context as _};
use powernode_events::payloads::sdwan::WireguardKeyRegistered;
use powernode_events::wireguard::encode_base64;
use powernode_protocol::{subjects, AppliedConfig, Heartbeat};
use powernode_tests::lifecycle_support::*;
use serde_json::{json, Value};

const REJECTED: &str = "system.agent.submission_rejected";
const REGISTERED: &str = "system.sdwan.wireguard_key.registered";

/// A well-formed public key, different per `n`.
fn key(n: u8) -> String {
    encode_base64(&[n; 32])
}

fn registration(a: &ManualAgent, public_key: &str, endpoint: &str) -> WireguardKeyRegistered {
    WireguardKeyRegistered {
        instance_id: a.instance_id.clone(),
        public_key: public_key.to_string(),
        endpoint: endpoint.to_string(),
    }
}

/// Runs `f`, then checks the log grew by exactly `rejections`
/// `system.agent.submission_rejected` events about `instance` (and
/// nothing else); their reasons.
async fn only_rejections<F, Fut>(
    p: &Platform,
    rejections: usize,
    instance: &str,
    f: F,
) -> anyhow::Result<Vec<String>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let before = p.settle().await?;
    f().await?;
    p.settle().await?;
    let added: Vec<_> = p
        .log_events("")
        .await?
        .into_iter()
        .filter(|(seq, _)| *seq > before)
        .collect();
    let kinds: Vec<&str> = added.iter().map(|(_, e)| e.kind()).collect();
    ensure!(
        added.len() == rejections && kinds.iter().all(|k| *k == REJECTED),
        "expected {rejections} {REJECTED} event(s) and nothing else, got {kinds:?}"
    );
    let mut reasons = Vec::new();
    for (_, e) in added {
        let v = serde_json::to_value(&e)?;
        ensure!(v["payload"]["instance_id"] == instance, "{v}");
        reasons.push(
            v["payload"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    Ok(reasons)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_endpoints_are_refused_naming_the_problem() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    let cases = [
        (
            key(1).replace('=', "!"),
            "10.0.0.1:51820",
            "bad_wireguard_key",
        ),
        ("AAAA".to_string(), "10.0.0.1:51820", "bad_wireguard_key"),
        (
            encode_base64(&[7; 31]),
            "10.0.0.1:51820",
            "bad_wireguard_key",
        ),
        (key(1), "10.0.0.1", "bad_endpoint"),
        (key(1), "host:51820", "bad_endpoint"),
        (key(1), "10.0.0.1:0", "bad_endpoint"),
    ];
    for (public_key, endpoint, code) in cases {
        let reasons = only_rejections(&p, 1, &a.instance_id, || async {
            let e = a.signed(registration(&a, &public_key, endpoint))?;
            let r = a.submit(&e, None).await?;
            ensure!(error_code(&r) == Ok(code), "{public_key} {endpoint}: {r}");
            let message = r["error"]["message"].as_str().unwrap_or_default();
            ensure!(
                message.contains("public_key") || message.contains("endpoint"),
                "the refusal names the field: {r}"
            );
            Ok(())
        })
        .await?;
        ensure!(reasons[0].starts_with(code), "{reasons:?}");
    }
    ensure!(p.events(REGISTERED).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_registered_once_and_never_for_a_second_instance() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    let b = ManualAgent::enroll(&p, &p.op, "k3s-worker-2", Some((AGENT, None))).await?;
    // Registered: appended once.
    let e = a.signed(registration(&a, &key(1), "10.99.0.2:51820"))?;
    let r = a.submit(&e, None).await?;
    ensure!(r["ok"]["outcome"] == "accepted", "{r}");
    let seq = r["ok"]["seq"].as_u64().context("a seq")?;
    let registered = p.log_events(REGISTERED).await?;
    ensure!(
        registered.len() == 1 && registered[0].0 == seq,
        "{registered:?}"
    );
    // The same registration again (a restarted agent): accepted, nothing new.
    only_rejections(&p, 0, &a.instance_id, || async {
        let again = a.signed(registration(&a, &key(1), "10.99.0.2:51820"))?;
        let r = a.submit(&again, None).await?;
        ensure!(
            r["ok"]["outcome"] == "accepted" && r["ok"]["seq"] == seq,
            "{r}"
        );
        Ok(())
    })
    .await?;
    // Another instance presenting A's key: refused, recorded, not appended.
    let reasons = only_rejections(&p, 1, &b.instance_id, || async {
        let stolen = b.signed(registration(&b, &key(1), "10.99.0.3:51820"))?;
        let r = b.submit(&stolen, None).await?;
        ensure!(r["ok"]["outcome"] == "rejected", "{r}");
        let reason = r["ok"]["reason"].as_str().unwrap_or_default();
        ensure!(
            reason.starts_with("wireguard_key_taken") && reason.contains(&a.instance_id),
            "{r}"
        );
        Ok(())
    })
    .await?;
    ensure!(reasons[0].starts_with("wireguard_key_taken"), "{reasons:?}");
    // A registering a key for B (signed by A): identity_mismatch.
    only_rejections(&p, 1, &a.instance_id, || async {
        let e = a.signed(registration(&b, &key(2), "10.99.0.3:51820"))?;
        let r = a.submit(&e, None).await?;
        ensure!(error_code(&r) == Ok("identity_mismatch"), "{r}");
        Ok(())
    })
    .await?;
    // A new key of A's own (a re-made key): appended, the old one freed.
    let e = a.signed(registration(&a, &key(3), "10.99.0.2:51820"))?;
    let r = a.submit(&e, None).await?;
    ensure!(
        r["ok"]["outcome"] == "accepted" && r["ok"]["seq"] != seq,
        "{r}"
    );
    let e = b.signed(registration(&b, &key(1), "10.99.0.3:51820"))?;
    let r = b.submit(&e, None).await?;
    ensure!(r["ok"]["outcome"] == "accepted", "A's old key is free: {r}");
    ensure!(p.events(REGISTERED).await?.len() == 3);
    Ok(())
}

/// A signed heartbeat of `a` reporting `applied`; the answer.
async fn beat(a: &ManualAgent, applied: Vec<AppliedConfig>) -> anyhow::Result<Value> {
    let mut hb = Heartbeat {
        instance_id: a.instance_id.clone(),
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
        held_vips: Vec::new(),
        after_seq: None,
        wireguard_applied: applied,
        vip_probes: Vec::new(),
        report: None,
        signature: String::new(),
    };
    hb.signature = a.identity.sign_bytes(&hb.bytes_to_sign());
    request(&a.client, subjects::HEARTBEAT, serde_json::to_vec(&hb)?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_carries_the_config_and_the_api_shows_it_applied() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    let b = ManualAgent::enroll(&p, &p.op, "k3s-worker-2", Some((AGENT, None))).await?;
    let net = p.op.network("prod-net", None).await?;
    let peer_a = str_at(&p.op.attach(&net, &a.instance_id).await?, "/id")?;
    let peer_b = str_at(&p.op.attach(&net, &b.instance_id).await?, "/id")?;
    // Before any key: no config, nothing in sync.
    let c =
        p.op.ok("system_sdwan_get_peer_config", json!({ "peer_id": peer_a }))
            .await?;
    ensure!(c["desired"].is_null() && c["in_sync"] == false, "{c}");
    for (agent, n, endpoint) in [(&a, 1, "10.99.0.2:51820"), (&b, 2, "10.99.0.3:51820")] {
        let e = agent.signed(registration(agent, &key(n), endpoint))?;
        let r = agent.submit(&e, None).await?;
        ensure!(r["ok"]["outcome"] == "accepted", "{r}");
    }
    let r = beat(&a, Vec::new()).await?;
    let configs = r["ok"]["wireguard"]
        .as_array()
        .context("wireguard configs")?;
    ensure!(configs.len() == 1, "{r}");
    let config = &configs[0];
    ensure!(config["network_id"] == net.as_str(), "{config}");
    ensure!(config["listen_port"] == 51820, "{config}");
    let peers = config["peers"].as_array().context("peers")?;
    ensure!(
        peers.len() == 1
            && peers[0]["id"] == peer_b.as_str()
            && peers[0]["public_key"] == key(2)
            && peers[0]["endpoint"] == "10.99.0.3:51820",
        "{config}"
    );
    let revision = config["revision"].as_u64().context("revision")?;
    // The API shows the desired config, not applied yet …
    let c =
        p.op.ok("system_sdwan_get_peer_config", json!({ "peer_id": peer_a }))
            .await?;
    ensure!(
        c["desired"]["revision"] == revision && c["in_sync"] == false,
        "{c}"
    );
    ensure!(c["wireguard"]["public_key"] == key(1), "{c}");
    ensure!(!c.to_string().contains("private"), "{c}");
    // … then applied, once the agent reports it.
    beat(
        &a,
        vec![AppliedConfig {
            network_id: net.clone(),
            revision,
        }],
    )
    .await?;
    let c =
        p.op.ok("system_sdwan_get_peer_config", json!({ "peer_id": peer_a }))
            .await?;
    ensure!(
        c["applied_revision"] == revision && c["in_sync"] == true,
        "{c}"
    );
    // Another account's operator: the same not-found as an unknown peer.
    let other = p.operator("other").await?;
    for peer in [peer_a.as_str(), "peer-nope"] {
        let e = other
            .action("system_sdwan_get_peer_config", json!({ "peer_id": peer }))
            .await
            .expect_err("not this account's peer");
        ensure!(e.code() == "not_found", "{e}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_change_nudges_every_agent_of_the_network() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    let b = ManualAgent::enroll(&p, &p.op, "k3s-worker-2", Some((AGENT, None))).await?;
    let c = ManualAgent::enroll(&p, &p.op, "k3s-worker-3", Some((AGENT, None))).await?;
    let net = p.op.network("prod-net", None).await?;
    p.op.attach(&net, &a.instance_id).await?;
    p.op.attach(&net, &b.instance_id).await?;
    // A runs a data plane already; C has a key but no peer on the network.
    for (agent, n, endpoint) in [(&a, 1, "10.99.0.2:51820"), (&c, 3, "10.99.0.4:51820")] {
        let e = agent.signed(registration(agent, &key(n), endpoint))?;
        agent.submit(&e, None).await?;
    }
    p.settle().await?;
    let wa = p.watch(&subjects::nudge(&a.instance_id)).await?;
    let wb = p.watch(&subjects::nudge(&b.instance_id)).await?;
    let wc = p.watch(&subjects::nudge(&c.instance_id)).await?;
    // B registers its key: the network's config changes at that sequence,
    // and both of its agents are told (C is on no network: not nudged).
    // An agent without a data plane would not be nudged either.
    let e = b.signed(registration(&b, &key(2), "10.99.0.3:51820"))?;
    let r = b.submit(&e, None).await?;
    let seq = r["ok"]["seq"].as_u64().context("a seq")?;
    for (who, w) in [("a", &wa), ("b", &wb)] {
        wait_until(WAIT, &format!("{who} nudged with seq {seq}"), || async {
            if w.count(|v| v.as_u64() == Some(seq)) == 1 {
                Ok(())
            } else {
                Err(format!("{:?}", w.all()))
            }
        })
        .await?;
    }
    p.settle().await?;
    ensure!(wc.all().is_empty(), "C has no peer: {:?}", wc.all());
    Ok(())
}
