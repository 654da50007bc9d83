//! The multi-cluster runbook's steps: a second cluster, a targeted
//! worker, an HA server, a misrouted worker, decommissioning.

use super::flow::Tour;
use super::narrator::say_block;
use crate::clusters::{render_list, render_nodes};
use crate::output::field;
use anyhow::bail;
use powernode_actions::ActionName;
use serde_json::json;

impl Tour {
    /// Phase 2: a second cluster (staging); answers its id.
    pub(super) async fn runbook_second_cluster(&mut self) -> anyhow::Result<String> {
        self.n.step(
            "Runbook Phase 2",
            "bootstrap cluster B (staging): same steps, its own template",
        );
        let server = self
            .host("k3s-staging-server", "k3s-staging-server-1")
            .await?;
        self.assign(&server, "k3s-server", None).await?;
        Ok(field(&self.active(&server).await?, "id"))
    }

    /// Phase 3: a worker that names prod while two clusters exist.
    pub(super) async fn runbook_targeted_worker(
        &mut self,
        prod: &str,
        staging: &str,
    ) -> anyhow::Result<()> {
        self.n.step(
            "Runbook Phase 3",
            "with two clusters, a worker must name its cluster: target_cluster_id=prod",
        );
        let worker = self.host("k3s-prod-worker-b", "k3s-prod-worker-2").await?;
        self.assign(&worker, "k3s-agent", Some(prod)).await?;
        self.joined(prod, &worker, "worker").await?;
        for (name, id) in [("prod", prod), ("staging", staging)] {
            let c = self
                .n
                .call(ActionName::GetCluster.as_str(), json!({ "id": id }))
                .await?;
            self.n.info(&format!(
                "{name}: {} node(s)",
                field(&c["cluster"], "node_count")
            ));
        }
        self.n.events().await?;
        Ok(())
    }

    /// Phase 4: a second prod server joins; the VIP gains a failover candidate.
    pub(super) async fn runbook_ha(&mut self, prod: &str) -> anyhow::Result<()> {
        self.n.step(
            "Runbook Phase 4",
            "HA control plane: a second k3s-server with target_cluster_id=prod joins, not creates",
        );
        let server = self.host("k3s-prod-server-ha", "k3s-prod-server-2").await?;
        self.assign(&server, "k3s-server", Some(prod)).await?;
        self.joined(prod, &server, "control-plane").await?;
        let mut w = self
            .n
            .wait("the second server to become a VIP failover candidate");
        let vip = loop {
            let vip = self
                .n
                .call(
                    ActionName::GetVirtualIp.as_str(),
                    json!({ "cluster_id": prod }),
                )
                .await?;
            let is_candidate = vip["virtual_ip"]["failover_candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["instance_id"] == server.instance_id.as_str());
            if is_candidate {
                break vip;
            }
            w.pending("not a candidate yet").await?;
        };
        w.done("the VIP can fail over to the second server");
        self.show_vip(&vip["virtual_ip"]);
        let nodes = self
            .n
            .call(
                ActionName::ListNodes.as_str(),
                json!({ "cluster_id": prod }),
            )
            .await?;
        say_block(&render_nodes(&nodes, 4));
        self.n.events().await?;
        Ok(())
    }

    /// Troubleshooting: a wrong target_cluster_id is rejected with a reason.
    pub(super) async fn runbook_misrouted_worker(&mut self, prod: &str) -> anyhow::Result<()> {
        let typo = typo_of(prod);
        self.n.step(
            "Runbook · troubleshooting",
            "a worker with a wrong target_cluster_id (a typo) is rejected, not silently misjoined",
        );
        let worker = self.host("k3s-typo-worker", "k3s-typo-worker-1").await?;
        self.assign(&worker, "k3s-agent", Some(&typo)).await?;
        let mut w = self.n.wait("the platform to reject its join_request");
        let rejected = loop {
            let data = self
                .n
                .call(
                    ActionName::RecentEvents.as_str(),
                    json!({ "kind_prefix": "system.k3s.handshake.join_rejected", "limit": 50 }),
                )
                .await?;
            let found = data["events"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["payload"]["instance_id"] == worker.instance_id.as_str())
                .cloned();
            match found {
                Some(e) => break e,
                None => {
                    let phase = self.phase(&worker.instance_id).await?;
                    w.pending(&format!("agent k3s phase: {phase}")).await?
                }
            }
        };
        w.done("system.k3s.handshake.join_rejected");
        self.n.info(&format!(
            "reason: {}",
            field(&rejected["payload"], "reason")
        ));
        self.n
            .info("the agent retries on every reconcile until the assignment is fixed;");
        self.n
            .info("the runbook's fix: terminate it and provision a correctly targeted worker");
        let t = self
            .n
            .call(
                ActionName::TerminateInstance.as_str(),
                json!({ "id": worker.instance_id }),
            )
            .await?;
        self.n.info(&format!(
            "{} {}: {}",
            ActionName::TerminateInstance,
            worker.instance_id,
            field(&t["instance"], "status")
        ));
        self.n.events().await?;
        Ok(())
    }

    /// Phase 6: decommission staging (twice: the second is a no-op).
    pub(super) async fn runbook_decommission(&mut self, staging: &str) -> anyhow::Result<()> {
        self.n.step(
            "Runbook Phase 6",
            "decommission staging (`powernode clusters decommission` asks to confirm; the demo does not)",
        );
        let d = self
            .n
            .call(
                ActionName::DecommissionCluster.as_str(),
                json!({ "cluster_id": staging }),
            )
            .await?;
        self.n.info(&format!(
            "cluster {staging} is {}: {} node row(s) removed, VIP {} released, instances kept: {}",
            field(&d["cluster"], "status"),
            field(&d, "removed_nodes"),
            field(&d, "released_virtual_ip_id"),
            field(&d, "instances_kept")
        ));
        match self
            .n
            .api
            .call(
                ActionName::DecommissionCluster.as_str(),
                &json!({ "cluster_id": staging }),
            )
            .await
        {
            Err(e) if e.has_code("already_decommissioned") => self.n.info(
                "a second call answers 409 already_decommissioned and changes nothing (the CLI says: nothing to do)",
            ),
            Err(e) => return Err(anyhow::Error::from(e).context(format!("{}: the second decommission", self.n.current()))),
            Ok(_) => bail!(
                "{}: a second decommission of {staging} succeeded; expected 409 already_decommissioned",
                self.n.current()
            ),
        }
        self.n.info(&format!(
            "{} with include_decommissioned (clusters list --all):",
            ActionName::ListClusters
        ));
        let list = self
            .n
            .call(
                ActionName::ListClusters.as_str(),
                json!({ "include_decommissioned": true }),
            )
            .await?;
        say_block(&render_list(&list, 4));
        self.n.events().await?;
        Ok(())
    }
}

/// `id` with its last character changed: a plausible typo.
fn typo_of(id: &str) -> String {
    let mut s = id.to_string();
    let last = s.pop().unwrap_or('0');
    s.push(if last == '0' { '1' } else { '0' });
    s
}
