//! Approvals: granted ones become promotions; what supersedes a waiting one.

use super::*;

#[test]
fn a_granted_approval_promotes_the_proposed_candidate() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let r = rules(FailoverPolicy::RequireApproval);
    r.liveness.record(&g.ids.worker, next_decision_time(&g));
    let out = when(
        &mut g,
        &r,
        ApprovalGranted {
            approval_id: "appr-1".into(),
        },
    );
    let (p, _) = promotion(&out);
    assert_eq!(p.to_peer_id, g.ids.worker_peer);
    assert_eq!(p.generation, 2);
    assert_eq!(p.reason, "approved_failover");
    assert_eq!(p.approval_id.as_deref(), Some("appr-1"));
}

#[test]
fn a_granted_approval_whose_candidate_left_is_superseded() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let worker = g.ids.worker.clone();
    g.and(InstanceTerminated {
        instance_id: worker,
    });
    let r = rules(FailoverPolicy::RequireApproval);
    let out = when(
        &mut g,
        &r,
        ApprovalGranted {
            approval_id: "appr-1".into(),
        },
    );
    assert_eq!(
        superseded(&out),
        [(
            "appr-1".to_string(),
            format!(
                "candidate {} is no longer a ready member",
                g.ids.worker_peer
            )
        )]
    );
}

#[test]
fn a_granted_approval_of_another_action_or_unknown_is_not_a_promotion() {
    let mut g = with_candidate();
    let r = rules(FailoverPolicy::RequireApproval);
    g.and(ApprovalRequested {
        approval_id: "appr-x".into(),
        action: "something_else".into(),
        subject: "virtual_ip/x".into(),
        summary: "x".into(),
        expires_at: "2099-01-01T00:00:00Z".into(),
    });
    for id in ["appr-x", "appr-unknown"] {
        let out = when(
            &mut g,
            &r,
            ApprovalGranted {
                approval_id: id.into(),
            },
        );
        assert!(out.is_empty(), "{id}");
    }
}

#[test]
fn a_holder_heard_again_supersedes_its_waiting_proposal() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let r = rules(FailoverPolicy::RequireApproval);
    let (vip_id, holder) = (g.ids.vip.clone(), g.ids.server_peer.clone());
    let out = when(
        &mut g,
        &r,
        VipHolderRecovered {
            virtual_ip_id: vip_id,
            holder_peer_id: holder.clone(),
            silent_for_ms: 4000,
        },
    );
    assert_eq!(
        superseded(&out),
        [(
            "appr-1".to_string(),
            format!("holder {holder} was heard again")
        )]
    );
}

#[test]
fn a_promotion_supersedes_the_other_waiting_approvals_about_the_vip() {
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let r = rules(FailoverPolicy::RequireApproval);
    let (vip_id, server, worker) = (
        g.ids.vip.clone(),
        g.ids.server_peer.clone(),
        g.ids.worker_peer.clone(),
    );
    let forced = VirtualIpPromoted {
        virtual_ip_id: vip_id,
        from_peer_id: Some(server),
        to_peer_id: worker.clone(),
        generation: 2,
        reason: "forced".into(),
        to_instance_id: None,
        approval_id: None,
    };
    let out = when(&mut g, &r, forced.clone());
    assert_eq!(
        superseded(&out),
        [(
            "appr-1".to_string(),
            format!("the VIP was promoted to {worker} at generation 2 (forced)")
        )]
    );
    // The promotion that carried out the approval does not supersede it.
    let mut g = with_candidate();
    propose(&mut g, "appr-1");
    let out = when(
        &mut g,
        &r,
        VirtualIpPromoted {
            approval_id: Some("appr-1".into()),
            ..forced
        },
    );
    assert!(out.is_empty());
}
