//! `powernode delete KIND NAME`: a cluster is decommissioned, an instance
//! terminated (both confirmed by typing the name, or `--yes`), a grant or
//! token revoked, an approval rejected.

use super::kinds;
use super::wait::{self, Condition};
use crate::confirm::{confirm_decommission, confirm_terminate};
use crate::output::{line, print_data, Format};
use crate::ApiArgs;
use anyhow::bail;
use powernode_actions::ActionName;
use serde_json::{json, Value};
use std::time::Duration;

/// `powernode delete KIND NAME`.
pub async fn run(
    api_args: &ApiArgs,
    kind: &str,
    name: &str,
    yes: bool,
    reason: Option<String>,
    wait_for: Option<Duration>,
) -> anyhow::Result<()> {
    let kind = kinds::kind(kind)?;
    let api = api_args.client()?;
    let obj = kind.resolve(&api, name).await?;
    let id = kind.id_of(&obj);
    let shown = kind.ref_of(&obj);
    if !kinds::is_live(&obj) {
        report(
            api_args.output,
            &shown,
            "already ended; nothing to do",
            &json!({ "changed": false, kind.name: obj }),
        );
        return Ok(());
    }
    let (action, args, verb) = match kind.name {
        "cluster" => {
            confirm_decommission(&id, &obj, yes)?;
            (
                ActionName::DecommissionCluster,
                json!({ "cluster_id": id }),
                "decommissioned",
            )
        }
        "instance" => {
            confirm_terminate(&id, &obj, yes)?;
            (
                ActionName::TerminateInstance,
                json!({ "id": id }),
                "terminated",
            )
        }
        "grant" => (
            ActionName::RevokeAccessGrant,
            json!({ "grant_id": id }),
            "revoked",
        ),
        "token" => (
            ActionName::RevokeOperatorToken,
            json!({ "token_id": id }),
            "revoked",
        ),
        "approval" if reason.as_deref().is_none_or(|r| r.trim().is_empty()) => {
            bail!("rejecting approval {id} needs --reason TEXT (recorded with the rejection)")
        }
        "approval" => (
            ActionName::Reject,
            json!({ "approval_id": id, "reason": reason }),
            "rejected",
        ),
        other => bail!(
            "{other}s cannot be deleted (deletable: clusters, instances, grants, tokens, approvals)"
        ),
    };
    let data = match api.call(action.as_str(), &args).await {
        Ok(d) => d,
        Err(e) if e.has_code("already_decommissioned") || e.has_code("already_revoked") => {
            report(
                api_args.output,
                &shown,
                "already ended; nothing to do",
                &json!({ "changed": false }),
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(t) = wait_for {
        wait::wait_for(&api, kind, &id, &Condition::Delete, t).await?;
    }
    report(api_args.output, &shown, verb, &data);
    Ok(())
}

fn report(format: Format, shown: &str, what: &str, data: &Value) {
    match format {
        f if f.is_data() => print_data(f, data),
        Format::Name => line(shown),
        _ => line(&format!("{shown} {what}")),
    }
}
