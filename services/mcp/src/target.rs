//! What a destructive call would act on: the object's name (what a human
//! types back to confirm) and a summary of what the call does to it, read
//! through the same [`Caller`] (so with the caller's own token: another
//! account's object is not found).

use crate::{Caller, Refusal};
use powernode_actions::ActionName;
use serde_json::{json, Value};

/// The object of a destructive call.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its id.
    pub id: String,
    /// Its name (the id when it has none).
    pub name: String,
    /// What the call would do, for the human.
    pub summary: String,
}

fn find<'a>(list: &'a Value, key: &str, field: &str, id: &str) -> Option<&'a Value> {
    list[key]
        .as_array()?
        .iter()
        .find(|v| v.pointer(field).and_then(Value::as_str) == Some(id))
}

fn not_found(what: &str, id: &str) -> Refusal {
    Refusal::new("not_found", format!("no {what} {id} in this account"))
}

/// Reads the object `id` of `action` and describes the call.
pub async fn describe<C: Caller>(
    caller: &C,
    ext: &rmcp::model::Extensions,
    action: ActionName,
    id: &str,
) -> Result<Target, Refusal> {
    let read = |name: ActionName, args: Value| caller.call(ext, name, args, None);
    let target = |name: String, summary: String| Target {
        id: id.to_string(),
        name,
        summary,
    };
    Ok(match action {
        ActionName::DecommissionCluster => {
            let c = read(ActionName::GetCluster, json!({ "id": id })).await?;
            let name = c["cluster"]["name"].as_str().unwrap_or(id).to_string();
            let nodes = c["cluster"]["node_count"].as_u64().unwrap_or(0);
            let summary = format!(
                "Decommission cluster {name} ({id}): its {nodes} node {} removed, its VIP is \
                 released, its instances are kept, its join token and kubeconfig are deleted.",
                if nodes == 1 { "row is" } else { "rows are" }
            );
            target(name, summary)
        }
        ActionName::TerminateInstance => {
            let list = read(ActionName::ListInstances, json!({})).await?;
            let i = find(&list, "instances", "/id", id).ok_or_else(|| not_found("instance", id))?;
            let name = i["hostname"].as_str().unwrap_or(id).to_string();
            target(
                name.clone(),
                format!("Terminate instance {name} ({id}): final, it cannot be started again."),
            )
        }
        ActionName::FailoverVirtualIp => {
            let v = read(ActionName::GetVirtualIp, json!({ "id": id })).await?;
            let vip = &v["virtual_ip"];
            let cluster = vip["cluster_id"].as_str().unwrap_or("?");
            let address = vip["vip"].as_str().unwrap_or("?");
            target(
                id.to_string(),
                format!("Fail over virtual IP {address} ({id}) of cluster {cluster} now: traffic moves to another holder."),
            )
        }
        ActionName::Approve | ActionName::Reject => {
            let list = read(ActionName::ListApprovals, json!({ "status": "all" })).await;
            let list = match list {
                Ok(list) => list,
                Err(_) => read(ActionName::ListApprovals, json!({})).await?,
            };
            let a = find(&list, "approvals", "/id", id)
                .ok_or_else(|| not_found("approval request", id))?;
            let verb = if action == ActionName::Approve {
                "Grant"
            } else {
                "Reject"
            };
            let what = a["summary"].as_str().unwrap_or("");
            target(
                id.to_string(),
                format!("{verb} approval request {id}: {what}"),
            )
        }
        ActionName::RevokeOperatorToken => target(
            id.to_string(),
            format!("Revoke operator token {id}: it is refused from its next call on."),
        ),
        ActionName::RevokeAccessGrant => {
            let list = read(ActionName::ListAccessGrants, json!({})).await?;
            let g =
                find(&list, "grants", "/id", id).ok_or_else(|| not_found("access grant", id))?;
            let name = g["name"].as_str().unwrap_or(id).to_string();
            target(
                name.clone(),
                format!("Revoke access grant {name} ({id}): its peer is removed everywhere."),
            )
        }
        other => target(id.to_string(), format!("Run {other} on {id}.")),
    })
}
