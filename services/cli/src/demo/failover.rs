//! The last step of `powernode demo --keep`: the prod VIP's holder goes
//! silent (its instance is terminated, its agent stops), the failover
//! service proposes a promotion, and the tour stops there, leaving the
//! approval waiting for the person at the dashboard (or the CLI): from the
//! silence to the new holder in the UI alone.

use super::flow::Tour;
use anyhow::Context;
use powernode_actions::ActionName;
use serde_json::{json, Value};

/// A failover waiting for approval.
pub struct Staged {
    /// The approval request's id.
    pub approval_id: String,
    /// The instance that went silent.
    pub silent: String,
    /// The VIP's generation before the failover.
    pub generation: u64,
}

impl Tour {
    /// Silences the prod VIP's holder and waits until its failover waits
    /// for approval.
    pub(super) async fn stage_failover(&mut self, prod: &str) -> anyhow::Result<Staged> {
        self.n.step(
            "A failover for you to approve",
            "the prod VIP's holder goes silent; the promotion waits for an operator",
        );
        let vip = self.vip(prod).await?;
        let holder = vip["holders"][0]
            .as_str()
            .context("the prod VIP has no holder")?
            .to_string();
        let generation = vip["generation"].as_u64().unwrap_or_default();
        self.n.info(&format!(
            "terminating instance {holder}, the VIP's holder at generation {generation}: its agent stops heartbeating"
        ));
        self.n
            .call(
                ActionName::TerminateInstance.as_str(),
                json!({ "id": holder }),
            )
            .await?;
        let mut w = self
            .n
            .wait("the failover service to find the holder silent and ask for approval");
        let approval = loop {
            let list = self
                .n
                .call(ActionName::ListApprovals.as_str(), json!({}))
                .await?;
            let waiting = list["approvals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["virtual_ip_id"] == vip["id"])
                .cloned();
            if let Some(a) = waiting {
                break a;
            }
            let state = if self.vip(prod).await?["holder_silent"] == true {
                "the holder is silent; no approval request yet"
            } else {
                "the holder is not reported silent yet"
            };
            w.pending(state).await?;
        };
        w.done("a promotion waits for approval");
        let approval_id = approval["id"].as_str().unwrap_or_default().to_string();
        self.n.info(&format!(
            "approval {approval_id}: {}",
            approval["summary"].as_str().unwrap_or_default()
        ));
        Ok(Staged {
            approval_id,
            silent: holder,
            generation,
        })
    }

    async fn vip(&self, cluster: &str) -> anyhow::Result<Value> {
        let v = self
            .n
            .call(
                ActionName::GetVirtualIp.as_str(),
                json!({ "cluster_id": cluster }),
            )
            .await?;
        Ok(v["virtual_ip"].clone())
    }
}

/// How to follow the staged failover to its end, in the dashboard or the
/// CLI.
pub fn say_waiting(staged: &Staged, url: &str, prod: &str) {
    use super::narrator::say;
    say("");
    say(&format!(
        "A failover waits for you: instance {} (the prod VIP's holder at generation {}) is silent.",
        staged.silent, staged.generation
    ));
    say(&format!(
        "  Dashboard: {url}/ui/approvals — approve {} there, then watch {url}/ui/clusters/{prod}",
        staged.approval_id
    ));
    say(&format!(
        "  CLI:       powernode approvals approve {} --wait",
        staged.approval_id
    ));
}
