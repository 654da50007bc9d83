//! Read helpers for services and the API. Every look-up of an account's
//! object names the account, so one account never sees another's objects.

use super::{
    AccountState, Approval, Cluster, ClusterStatus, FleetState, Instance, InstanceStatus, K8sNode,
    Network, OperatorToken, Peer, Template, VipStatus, VirtualIp,
};
use powernode_events::AccountId;

impl FleetState {
    /// One account's state.
    pub fn account(&self, account: &AccountId) -> Option<&AccountState> {
        self.accounts.get(account)
    }

    /// Every account, in id order.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &AccountState)> {
        self.accounts.iter()
    }

    /// The account's clusters in creation order (oldest first; call `.rev()`
    /// on the result's iterator for most recent first). Decommissioned
    /// clusters only when `include_decommissioned`.
    pub fn clusters(&self, account: &AccountId, include_decommissioned: bool) -> Vec<&Cluster> {
        let Some(a) = self.account(account) else {
            return Vec::new();
        };
        let mut out: Vec<&Cluster> = a
            .clusters
            .values()
            .filter(|c| include_decommissioned || c.status != ClusterStatus::Decommissioned)
            .collect();
        out.sort_by_key(|c| c.created_seq);
        out
    }

    /// A cluster by id alone, with its account (join validation tells "not
    /// found" from "another account's").
    pub fn find_cluster(&self, cluster_id: &str) -> Option<(&AccountId, &Cluster)> {
        self.accounts
            .iter()
            .find_map(|(id, a)| a.clusters.get(cluster_id).map(|c| (id, c)))
    }

    /// The instance whose enrollment credential has this fingerprint, with
    /// its account (agent enrollment).
    pub fn instance_by_enrollment(&self, fingerprint: &str) -> Option<(&AccountId, &Instance)> {
        self.accounts.iter().find_map(|(id, a)| {
            a.instances
                .values()
                .find(|i| i.enrollment_fingerprint == fingerprint)
                .map(|i| (id, i))
        })
    }

    /// One cluster of the account (decommissioned ones included).
    pub fn cluster(&self, account: &AccountId, cluster_id: &str) -> Option<&Cluster> {
        self.account(account)?.clusters.get(cluster_id)
    }

    /// The most recently created active cluster of the account: where a join
    /// without `target_cluster_id` goes.
    pub fn most_recent_active_cluster(&self, account: &AccountId) -> Option<&Cluster> {
        self.account(account)?
            .clusters
            .values()
            .filter(|c| c.status == ClusterStatus::Active)
            .max_by_key(|c| c.created_seq)
    }

    /// The Kubernetes node rows of a cluster, in the order they were added.
    pub fn cluster_nodes(&self, account: &AccountId, cluster_id: &str) -> Vec<&K8sNode> {
        let Some(rows) = self
            .account(account)
            .and_then(|a| a.k8s_nodes.get(cluster_id))
        else {
            return Vec::new();
        };
        let mut out: Vec<&K8sNode> = rows.values().collect();
        out.sort_by_key(|n| n.registered_seq);
        out
    }

    /// How many node rows a cluster has (`node_count`).
    pub fn node_count(&self, account: &AccountId, cluster_id: &str) -> usize {
        self.account(account)
            .and_then(|a| a.k8s_nodes.get(cluster_id))
            .map_or(0, |rows| rows.len())
    }

    /// One virtual IP of the account.
    pub fn virtual_ip(&self, account: &AccountId, virtual_ip_id: &str) -> Option<&VirtualIp> {
        self.account(account)?.virtual_ips.get(virtual_ip_id)
    }

    /// The most recently allocated virtual IP of a cluster, released or not
    /// (check [`VirtualIp::status`]).
    pub fn cluster_virtual_ip(&self, account: &AccountId, cluster_id: &str) -> Option<&VirtualIp> {
        let acct = self.account(account)?;
        acct.virtual_ips.get(acct.cluster_vips.get(cluster_id)?)
    }

    /// One template, with its module assignments.
    pub fn template(&self, account: &AccountId, template_id: &str) -> Option<&Template> {
        self.account(account)?.templates.get(template_id)
    }

    /// One instance of the account.
    pub fn instance(&self, account: &AccountId, instance_id: &str) -> Option<&Instance> {
        self.account(account)?.instances.get(instance_id)
    }

    /// An instance by id alone, with the account it was first provisioned in
    /// (agent intake, where the id is all there is).
    pub fn find_instance(&self, instance_id: &str) -> Option<(&AccountId, &Instance)> {
        let account = self.instance_accounts.get(instance_id)?;
        Some((account, self.instance(account, instance_id)?))
    }

    /// The peers an instance is attached as, in peer-id order.
    pub fn instance_peers(&self, account: &AccountId, instance_id: &str) -> Vec<&Peer> {
        self.account(account).map_or_else(Vec::new, |a| {
            let mut peers: Vec<&Peer> = a
                .instance_peers
                .get(instance_id)
                .into_iter()
                .flatten()
                .filter_map(|id| a.peers.get(id))
                .collect();
            peers.sort_by(|x, y| x.id.cmp(&y.id));
            peers
        })
    }

    /// The allocated virtual IPs an instance is a member of (holder or
    /// failover candidate), each with the instance's peer on it and whether
    /// that peer is the holder.
    pub fn vip_memberships<'a>(
        &'a self,
        account: &AccountId,
        instance_id: &str,
    ) -> Vec<(&'a VirtualIp, &'a Peer, bool)> {
        let Some(acct) = self.account(account) else {
            return Vec::new();
        };
        let Some(cluster_id) = acct
            .instances
            .get(instance_id)
            .and_then(|i| i.cluster_id.as_deref())
        else {
            return Vec::new();
        };
        let Some(vip) = self.cluster_virtual_ip(account, cluster_id) else {
            return Vec::new();
        };
        if vip.status != VipStatus::Allocated {
            return Vec::new();
        }
        let peer_of = |peer_id: &str| {
            acct.peers
                .get(peer_id)
                .filter(|p| p.instance_id == instance_id)
        };
        if let Some(peer) = peer_of(&vip.holder_peer_id) {
            return vec![(vip, peer, true)];
        }
        vip.failover_candidates()
            .find_map(peer_of)
            .map(|peer| vec![(vip, peer, false)])
            .unwrap_or_default()
    }

    /// A virtual IP by id alone, with its account.
    pub fn find_virtual_ip(&self, virtual_ip_id: &str) -> Option<(&AccountId, &VirtualIp)> {
        self.accounts()
            .find_map(|(id, a)| a.virtual_ips.get(virtual_ip_id).map(|v| (id, v)))
    }

    /// One SD-WAN network of the account.
    pub fn network(&self, account: &AccountId, network_id: &str) -> Option<&Network> {
        self.account(account)?.networks.get(network_id)
    }

    /// One approval of the account.
    pub fn approval(&self, account: &AccountId, approval_id: &str) -> Option<&Approval> {
        self.account(account)?.approvals.get(approval_id)
    }

    /// The account's approvals still waiting for a decision, oldest first.
    pub fn pending_approvals(&self, account: &AccountId) -> Vec<&Approval> {
        let Some(a) = self.account(account) else {
            return Vec::new();
        };
        let mut out: Vec<&Approval> = a.approvals.values().filter(|x| x.is_pending()).collect();
        out.sort_by_key(|x| x.requested_seq);
        out
    }

    /// One operator token of the account.
    pub fn operator_token(&self, account: &AccountId, token_id: &str) -> Option<&OperatorToken> {
        self.account(account)?.tokens.get(token_id)
    }

    /// The token with this fingerprint (`sha256:<hex>` of the presented
    /// secret) and its account; revoked tokens included (check
    /// [`OperatorToken::revoked`]).
    pub fn operator_token_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Option<(&AccountId, &OperatorToken)> {
        let (account, token_id) = self.token_fingerprints.get(fingerprint)?;
        Some((account, self.operator_token(account, token_id)?))
    }

    /// The key the instance's agent enrolled with in `account`; `None` for
    /// unknown, unenrolled or terminated instances, or a key that does not parse.
    pub fn agent_key_in(&self, account: &AccountId, instance_id: &str) -> Option<[u8; 32]> {
        let instance = self.instance(account, instance_id)?;
        if instance.status == InstanceStatus::Terminated {
            return None;
        }
        hex::decode(instance.public_key.as_deref()?)
            .ok()?
            .try_into()
            .ok()
    }
}
