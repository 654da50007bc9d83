//! Candidates, their scores, and flap damping.

use super::*;

fn scored_at(g: &Given, liveness: &Liveness, now: DateTime<Utc>) -> Vec<candidates::Scored> {
    let config = FailoverConfig::default();
    candidates::candidates(
        &g.state(),
        &acct(ACCOUNT),
        &vip(g),
        None,
        &Scoring {
            liveness,
            threshold: config.threshold(),
            window: config.window(),
            now,
        },
    )
}

#[test]
fn a_fresh_candidate_on_the_vips_network_scores_full_marks() {
    let g = with_candidate();
    let now = g.now_plus(Duration::seconds(1));
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now - Duration::milliseconds(500));
    let scored = scored_at(&g, &liveness, now);
    let [only] = &scored[..] else {
        panic!("{scored:?}")
    };
    assert_eq!(only.candidate.peer_id, g.ids.worker_peer);
    assert_eq!(only.candidate.score, 1.0);
    assert!(only.alive);
    assert_eq!(
        only.candidate.reasons,
        [
            "ready k3s-server",
            "heartbeat 0.5 s ago",
            "same SD-WAN network"
        ]
    );
    assert_eq!(candidates::best(&scored), Some(&only.candidate));
}

#[test]
fn freshness_falls_from_a_third_of_the_threshold_to_nothing_at_it() {
    let g = with_candidate();
    let now = g.now_plus(Duration::seconds(1));
    // 2 s of a 3 s threshold: halfway between 1 s and 3 s.
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now - Duration::seconds(2));
    let scored = scored_at(&g, &liveness, now);
    assert_eq!(scored[0].candidate.score, 0.75);
    assert!(scored[0].alive);
    // At the threshold: listed, scored without freshness, never promoted.
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now - Duration::seconds(3));
    let scored = scored_at(&g, &liveness, now);
    assert_eq!(scored[0].candidate.score, 0.5);
    assert!(!scored[0].alive);
    assert_eq!(candidates::best(&scored), None);
}

#[test]
fn a_candidate_never_heard_is_listed_but_not_promoted() {
    let g = with_candidate();
    let now = g.now_plus(Duration::seconds(1));
    let scored = scored_at(&g, &Liveness::default(), now);
    assert_eq!(scored.len(), 1);
    assert!(scored[0]
        .candidate
        .reasons
        .contains(&"no heartbeat heard yet".to_string()));
    assert_eq!(candidates::best(&scored), None);
}

#[test]
fn each_recent_loss_of_the_vip_costs_a_candidate_a_third_of_the_flap_score() {
    let mut g = with_candidate();
    let (vip_id, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    // The VIP went to the worker and came back: the worker lost it once.
    for (generation, from, to) in [(2, &server, &worker), (3, &worker, &server)] {
        g.and(VirtualIpPromoted {
            virtual_ip_id: vip_id.clone(),
            from_peer_id: Some(from.clone()),
            to_peer_id: to.clone(),
            generation,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        });
    }
    let now = g.now_plus(Duration::seconds(1));
    let liveness = Liveness::default();
    liveness.record(&g.ids.worker, now);
    let scored = scored_at(&g, &liveness, now);
    assert_eq!(scored[0].candidate.score, 0.93);
    assert!(scored[0].candidate.reasons[3].starts_with("lost this VIP 1×"));
}

#[test]
fn a_worker_that_is_not_ready_in_the_cluster_is_no_candidate() {
    let mut g = with_candidate();
    let worker = g.ids.worker.clone();
    g.and(InstanceTerminated {
        instance_id: worker,
    });
    let now = g.now_plus(Duration::seconds(1));
    assert!(scored_at(&g, &Liveness::default(), now).is_empty());
}

// Damping.

#[test]
fn damping_holds_back_within_the_cooldown_and_past_the_rate() {
    let config = FailoverConfig::default();
    let mut g = with_candidate();
    assert_eq!(config.damped(&vip(&g), g.now_plus(Duration::zero())), None);
    let (vip_id, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    for generation in 2..=4 {
        let (from, to) = if generation % 2 == 0 {
            (&server, &worker)
        } else {
            (&worker, &server)
        };
        g.and(VirtualIpPromoted {
            virtual_ip_id: vip_id.clone(),
            from_peer_id: Some(from.clone()),
            to_peer_id: to.clone(),
            generation,
            reason: "test".into(),
            to_instance_id: None,
            approval_id: None,
        });
    }
    let last = g.last().occurred_at;
    let cooldown = config
        .damped(&vip(&g), last + Duration::seconds(10))
        .expect("within the cooldown");
    assert!(
        cooldown.starts_with("cooldown: last promotion 10.0 s ago"),
        "{cooldown}"
    );
    let rate = config
        .damped(&vip(&g), last + Duration::seconds(60))
        .expect("3 promotions within the window");
    assert_eq!(rate, "3 promotions in the last 600 s (max 3)");
    assert_eq!(config.damped(&vip(&g), last + Duration::seconds(700)), None);
}
