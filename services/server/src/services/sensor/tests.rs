//! The sensor's rules, given/when/then, and its detector on tokio's
//! paused clock.

use super::*;
use crate::liveness::Liveness;
use crate::services::given::*;
use chrono::Duration as Span;
use powernode_events::payloads::sdwan::{VirtualIpPromoted, VirtualIpReleased};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::Filter;

const THRESHOLD: Duration = Duration::from_secs(3);

fn observed(g: &Given, liveness: &Liveness, now: DateTime<Utc>) -> Vec<Envelope> {
    observe(&g.state(), liveness, THRESHOLD, "sensor@test", now)
}

/// The holder's instance heard at `at`.
fn heard(g: &Given, at: DateTime<Utc>) -> Liveness {
    let liveness = Liveness::default();
    liveness.record(&g.ids.server, at);
    liveness
}

#[test]
fn a_holder_heard_within_the_threshold_is_not_silent() {
    let g = Given::active_cluster();
    let now = g.now_plus(Span::seconds(1));
    assert!(observed(&g, &heard(&g, now - Span::seconds(3)), now).is_empty());
}

#[test]
fn a_holder_quiet_past_the_threshold_is_reported_silent_once_per_episode() {
    let mut g = Given::active_cluster();
    let now = g.now_plus(Span::seconds(1));
    let last = now - Span::milliseconds(3001);
    let events = observed(&g, &heard(&g, last), now);
    let [e] = &events[..] else {
        panic!("{events:?}")
    };
    let EventPayload::VipHolderSilent(p) = &e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(p.virtual_ip_id, g.ids.vip);
    assert_eq!(p.holder_peer_id, g.ids.server_peer);
    assert_eq!(
        p.last_seen_at,
        last.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    assert_eq!(p.threshold_ms, 3000);
    assert_eq!(p.observer, "sensor@test");
    // Seen again (a restart, a second replica): the same event.
    assert_eq!(observed(&g, &heard(&g, last), now)[0].id, e.id);
    // Once folded, the episode is not reported again.
    g.and(e.payload.clone());
    assert!(observed(&g, &heard(&g, last), now).is_empty());
}

#[test]
fn a_holder_just_promoted_gets_the_threshold_from_its_promotion() {
    let mut g = Given::joined_worker();
    let (vip, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    g.and(VirtualIpPromoted {
        virtual_ip_id: vip,
        from_peer_id: Some(server),
        to_peer_id: worker,
        generation: 2,
        reason: "test".into(),
        to_instance_id: None,
        approval_id: None,
    });
    let promoted = g.last().occurred_at;
    // The new holder was last heard long ago, but was promoted just now.
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, promoted - Span::minutes(10));
    assert!(observed(&g, &liveness, promoted + Span::seconds(2)).is_empty());
    let late = observed(&g, &liveness, promoted + Span::seconds(4));
    let [e] = &late[..] else { panic!("{late:?}") };
    let EventPayload::VipHolderSilent(p) = &e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(p.holder_peer_id, g.ids.worker_peer);
}

#[test]
fn a_silent_holder_heard_again_has_recovered() {
    let mut g = Given::active_cluster();
    let now = g.now_plus(Span::seconds(1));
    let last = now - Span::seconds(5);
    let silence = observed(&g, &heard(&g, last), now).remove(0);
    g.and(silence.payload.clone());
    let back = now + Span::seconds(2);
    let events = observed(&g, &heard(&g, back), back);
    let [e] = &events[..] else {
        panic!("{events:?}")
    };
    let EventPayload::VipHolderRecovered(p) = &e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(p.holder_peer_id, g.ids.server_peer);
    assert_eq!(p.silent_for_ms, 7000);
    assert_ne!(e.id, silence.id);
}

#[test]
fn a_released_vip_is_not_watched() {
    let mut g = Given::active_cluster();
    let vip = g.ids.vip.clone();
    g.and(VirtualIpReleased {
        virtual_ip_id: vip,
        reason: "gone".into(),
    });
    let now = g.now_plus(Span::seconds(1));
    assert!(observed(&g, &heard(&g, now - Span::minutes(5)), now).is_empty());
}

#[test]
fn the_detector_looks_a_few_times_per_threshold() {
    assert_eq!(tick_for(Duration::from_secs(3)), Duration::from_millis(50));
    assert_eq!(
        tick_for(Duration::from_millis(400)),
        Duration::from_millis(20)
    );
    assert_eq!(
        tick_for(Duration::from_millis(1)),
        Duration::from_millis(10)
    );
}

#[tokio::test(start_paused = true)]
async fn the_detector_appends_a_silence_soon_after_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open_shared(dir.path()).unwrap();
    let g = Given::active_cluster();
    let shared: Shared<FleetState> = Shared::default();
    *shared.state.write().await = g.state();
    let clock = paused_clock(g.now_plus(Span::seconds(1)));
    let liveness = Liveness::shared();
    liveness.record(&g.ids.server, clock());
    let stop = CancellationToken::new();
    let detector = tokio::spawn(run_detector(
        log.clone(),
        shared.clone(),
        liveness,
        FailoverConfig::default(),
        clock,
        stop.clone(),
    ));
    let records = || async { log.read(1, 10, &Filter::all()).await.unwrap() };

    tokio::time::advance(Duration::from_millis(2950)).await;
    assert!(
        settled_for(Duration::from_millis(20), &records)
            .await
            .is_empty(),
        "silent before the threshold"
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    let found = settled(&records).await;
    assert_eq!(found.len(), 1, "one silence after the threshold");
    let event = Envelope::decode(&found[0].bytes).unwrap();
    assert!(matches!(event.payload, EventPayload::VipHolderSilent(_)));
    // Further looks before the projection shows it report nothing new.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(records().await.len(), 1);

    stop.cancel();
    detector.await.unwrap();
}
