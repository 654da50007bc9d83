//! Batching: which node goes in which batch, in what order.
//!
//! The rules, in order of precedence:
//! 1. a VIP holder goes last, alone in its own batch (its VIPs are moved
//!    to an upgraded server before it is touched);
//! 2. the control-plane servers of one cluster in one batch never exceed
//!    [`quorum_limit`] of that cluster's server count; a server that would
//!    exceed it waits for a later batch;
//! 3. a batch holds at most [`batch_size`] nodes;
//! 4. workers before servers, then by node name, then by instance id, so
//!    the same state always gives the same plan (a dry run is the plan
//!    that runs).
//!
//! Batches are filled first-fit: each batch takes, in order, every waiting
//! node that fits rules 2 and 3.

use powernode_events::payloads::k3s::K3sModule;
use powernode_events::payloads::skills::{PlanStep, PlannedVipMove, StepAction};

/// A node the plan will touch, before it has a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The instance.
    pub instance_id: String,
    /// Its Kubernetes node name (hostname).
    pub node_name: String,
    /// The module the step works on.
    pub role: K3sModule,
    /// Its cluster.
    pub cluster_id: Option<String>,
    /// When it is a control-plane server of its cluster: how many servers
    /// that cluster has (the quorum rule's `n`); `None`: no quorum limit.
    pub quorum_of: Option<usize>,
    /// VIPs it holds (it goes last, alone).
    pub vip_moves: Vec<PlannedVipMove>,
    /// The version before.
    pub from_version_id: Option<String>,
    /// The version after.
    pub to_version_id: Option<String>,
    /// k3s flags to reinstall with.
    pub extra_flags: Vec<String>,
}

impl Candidate {
    fn sort_key(&self) -> (bool, bool, &str, &str) {
        (
            !self.vip_moves.is_empty(),
            self.quorum_of.is_some() || self.role == K3sModule::K3sServer,
            &self.node_name,
            &self.instance_id,
        )
    }
}

/// Nodes per batch: `ceil(batch_pct % × total)`, at least 1 (`batch_pct`
/// is 1-100; more counts as 100).
pub fn batch_size(batch_pct: u32, total: usize) -> usize {
    let pct = batch_pct.clamp(1, 100) as usize;
    (total * pct).div_ceil(100).max(1)
}

/// How many of a cluster's `servers` control-plane servers may be down at
/// once and keep etcd's quorum: `(n − 1) / 2`, at least 1 (a one- or
/// two-server cluster has no quorum to keep; its servers go one by one).
pub fn quorum_limit(servers: usize) -> usize {
    (servers.saturating_sub(1) / 2).max(1)
}

/// Orders `candidates` and puts them in batches of at most `size` (see the
/// module's rules); the steps are numbered from 0 across the plan.
pub fn plan_steps(
    mut candidates: Vec<Candidate>,
    size: usize,
    action: StepAction,
) -> Vec<PlanStep> {
    candidates.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let (holders, mut waiting): (Vec<Candidate>, Vec<Candidate>) = candidates
        .into_iter()
        .partition(|c| !c.vip_moves.is_empty());
    let size = size.max(1);
    let mut batches: Vec<Vec<Candidate>> = Vec::new();
    while !waiting.is_empty() {
        let mut batch: Vec<Candidate> = Vec::new();
        let mut later: Vec<Candidate> = Vec::new();
        for c in waiting {
            if batch.len() < size && fits(&batch, &c) {
                batch.push(c);
            } else {
                later.push(c);
            }
        }
        batches.push(batch);
        waiting = later;
    }
    batches.extend(holders.into_iter().map(|h| vec![h]));
    let mut steps = Vec::new();
    for (b, batch) in batches.into_iter().enumerate() {
        for c in batch {
            steps.push(PlanStep {
                step: steps.len() as u32,
                batch: b as u32,
                action,
                instance_id: c.instance_id,
                node_name: c.node_name,
                role: c.role,
                cluster_id: c.cluster_id,
                from_version_id: c.from_version_id,
                to_version_id: c.to_version_id,
                extra_flags: c.extra_flags,
                vip_moves: c.vip_moves,
            });
        }
    }
    steps
}

/// Whether `c` may join `batch` without taking its cluster below quorum.
fn fits(batch: &[Candidate], c: &Candidate) -> bool {
    let Some(servers) = c.quorum_of else {
        return true;
    };
    let same = batch
        .iter()
        .filter(|o| o.quorum_of.is_some() && o.cluster_id == c.cluster_id)
        .count();
    same < quorum_limit(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str) -> Candidate {
        Candidate {
            instance_id: format!("inst-{name}"),
            node_name: name.to_string(),
            role: K3sModule::K3sAgent,
            cluster_id: Some("c1".into()),
            quorum_of: None,
            vip_moves: Vec::new(),
            from_version_id: None,
            to_version_id: Some("v-k3s-agent-1.31.0".into()),
            extra_flags: Vec::new(),
        }
    }

    fn server(name: &str, cluster: &str, n: usize) -> Candidate {
        Candidate {
            role: K3sModule::K3sServer,
            cluster_id: Some(cluster.into()),
            quorum_of: Some(n),
            ..worker(name)
        }
    }

    fn batches(steps: &[PlanStep]) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for s in steps {
            if out.len() <= s.batch as usize {
                out.push(Vec::new());
            }
            out[s.batch as usize].push(s.node_name.clone());
        }
        out
    }

    #[test]
    fn batch_sizes_are_the_ceiling_of_the_percentage() {
        let cases = [
            // (instances, pct, size)
            (1, 1, 1),
            (1, 34, 1),
            (1, 50, 1),
            (1, 100, 1),
            (3, 1, 1),
            (3, 34, 2),
            (3, 50, 2),
            (3, 100, 3),
            (6, 1, 1),
            (6, 34, 3),
            (6, 50, 3),
            (6, 100, 6),
            (7, 1, 1),
            (7, 34, 3),
            (7, 50, 4),
            (7, 100, 7),
        ];
        for (n, pct, size) in cases {
            assert_eq!(batch_size(pct, n), size, "{n} instances at {pct}%");
            let ws: Vec<Candidate> = (0..n).map(|i| worker(&format!("w{i}"))).collect();
            let steps = plan_steps(ws, batch_size(pct, n), StepAction::Upgrade);
            let b = batches(&steps);
            assert_eq!(b.len(), n.div_ceil(size), "{n} instances at {pct}%: {b:?}");
            assert!(b.iter().all(|x| x.len() <= size), "{b:?}");
            assert_eq!(steps.len(), n);
        }
    }

    #[test]
    fn quorum_limits_follow_etcd() {
        assert_eq!(quorum_limit(1), 1);
        assert_eq!(quorum_limit(2), 1);
        assert_eq!(quorum_limit(3), 1);
        assert_eq!(quorum_limit(4), 1);
        assert_eq!(quorum_limit(5), 2);
        assert_eq!(quorum_limit(7), 3);
    }

    #[test]
    fn servers_of_one_cluster_are_split_to_keep_quorum() {
        for (n, per_batch) in [(2, 1), (3, 1), (5, 2)] {
            let ss: Vec<Candidate> = (1..=n).map(|i| server(&format!("s{i}"), "c1", n)).collect();
            let steps = plan_steps(ss, n, StepAction::Upgrade);
            let b = batches(&steps);
            assert_eq!(b.len(), n.div_ceil(per_batch), "{n} servers: {b:?}");
            assert!(b.iter().all(|x| x.len() <= per_batch), "{n} servers: {b:?}");
        }
    }

    #[test]
    fn another_clusters_servers_fill_the_batch() {
        let mut ss: Vec<Candidate> = (1..=3).map(|i| server(&format!("a{i}"), "ca", 3)).collect();
        ss.extend((1..=3).map(|i| server(&format!("b{i}"), "cb", 3)));
        let steps = plan_steps(ss, 3, StepAction::Upgrade);
        assert_eq!(
            batches(&steps),
            vec![vec!["a1", "b1"], vec!["a2", "b2"], vec!["a3", "b3"]]
        );
    }

    #[test]
    fn workers_go_first_and_the_holder_last_alone() {
        let mut holder = server("s1", "c1", 3);
        holder.vip_moves = vec![PlannedVipMove {
            virtual_ip_id: "vip-1".into(),
            vip: "fd00::100".into(),
        }];
        let cs = vec![
            holder,
            server("s2", "c1", 3),
            worker("w2"),
            server("s3", "c1", 3),
            worker("w1"),
            worker("w3"),
        ];
        let steps = plan_steps(cs, 3, StepAction::Upgrade);
        assert_eq!(
            batches(&steps),
            vec![vec!["w1", "w2", "w3"], vec!["s2"], vec!["s3"], vec!["s1"]]
        );
        let last = steps.last().expect("six steps");
        assert_eq!(last.vip_moves.len(), 1);
        assert_eq!(
            steps.iter().map(|s| s.step).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn the_order_does_not_depend_on_the_input_order() {
        let a = vec![worker("w1"), server("s1", "c1", 3), worker("w2")];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(
            plan_steps(a, 2, StepAction::Upgrade),
            plan_steps(b, 2, StepAction::Upgrade)
        );
    }
}
