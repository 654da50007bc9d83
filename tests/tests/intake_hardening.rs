//! The agent intake's trust boundary (issue 13): agent event ids live in a
//! namespace no service uses, agent-reported fields are bounded, `ready`
//! is accepted only from a member, and refusals nobody can be held to do
//! not grow the log. Against a real nats-server and every service.
//!
//! `cargo nextest run -p powernode-tests --test intake_hardening`

use anyhow::{ensure, Context as _};
use powernode_agent::identity::Identity;
use powernode_events::payloads::k3s::{
    HandshakeBootstrap, HandshakeJoinRequest, HandshakeReady, K3sModule, RuntimeInstalling,
};
use powernode_events::{Envelope, EventPayload};
use powernode_protocol::{fingerprint, subjects, BootstrapSecrets, Submission};
use powernode_tests::lifecycle_support::*;
use serde_json::{json, Value};
use uuid::Uuid;

const REJECTED: &str = "system.agent.submission_rejected";

/// Events appended after `after`, every account, as (seq, event).
async fn added_since(p: &Platform, after: u64) -> anyhow::Result<Vec<(u64, Envelope)>> {
    Ok(p.log_events("")
        .await?
        .into_iter()
        .filter(|(seq, _)| *seq > after)
        .collect())
}

fn kinds(events: &[(u64, Envelope)]) -> Vec<&'static str> {
    events.iter().map(|(_, e)| e.kind()).collect()
}

/// A bootstrap server driven by hand: `(server, cluster_id)`, the cluster active.
async fn manual_cluster(p: &Platform) -> anyhow::Result<(ManualAgent, String)> {
    let s = ManualAgent::enroll(p, &p.op, "k3s-server-1", Some((SERVER, None))).await?;
    let node_token = format!("K10{}::server:{}", "ab".repeat(32), "cd".repeat(32));
    let kubeconfig = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\n".to_string();
    let e = s.signed(HandshakeBootstrap {
        instance_id: s.instance_id.clone(),
        k3s_version: K3S_VERSION.into(),
        node_token_fingerprint: fingerprint(node_token.as_bytes()),
        kubeconfig_fingerprint: fingerprint(kubeconfig.as_bytes()),
    })?;
    let r = s
        .submit(
            &e,
            Some(BootstrapSecrets {
                node_token,
                kubeconfig,
                cluster_ca: None,
            }),
        )
        .await?;
    let cluster_id = str_at(&r, "/ok/cluster_id").with_context(|| format!("bootstrap: {r}"))?;
    let ready = s.signed(HandshakeReady {
        instance_id: s.instance_id.clone(),
        cluster_id: cluster_id.clone(),
        node_name: "k3s-server-1".into(),
        k3s_version: K3S_VERSION.into(),
        token_fingerprint: None,
    })?;
    let r = s.submit(&ready, None).await?;
    ensure!(
        r["ok"]["outcome"] == "accepted",
        "the bootstrap server's ready: {r}"
    );
    p.wait_cluster_active(&s.instance_id).await?;
    Ok((s, cluster_id))
}

/// Finding 2: a signed agent event carrying the (predictable, UUIDv5) id
/// of a decision a service will make is refused (`bad_event_id`), and the
/// service later records its own decision under that id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_pre_claim_a_service_decision_id() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    // The join request it will send, and the id of the provisioner's verdict
    // on it (decisions take `v5(cause, kind)`; no cluster: a rejection).
    let join = a.signed(a.join_request(None))?;
    let verdict_id = Uuid::new_v5(&join.id, b"system.k3s.handshake.join_rejected");

    let before = p.settle().await?;
    let mut squat = a.event(
        None,
        RuntimeInstalling {
            instance_id: a.instance_id.clone(),
            module_name: K3sModule::K3sAgent,
            version: K3S_VERSION.into(),
        },
    );
    squat.id = verdict_id;
    a.identity.sign(&mut squat)?;
    let r = a.submit(&squat, None).await?;
    ensure!(error_code(&r) == Ok("bad_event_id"), "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains(&verdict_id.to_string()) && message.contains("UUIDv7"),
        "the refusal names the id and why: {message}"
    );
    // Signed by the enrolled key: recorded, and nothing else.
    p.settle().await?;
    let added = added_since(&p, before).await?;
    ensure!(kinds(&added) == [REJECTED], "{:?}", kinds(&added));

    // The service's own decision lands under that id.
    let r = a.submit(&join, None).await?;
    ensure!(
        r["ok"]["outcome"] == "rejected"
            && r["ok"]["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("no_active_cluster")),
        "{r}"
    );
    let verdicts = p.log_events("system.k3s.handshake.join_rejected").await?;
    ensure!(
        verdicts.len() == 1 && verdicts[0].1.id == verdict_id,
        "the provisioner's verdict is stored under {verdict_id}: {:?}",
        verdicts
            .iter()
            .map(|(s, e)| (s, e.id, e.kind()))
            .collect::<Vec<_>>()
    );
    // Old UUIDv7 ids are refused too: an id minted an hour ago.
    let mut old = a.signed(a.join_request(None))?;
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    old.id = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        past.timestamp() as u64,
        0,
    ));
    a.identity.sign(&mut old)?;
    let r = a.submit(&old, None).await?;
    ensure!(
        error_code(&r) == Ok("bad_event_id"),
        "an hour-old v7 id: {r}"
    );
    Ok(())
}

/// Finding 2: an agent event reusing the id of a stored record of another
/// kind and aggregate is refused as a conflict (`id_taken`, naming the id
/// and the record's seq), and the event is not appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_event_reusing_another_records_id_is_a_conflict() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    let b = ManualAgent::enroll(&p, &p.op, "k3s-worker-2", Some((AGENT, None))).await?;
    let (taken_seq, enrolled) = p
        .log_events("system.agent.enrolled")
        .await?
        .into_iter()
        .find(|(_, e)| {
            matches!(&e.payload, EventPayload::AgentEnrolled(x) if x.instance_id == b.instance_id)
        })
        .context("b's enrollment is in the log")?;

    let before = p.settle().await?;
    let mut hijack = a.event(None, a.join_request(None));
    hijack.id = enrolled.id;
    a.identity.sign(&mut hijack)?;
    let r = a.submit(&hijack, None).await?;
    ensure!(error_code(&r) == Ok("id_taken"), "{r}");
    let message = r["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains(&enrolled.id.to_string()) && message.contains(&taken_seq.to_string()),
        "the refusal names the id and the seq holding it: {message}"
    );
    p.settle().await?;
    let added = added_since(&p, before).await?;
    ensure!(
        kinds(&added) == [REJECTED],
        "only the refusal is recorded: {:?}",
        kinds(&added)
    );
    ensure!(
        p.log_events("system.k3s.handshake.join_request")
            .await?
            .is_empty(),
        "no join request was stored"
    );
    Ok(())
}

/// Finding 3: agent-reported strings are bounded in length and
/// characters, and a submission's size is capped; refusals name the field
/// and the limit, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_and_oversized_events_are_refused_and_not_stored() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    let s = ManualAgent::enroll(&p, &p.op, "k3s-server-1", Some((SERVER, None))).await?;
    let installing = |version: String| RuntimeInstalling {
        instance_id: a.instance_id.clone(),
        module_name: K3sModule::K3sAgent,
        version,
    };
    let before = p.settle().await?;
    // An escape sequence (clear screen, then a fake line).
    let escape = "v1.30.5\u{1b}[2J\u{1b}[Hroot ok";
    let r = a
        .submit(&a.signed(installing(escape.into()))?, None)
        .await?;
    ensure!(error_code(&r) == Ok("bad_characters"), "{r}");
    let m = r["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        m.contains("payload.version") && !m.contains('\u{1b}'),
        "names the field, does not echo it: {m:?}"
    );
    // Too long for its field.
    let r = a
        .submit(&a.signed(installing("v".repeat(65)))?, None)
        .await?;
    ensure!(error_code(&r) == Ok("field_too_long"), "{r}");
    let m = r["error"]["message"].as_str().unwrap_or_default();
    ensure!(m.contains("payload.version") && m.contains("64"), "{m}");
    // A 300 KB signed event.
    let huge = a.signed(HandshakeReady {
        instance_id: a.instance_id.clone(),
        cluster_id: "cluster-00000000000000000000000000000000".into(),
        node_name: "n".repeat(300_000),
        k3s_version: K3S_VERSION.into(),
        token_fingerprint: None,
    })?;
    ensure!(huge.encode()?.len() > 300_000);
    let r = a.submit(&huge, None).await?;
    ensure!(error_code(&r) == Ok("submission_too_large"), "{r}");
    let m = r["error"]["message"].as_str().unwrap_or_default();
    ensure!(m.contains("65536"), "names the limit: {m}");
    // Control characters in the secrets of a bootstrap report.
    let (token, kubeconfig) = (
        "K10aa::server:bb\u{7}".to_string(),
        "apiVersion: v1\n".to_string(),
    );
    let report = s.signed(HandshakeBootstrap {
        instance_id: s.instance_id.clone(),
        k3s_version: K3S_VERSION.into(),
        node_token_fingerprint: fingerprint(token.as_bytes()),
        kubeconfig_fingerprint: fingerprint(kubeconfig.as_bytes()),
    })?;
    let r = s
        .submit(
            &report,
            Some(BootstrapSecrets {
                node_token: token,
                kubeconfig,
                cluster_ca: None,
            }),
        )
        .await?;
    ensure!(
        error_code(&r) == Ok("bad_characters")
            && r["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("secrets.node_token")),
        "{r}"
    );
    // A heartbeat naming a VIP with an escape sequence.
    let now = chrono::Utc::now().timestamp_millis();
    let held = vec![powernode_protocol::HeldVip {
        virtual_ip_id: "vip\u{1b}]0;owned\u{7}".into(),
        vip: "fd00::1".into(),
        generation: 1,
    }];
    let hb = json!({
        "instance_id": a.instance_id,
        "sent_at_ms": now,
        "held_vips": held,
        "signature": a.identity.sign_bytes(&powernode_protocol::Heartbeat::signing_bytes(&a.instance_id, now, &held)),
    });
    let r = request(&a.client, subjects::HEARTBEAT, serde_json::to_vec(&hb)?).await?;
    ensure!(error_code(&r) == Ok("bad_characters"), "{r}");

    p.settle().await?;
    let added = added_since(&p, before).await?;
    // Three refusals of signed events recorded (the oversized one is not
    // attributable before decoding); nothing else.
    ensure!(
        kinds(&added) == [REJECTED; 3],
        "nothing of the refused submissions was stored: {:?}",
        kinds(&added)
    );
    for (_, e) in &added {
        let v = serde_json::to_value(e)?;
        let reason = v["payload"]["reason"].as_str().unwrap_or_default();
        ensure!(
            !reason.contains('\u{1b}') && reason.len() < 1000,
            "a recorded reason echoes agent input: {reason:?}"
        );
    }
    for r in p.raw_log().await? {
        let holds = |needle: &[u8]| r.bytes.windows(needle.len()).any(|w| w == needle);
        ensure!(
            !holds(b"\x1b[2J") && !holds(b"\x1b]0;") && r.bytes.len() < 64 * 1024,
            "record {} ({}) holds an escape sequence or is huge ({} bytes)",
            r.seq,
            r.kind(),
            r.bytes.len()
        );
    }
    Ok(())
}

/// Finding 4: `ready` is accepted only from an instance that bootstrapped
/// the cluster or was issued a join token for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_accepted_only_after_bootstrap_or_a_join_token() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let (_server, cluster_id) = manual_cluster(&p).await?;
    let w =
        ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, Some(&cluster_id)))).await?;
    let ready = || {
        w.signed(HandshakeReady {
            instance_id: w.instance_id.clone(),
            cluster_id: cluster_id.clone(),
            node_name: "k3s-worker-1".into(),
            k3s_version: K3S_VERSION.into(),
            token_fingerprint: None,
        })
    };
    // Never joined: refused.
    let r = w.submit(&ready()?, None).await?;
    ensure!(
        r["ok"]["outcome"] == "rejected"
            && r["ok"]["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("not_joined")),
        "a ready from an instance that never joined: {r}"
    );
    ensure!(
        p.log_events("system.k3s.handshake.ready")
            .await?
            .iter()
            .all(|(_, e)| !matches!(&e.payload, EventPayload::HandshakeReady(x) if x.instance_id == w.instance_id)),
        "the refused ready was not stored"
    );
    let nodes = p.nodes(&cluster_id).await?;
    ensure!(
        nodes
            .iter()
            .all(|n| n["instance_id"] != w.instance_id.as_str() || n["status"] != "ready"),
        "not a ready member: {nodes:?}"
    );
    // After a join token: accepted.
    let granted = w
        .submit(&w.signed(w.join_request(Some(&cluster_id)))?, None)
        .await?;
    ensure!(granted["ok"]["outcome"] == "join_granted", "{granted}");
    let r = w.submit(&ready()?, None).await?;
    ensure!(r["ok"]["outcome"] == "accepted", "{r}");
    p.wait_node_ready(&cluster_id, &w.instance_id).await?;
    // A copied token fingerprint is no join token.
    let x =
        ManualAgent::enroll(&p, &p.op, "k3s-worker-2", Some((AGENT, Some(&cluster_id)))).await?;
    let r = x
        .submit(
            &x.signed(HandshakeReady {
                instance_id: x.instance_id.clone(),
                cluster_id: cluster_id.clone(),
                node_name: "k3s-worker-2".into(),
                k3s_version: K3S_VERSION.into(),
                token_fingerprint: Some(str_at(&granted, "/ok/token_fingerprint")?),
            })?,
            None,
        )
        .await?;
    ensure!(
        r["ok"]["outcome"] == "rejected",
        "a copied token fingerprint is no join token: {r}"
    );
    Ok(())
}

/// Finding 5: 2,000 junk submissions nobody can be held to (unsigned,
/// wrongly signed, an unknown instance, not hex, oversized) add at most one
/// summary event, which counts them all by reason once its window (a
/// minute) closes; a refusal of a submission signed by an enrolled key is
/// still recorded on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_unauthenticated_senders_does_not_grow_the_log() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let a = ManualAgent::enroll(&p, &p.op, "k3s-worker-1", Some((AGENT, None))).await?;
    let before = p.settle().await?;
    let ghost = "inst-00000000000000000000000000000000";
    let stranger = Identity::ephemeral();
    let mut bodies: Vec<(Vec<u8>, &str)> = Vec::new();
    for i in 0..2000 {
        let body = match i % 5 {
            0 => {
                let e = a.event(None, a.join_request(None));
                (
                    Submission {
                        event: hex::encode(e.encode()?),
                        secrets: None,
                    },
                    "bad_signature",
                )
            }
            1 => {
                let mut e = a.event(None, a.join_request(None));
                stranger.sign(&mut e)?;
                (
                    Submission {
                        event: hex::encode(e.encode()?),
                        secrets: None,
                    },
                    "bad_signature",
                )
            }
            2 => {
                let mut e = a.event(
                    Some(ghost),
                    HandshakeJoinRequest {
                        instance_id: ghost.into(),
                        module_name: K3sModule::K3sAgent,
                        target_cluster_id: None,
                    },
                );
                stranger.sign(&mut e)?;
                (
                    Submission {
                        event: hex::encode(e.encode()?),
                        secrets: None,
                    },
                    "unknown_instance",
                )
            }
            3 => (
                Submission {
                    event: format!("zz{i}"),
                    secrets: None,
                },
                "malformed_event",
            ),
            _ => (
                Submission {
                    event: "00".repeat(40_000),
                    secrets: None,
                },
                "submission_too_large",
            ),
        };
        bodies.push((serde_json::to_vec(&body.0)?, body.1));
    }
    let client = &a.client;
    use futures::StreamExt as _;
    let mut answers = futures::stream::iter(bodies.into_iter().map(|(body, want)| async move {
        let r = request(client, subjects::SUBMIT, body).await?;
        ensure!(error_code(&r) == Ok(want), "expected {want}: {r}");
        Ok::<_, anyhow::Error>(())
    }))
    .buffer_unordered(32);
    let mut n = 0;
    while let Some(r) = answers.next().await {
        r?;
        n += 1;
    }
    ensure!(n == 2000);
    let after = p.settle().await?;
    ensure!(
        after - before <= 1,
        "2,000 junk submissions grew the log by {} events: {:?}",
        after - before,
        kinds(&added_since(&p, before).await?)
    );
    // Signed by the enrolled key: recorded, one by one.
    for _ in 0..2 {
        let e = a.signed(powernode_events::payloads::k3s::ClusterActivated {
            cluster_id: "cluster-00000000000000000000000000000000".into(),
        })?;
        let r = a.submit(&e, None).await?;
        ensure!(error_code(&r) == Ok("kind_not_allowed"), "{r}");
    }
    p.settle().await?;
    let recorded: Vec<Value> = added_since(&p, after)
        .await?
        .into_iter()
        .map(|(_, e)| serde_json::to_value(&e))
        .collect::<Result<_, _>>()?;
    ensure!(
        recorded.len() == 2
            && recorded
                .iter()
                .all(|e| e["kind"] == REJECTED
                    && e["payload"]["instance_id"] == a.instance_id.as_str()),
        "{recorded:?}"
    );

    // Once the window (a minute) closes, one summary counts them all.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let summary = loop {
        let found = p
            .log_events("system.agent.submissions_rejected_summary")
            .await?;
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    ensure!(summary.len() == 1, "one summary: {summary:?}");
    let EventPayload::AgentSubmissionsRejectedSummary(s) = &summary[0].1.payload else {
        unreachable!("filtered by kind")
    };
    let by_reason: Vec<(&str, u64)> = s.by_reason.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ensure!(
        s.count == 2000
            && by_reason
                == [
                    ("bad_signature", 800),
                    ("malformed_event", 400),
                    ("submission_too_large", 400),
                    ("unknown_instance", 400),
                ],
        "the summary counts every junk submission by reason: {s:?}"
    );
    Ok(())
}
