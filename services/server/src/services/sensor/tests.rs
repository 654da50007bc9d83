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

mod data_path {
    use super::*;
    use crate::liveness::dataplane::ProbeReport;
    use powernode_events::payloads::sdwan::VirtualIpReachable;

    /// The worker's probe of the VIP heard at `at`: reached `answered_by`
    /// at `generation`, or nothing.
    fn probe(answered_by: Option<(&str, u64)>, at: DateTime<Utc>) -> ProbeReport {
        ProbeReport {
            reached: answered_by.is_some(),
            answered_by: answered_by.map(|(by, _)| by.to_string()),
            generation: answered_by.map(|(_, g)| g),
            probed_at_ms: at.timestamp_millis(),
            heard_at: at,
        }
    }

    /// A joined worker, and the VIP (held by the server at generation 1)
    /// reached once through the tunnel.
    fn reached_once() -> Given {
        let mut g = Given::joined_worker();
        let payload = VirtualIpReachable {
            virtual_ip_id: g.ids.vip.clone(),
            generation: 1,
            holder_peer_id: g.ids.server_peer.clone(),
            probed_by_peer_id: g.ids.worker_peer.clone(),
            probed_at: g.last().occurred_at.to_rfc3339(),
        };
        g.and(payload);
        g
    }

    /// The worker's probes failing every 500 ms from `from` to `to`, the
    /// holder heard at `to`.
    fn failing(g: &Given, from: DateTime<Utc>, to: DateTime<Utc>) -> Liveness {
        let liveness = heard(g, to);
        applied_newest(&liveness, g);
        let mut at = from;
        while at <= to {
            liveness.record_probe(&g.ids.worker, &g.ids.vip, probe(None, at));
            at += Span::milliseconds(500);
        }
        liveness
    }

    /// Both the server's and the worker's agents report having applied the
    /// newest WireGuard config (their probes count as evidence).
    fn applied_newest(liveness: &Liveness, g: &Given) {
        for instance in [&g.ids.server, &g.ids.worker] {
            liveness.record_applied(
                instance,
                &[powernode_protocol::AppliedConfig {
                    network_id: g.ids.network.clone(),
                    revision: u64::MAX,
                }],
            );
        }
    }

    fn silence_of(events: &[Envelope]) -> &VipHolderSilent {
        match events {
            [e] => match &e.payload {
                EventPayload::VipHolderSilent(p) => p,
                other => panic!("{other:?}"),
            },
            other => panic!("expected one silence, got {other:?}"),
        }
    }

    /// Failures past the threshold are no evidence while either end's
    /// tunnel lacks the other: the prober's route to the holder (the
    /// worker applied an older config) or the holder's way back (the
    /// server has not applied a config with the worker in it).
    #[test]
    fn probes_count_only_once_both_ends_have_their_configs() {
        let g = reached_once();
        let t0 = g.now_plus(Span::seconds(1));
        let late = t0 + Span::milliseconds(3500);
        assert_eq!(observed(&g, &failing(&g, t0, late), late).len(), 1);
        for behind in [&g.ids.worker, &g.ids.server] {
            let liveness = failing(&g, t0, late);
            liveness.record_applied(
                behind,
                &[powernode_protocol::AppliedConfig {
                    network_id: g.ids.network.clone(),
                    revision: 0,
                }],
            );
            assert!(observed(&g, &liveness, late).is_empty(), "{behind} behind");
        }
    }

    #[test]
    fn a_holder_that_beats_but_does_not_answer_is_silent_on_the_data_path() {
        let g = reached_once();
        let t0 = g.now_plus(Span::seconds(1));
        // Failing for less than the threshold: nothing yet.
        let early = t0 + Span::milliseconds(2900);
        assert!(observed(&g, &failing(&g, t0, early), early).is_empty());
        // Past it: one data-path silence, dated from the first failure.
        let late = t0 + Span::milliseconds(3500);
        let events = observed(&g, &failing(&g, t0, late), late);
        let p = silence_of(&events);
        assert_eq!(p.reason, SilenceReason::DataPath);
        assert_eq!(p.holder_peer_id, g.ids.server_peer);
        assert_eq!(
            p.last_seen_at,
            t0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
    }

    #[test]
    fn one_prober_reaching_the_holder_keeps_it_healthy() {
        let g = reached_once();
        let t0 = g.now_plus(Span::seconds(1));
        let late = t0 + Span::seconds(5);
        let liveness = failing(&g, t0, late);
        // After seconds of failures, the worker's newest probe reaches
        // the holder.
        liveness.record_probe(
            &g.ids.worker,
            &g.ids.vip,
            probe(Some((&g.ids.server, 1)), late + Span::milliseconds(100)),
        );
        let now = late + Span::milliseconds(100);
        assert!(observed(&g, &liveness, now).is_empty());
    }

    #[test]
    fn probes_of_strangers_and_of_the_holder_itself_do_not_count() {
        let g = reached_once();
        let t0 = g.now_plus(Span::seconds(1));
        let late = t0 + Span::seconds(5);
        let liveness = heard(&g, late);
        let mut at = t0;
        while at <= late {
            // An instance of no account here, and the holder itself.
            liveness.record_probe("inst-elsewhere", &g.ids.vip, probe(None, at));
            liveness.record_probe(&g.ids.server, &g.ids.vip, probe(None, at));
            at += Span::milliseconds(500);
        }
        assert!(observed(&g, &liveness, late).is_empty());
    }

    #[test]
    fn a_vip_never_reached_since_allocation_is_not_judged() {
        let g = Given::joined_worker();
        let t0 = g.now_plus(Span::seconds(1));
        let late = t0 + Span::seconds(10);
        assert!(observed(&g, &failing(&g, t0, late), late).is_empty());
    }

    #[test]
    fn stale_probes_say_nothing() {
        let g = reached_once();
        let t0 = g.now_plus(Span::seconds(1));
        let end = t0 + Span::seconds(5);
        let liveness = failing(&g, t0, end);
        // The prober went quiet long ago; the holder is heard now.
        let now = end + Span::seconds(60);
        liveness.record(&g.ids.server, now);
        assert!(observed(&g, &liveness, now).is_empty());
    }

    #[test]
    fn after_a_promotion_an_answer_from_the_old_holder_is_a_failure() {
        let mut g = Given::joined_worker();
        let (vip, server, worker) = (
            g.ids.vip.clone(),
            g.ids.server_peer.clone(),
            g.ids.worker_peer.clone(),
        );
        g.and(VirtualIpPromoted {
            virtual_ip_id: vip.clone(),
            from_peer_id: Some(server),
            to_peer_id: worker,
            generation: 2,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        });
        let promoted = g.last().occurred_at;
        // The new holder (the worker) beats; the server probes the VIP and
        // the old holder (itself, still holding at generation 1) answers.
        let end = promoted + Span::milliseconds(3600);
        let liveness = Liveness::default();
        liveness.record(&g.ids.worker, end);
        applied_newest(&liveness, &g);
        let mut at = promoted + Span::milliseconds(100);
        while at <= end {
            liveness.record_probe(&g.ids.server, &vip, probe(Some((&g.ids.server, 1)), at));
            at += Span::milliseconds(500);
        }
        let events = observed(&g, &liveness, end);
        let p = silence_of(&events);
        assert_eq!(p.reason, SilenceReason::DataPath);
        assert_eq!(p.holder_peer_id, g.ids.worker_peer);
        // Answered by the new holder at the new generation: healthy.
        liveness.record_probe(
            &g.ids.server,
            &vip,
            probe(Some((&g.ids.worker, 2)), end + Span::milliseconds(1)),
        );
        assert!(observed(&g, &liveness, end + Span::milliseconds(1)).is_empty());
    }

    #[test]
    fn a_data_path_silence_ends_when_a_probe_reaches_the_holder_not_on_a_beat() {
        let mut g = reached_once();
        let t0 = g.now_plus(Span::seconds(1));
        let late = t0 + Span::seconds(4);
        let liveness = failing(&g, t0, late);
        let silence = observed(&g, &liveness, late).remove(0);
        g.and(silence.payload.clone());
        // Heartbeats alone do not end it.
        let later = late + Span::seconds(1);
        liveness.record(&g.ids.server, later);
        liveness.record_probe(&g.ids.worker, &g.ids.vip, probe(None, later));
        assert!(observed(&g, &liveness, later).is_empty());
        // A probe reaching the holder does.
        let back = later + Span::milliseconds(500);
        liveness.record_probe(
            &g.ids.worker,
            &g.ids.vip,
            probe(Some((&g.ids.server, 1)), back),
        );
        let events = observed(&g, &liveness, back);
        let [e] = &events[..] else {
            panic!("{events:?}")
        };
        let EventPayload::VipHolderRecovered(p) = &e.payload else {
            panic!("{e:?}")
        };
        assert_eq!(p.holder_peer_id, g.ids.server_peer);
        assert_eq!(p.silent_for_ms, 5500);
    }

    #[tokio::test(start_paused = true)]
    async fn the_detector_reports_a_zombie_holder_after_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open_shared(dir.path()).unwrap();
        let g = reached_once();
        let shared: Shared<FleetState> = Shared::default();
        *shared.state.write().await = g.state();
        let clock = paused_clock(g.now_plus(Span::seconds(1)));
        let liveness = Liveness::shared();
        let stop = CancellationToken::new();
        let detector = tokio::spawn(run_detector(
            log.clone(),
            shared.clone(),
            liveness.clone(),
            FailoverConfig::default(),
            clock.clone(),
            stop.clone(),
        ));
        let records = || async { log.read(1, 10, &Filter::all()).await.unwrap() };
        // The holder beats and the worker's probes fail, every 100 ms.
        let beat = |liveness: &Liveness| {
            liveness.record(&g.ids.server, clock());
            applied_newest(liveness, &g);
            liveness.record_probe(&g.ids.worker, &g.ids.vip, probe(None, clock()));
        };
        for _ in 0..29 {
            beat(&liveness);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert!(
            settled_for(Duration::from_millis(20), &records)
                .await
                .is_empty(),
            "not silent before the threshold"
        );
        for _ in 0..3 {
            beat(&liveness);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let found = settled(&records).await;
        assert_eq!(found.len(), 1, "one data-path silence");
        let event = Envelope::decode(&found[0].bytes).unwrap();
        let EventPayload::VipHolderSilent(p) = &event.payload else {
            panic!("{event:?}")
        };
        assert_eq!(p.reason, SilenceReason::DataPath);
        stop.cancel();
        detector.await.unwrap();
    }
}
