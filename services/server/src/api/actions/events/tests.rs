//! The index's answers are the scan's: the same queries on one log, one
//! answered by [`indexed`] (with rings small enough to drop records, and an
//! index that has not folded the whole log), one by [`scan`].

use super::{indexed, scan};
use crate::api::index::EventIndex;
use crate::api::sse::query::Scope;
use powernode_events::payloads::k3s::{
    ClusterActivated, JoinTokenRotated, KubeconfigRetrieved, NodeRegistered, NodeRole,
};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::{EventLog, Expect, Filter};

/// A small deterministic generator (no seed file to keep).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn event(rng: &mut Lcg) -> Envelope {
    let account = AccountId::new(format!("acct-{}", rng.below(2))).unwrap();
    let cluster = format!("cluster-{}", rng.below(4));
    let instance = format!("inst-{}", rng.below(6));
    let p: EventPayload = match rng.below(4) {
        0 => NodeRegistered {
            cluster_id: cluster,
            instance_id: instance,
            role: NodeRole::Worker,
        }
        .into(),
        1 => ClusterActivated {
            cluster_id: cluster,
        }
        .into(),
        2 => JoinTokenRotated {
            cluster_id: cluster,
            token_fingerprint: "sha256:00".into(),
        }
        .into(),
        _ => KubeconfigRetrieved {
            cluster_id: cluster,
            // An id-shaped string that is no cluster's: indexed all the same.
            fingerprint: instance,
        }
        .into(),
    };
    Envelope::new(account, Actor::service("test"), p)
}

#[tokio::test]
async fn indexed_answers_equal_the_scan_s() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let mut rng = Lcg(19);
    for _ in 0..600 {
        log.append(&event(&mut rng), Expect::Any).await.unwrap();
    }
    let last = log.last_seq().await.unwrap();
    // Rings of 5 drop most records; the index stops 40 records short of the end.
    let index = EventIndex::with_ring(5);
    index.fold(&log.read(1, 560, &Filter::all()).await.unwrap());
    assert_eq!(index.applied(), 560);
    let mut checked = 0;
    for account in ["acct-0", "acct-1"] {
        for (cluster, instance) in [
            (Some("cluster-1"), None),
            (None, Some("inst-2")),
            (Some("cluster-3"), Some("inst-4")),
            (Some("cluster-nope"), None),
        ] {
            for kind in [None, Some("system.k3s.node"), Some("system.k3s.kubeconfig")] {
                let scope = Scope::new(
                    AccountId::new(account).unwrap(),
                    kind.map(str::to_string),
                    cluster.map(str::to_string),
                    instance.map(str::to_string),
                );
                let id = indexed::indexed_id(&scope).unwrap();
                for limit in [1, 3, 7, 50, 1000] {
                    let by_index = indexed::newest(&log, &index, &scope, id, limit, last)
                        .await
                        .unwrap();
                    let by_scan = scan::newest_in(&log, &scope, limit, 1, last).await.unwrap();
                    assert_eq!(by_index, by_scan, "{account} {scope:?} newest {limit}");
                    for from in [1, 200, 555, 590, last + 1] {
                        let by_index = indexed::oldest(&log, &index, &scope, id, from, last, limit)
                            .await
                            .unwrap();
                        let by_scan = scan::oldest_in(&log, &scope, from, last, limit)
                            .await
                            .unwrap();
                        assert_eq!(by_index, by_scan, "{account} {scope:?} from {from} {limit}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 4 * 3 * 5);
    // Some answers were not empty (the comparison is not of nothing to nothing).
    let scope = Scope::new(
        AccountId::new("acct-0").unwrap(),
        None,
        Some("cluster-1".into()),
        None,
    );
    let all = indexed::newest(&log, &index, &scope, "cluster-1", 1000, last)
        .await
        .unwrap();
    assert!(all.len() > 20, "{}", all.len());
}

#[test]
fn a_filter_that_cannot_be_an_id_is_scanned() {
    let account = AccountId::new("acct-0").unwrap();
    let scope = Scope::new(account.clone(), None, Some("prod cluster".into()), None);
    assert_eq!(indexed::indexed_id(&scope), None);
    let scope = Scope::new(
        account,
        None,
        Some("prod cluster".into()),
        Some("inst-1".into()),
    );
    assert_eq!(indexed::indexed_id(&scope), Some("inst-1"));
}
