//! The agent's NATS link against a real nats-server: a heartbeat whose
//! answer never comes (the intake's server died with it) fails fast, so the
//! agent beats again long before the silence threshold, instead of waiting
//! for the 30 s request timeout (the rig's NATS-node kill made a live holder
//! look silent that way).
//!
//! `cargo test -p powernode-tests --test agent_link`.

use anyhow::ensure;
use futures::StreamExt;
use powernode_agent::link::{AgentLink, LinkError, NatsLink, HEARTBEAT_TIMEOUT};
use powernode_protocol::{subjects, Heartbeat};
use powernode_tests::nats::NatsServer;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_heartbeat_fails_within_the_heartbeat_timeout() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    // A responder that takes the request and never answers.
    let intake = powernode_tests::nats::connect(server.url()).await?;
    let mut requests = intake
        .queue_subscribe(subjects::heartbeat_of("inst-1"), "pn-intake".into())
        .await?;
    intake.flush().await?;

    let link = NatsLink::connect_with(
        &server.url(),
        &powernode_tests::nats::platform_link_auth(&server.url()),
    )
    .await?;
    let hb = Heartbeat {
        instance_id: "inst-1".into(),
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
        held_vips: Vec::new(),
        after_seq: None,
        wireguard_applied: Vec::new(),
        vip_probes: Vec::new(),
        report: None,
        signature: String::new(),
    };
    let started = Instant::now();
    let result = link.heartbeat(hb.clone()).await;
    let waited = started.elapsed();
    ensure!(
        matches!(result, Err(LinkError::Unavailable(_))),
        "an unanswered heartbeat answered {result:?}"
    );
    ensure!(
        waited < HEARTBEAT_TIMEOUT + Duration::from_millis(500),
        "the agent waited {waited:?} for a lost heartbeat answer"
    );
    let taken = tokio::time::timeout(Duration::from_secs(1), requests.next()).await;
    ensure!(
        matches!(taken, Ok(Some(_))),
        "the request never reached the responder"
    );
    // Unanswered again: an intake slow rather than gone gets longer.
    let started = Instant::now();
    let result = link.heartbeat(hb).await;
    let waited = started.elapsed();
    ensure!(
        matches!(result, Err(LinkError::Unavailable(_)))
            && waited >= HEARTBEAT_TIMEOUT * 2 - Duration::from_millis(100)
            && waited < HEARTBEAT_TIMEOUT * 2 + Duration::from_millis(700),
        "the second unanswered heartbeat waited {waited:?} ({result:?}), expected about twice {HEARTBEAT_TIMEOUT:?}"
    );
    Ok(())
}
