//! The effects, executed against an embedded log.

use super::*;

/// `g`'s events in an embedded log (sequences as in the example), and a
/// failover reactor on it.
async fn reactor_on_log(
    g: &Given,
    dir: &std::path::Path,
    policy: FailoverPolicy,
) -> (
    powernode_log::SharedLog,
    Failover,
    crate::liveness::SharedLiveness,
) {
    use powernode_log::Expect;
    let log = powernode_log::embedded::EmbeddedLog::open_shared(dir).unwrap();
    for (seq, event) in &g.stream.events {
        assert_eq!(log.append(event, Expect::Any).await.unwrap().seq, *seq);
    }
    let liveness = Liveness::shared();
    let config = FailoverConfig {
        policy,
        ..FailoverConfig::default()
    };
    (
        log.clone(),
        Failover::new(log, liveness.clone(), config),
        liveness,
    )
}

#[tokio::test]
async fn a_standing_proposal_brings_its_approval_request_and_a_second_answer_is_moot() {
    use powernode_runtime::{Outbox, Reactor};
    let dir = tempfile::tempdir().unwrap();
    let mut g = with_candidate();
    let holder = g.ids.server_peer.clone();
    let s = silent(&g, &holder);
    g.and(s);
    let (log, mut reactor, liveness) =
        reactor_on_log(&g, dir.path(), FailoverPolicy::RequireApproval).await;
    let now = g.now_plus(Duration::seconds(1));
    liveness.record(&g.ids.worker, now);
    let (seq, _) = g.last_pair();

    let (_, mut effects) = g.decide(&mut reactor, now).into_parts();
    let mut outbox = Outbox::default();
    reactor
        .execute(seq, &mut effects, &mut outbox)
        .await
        .unwrap();
    assert!(effects.is_empty(), "every effect done");
    assert_eq!(
        log.last_seq().await.unwrap(),
        seq + 1,
        "the proposal landed"
    );
    assert!(matches!(
        outbox.events(),
        [e] if matches!(e.payload, EventPayload::ApprovalRequested(_))
    ));

    // Another replica, hearing no one, answers the same silence otherwise.
    let (_, mut other) = g
        .decide(
            &mut Failover::new(log.clone(), Liveness::shared(), FailoverConfig::default()),
            now,
        )
        .into_parts();
    assert!(matches!(&other[..], [Effect::DecideOnce { decision, .. }]
        if matches!(decision.payload, EventPayload::FailoverNoCandidate(_))));
    let mut outbox = Outbox::default();
    reactor.execute(seq, &mut other, &mut outbox).await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), seq + 1, "no second answer");
    assert!(outbox.events().is_empty());
}

#[tokio::test]
async fn promotions_wait_for_the_end_of_the_batch() {
    use powernode_runtime::{Outbox, Reactor};
    let dir = tempfile::tempdir().unwrap();
    let mut g = with_candidate();
    let holder = g.ids.server_peer.clone();
    let s = silent(&g, &holder);
    g.and(s);
    let (log, mut reactor, liveness) = reactor_on_log(&g, dir.path(), FailoverPolicy::Auto).await;
    let now = g.now_plus(Duration::seconds(1));
    liveness.record(&g.ids.worker, now);
    let (seq, _) = g.last_pair();

    let (_, mut effects) = g.decide(&mut reactor, now).into_parts();
    assert!(matches!(&effects[..], [Effect::Promote(_)]));
    reactor
        .execute(seq, &mut effects, &mut Outbox::default())
        .await
        .unwrap();
    assert_eq!(log.last_seq().await.unwrap(), seq, "nothing appended yet");
    reactor.end_batch().await.unwrap();
    let found = log
        .read(seq + 1, 10, &powernode_log::Filter::all())
        .await
        .unwrap();
    let [promoted] = &found[..] else {
        panic!("{found:?}")
    };
    let e = powernode_events::Envelope::decode(&promoted.bytes).unwrap();
    let EventPayload::VirtualIpPromoted(p) = e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(p.to_peer_id, g.ids.worker_peer);
    // Done once: a second end of batch appends nothing.
    reactor.end_batch().await.unwrap();
    assert_eq!(log.last_seq().await.unwrap(), seq + 1);
}
