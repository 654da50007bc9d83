//! The tutorial's steps: one cluster, a worker, nodes, kubeconfig, VIP.

use super::flow::Tour;
use super::narrator::say_block;
use crate::clusters::{render_list, render_nodes};
use crate::output::field;
use powernode_actions::ActionName;
use serde_json::{json, Value};

impl Tour {
    /// Tutorial steps 1-7 and the VIP; answers the prod cluster's id.
    pub(super) async fn tutorial(&mut self) -> anyhow::Result<String> {
        self.n.step(
            "Tutorial step 1 · Runbook Phase 1",
            "a NodeInstance for the control plane, peered on the SD-WAN",
        );
        let server = self.host("k3s-prod-server", "k3s-prod-server-1").await?;
        self.n.events().await?;

        self.n.step(
            "Tutorial step 2 · Runbook Phase 1",
            "assign k3s-server without target_cluster_id: this server creates the cluster",
        );
        self.assign(&server, "k3s-server", None).await?;
        let prod = field(&self.active(&server).await?, "id");

        self.n
            .step("Tutorial step 3", ActionName::ListClusters.as_str());
        let list = self
            .n
            .call(ActionName::ListClusters.as_str(), json!({}))
            .await?;
        say_block(&render_list(&list, 4));

        self.n.step(
            "Tutorial steps 4-5",
            "a worker: its own template, k3s-agent with config.target_cluster_id",
        );
        let worker = self.host("k3s-prod-worker", "k3s-prod-worker-1").await?;
        self.assign(&worker, "k3s-agent", Some(&prod)).await?;
        self.joined(&prod, &worker, "worker").await?;
        self.n.events().await?;

        self.n
            .step("Tutorial step 6", ActionName::ListNodes.as_str());
        let nodes = self
            .n
            .call(
                ActionName::ListNodes.as_str(),
                json!({ "cluster_id": prod }),
            )
            .await?;
        say_block(&render_nodes(&nodes, 4));

        self.n.step(
            "Tutorial step 7 · Runbook Phase 5",
            &format!("{} (every retrieval is audited)", ActionName::GetKubeconfig),
        );
        let kc = self
            .n
            .call(
                ActionName::GetKubeconfig.as_str(),
                json!({ "cluster_id": prod }),
            )
            .await?;
        let text = kc["kubeconfig"].as_str().unwrap_or_default();
        self.n
            .info(&format!("api_endpoint: {}", field(&kc, "api_endpoint")));
        let lines: Vec<&str> = text.lines().collect();
        for l in lines.iter().take(5) {
            let shown: String = l.chars().take(72).collect();
            let more = if shown.len() < l.len() { "…" } else { "" };
            self.n.info(&format!("| {shown}{more}"));
        }
        if lines.len() > 5 {
            self.n
                .info(&format!("| … ({} more lines)", lines.len() - 5));
        }
        self.n.events().await?;

        self.n.step(
            "Tutorial · VIP",
            &format!(
                "the API endpoint is an SD-WAN virtual IP ({})",
                ActionName::GetVirtualIp
            ),
        );
        let vip = self
            .n
            .call(
                ActionName::GetVirtualIp.as_str(),
                json!({ "cluster_id": prod }),
            )
            .await?;
        self.show_vip(&vip["virtual_ip"]);
        Ok(prod)
    }

    /// Prints a VIP: address, holder, failover candidates.
    pub(super) fn show_vip(&self, v: &Value) {
        self.n.info(&format!(
            "{} {} ({}), holder {}, generation {}",
            field(v, "id"),
            field(v, "vip"),
            field(v, "status"),
            field(v, "holders"),
            field(v, "generation")
        ));
        let candidates: Vec<String> = v["failover_candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| field(c, "instance_id"))
            .collect();
        if candidates.is_empty() {
            self.n
                .info("failover_candidates: none (a single server: failover has nowhere to go)");
        } else {
            self.n
                .info(&format!("failover_candidates: {}", candidates.join(", ")));
        }
    }
}
