//! The node under test, its callers, and the check of one answer.

use super::*;

/// How many ids of the other account a case may pick from.
pub(super) const VICTIM_IDS: usize = 6;

/// The running node and who calls it.
pub(super) struct Target {
    pub(super) api: Api,
    pub(super) operator: String,
    pub(super) reader: String,
    /// The other account's ids: account, template, node, instance, network, token.
    pub(super) victim: [String; VICTIM_IDS],
}

pub(super) async fn setup(jetstream: bool) -> anyhow::Result<Target> {
    let api = if jetstream {
        Api::jetstream().await?
    } else {
        Api::embedded().await?
    };
    let admin = Some(api.admin.as_str());
    let (acme, operator) = api
        .account_with_token(
            "acme",
            &[
                "system.kubernetes_provision",
                "system.kubernetes_decommission",
                "system.kubernetes_kubeconfig",
                "system.sdwan_failover",
            ],
        )
        .await?;
    let r = action(
        api.port,
        admin,
        "system_create_operator_token",
        &json!({"account_id": acme, "permissions": []}),
    )
    .await?;
    anyhow::ensure!(r.status == 200, "{:?}", r.body);
    let reader = r.body["data"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The other account, with one object of each kind.
    let (victim, victim_token) = api
        .account_with_token("victim", &["system.kubernetes_provision"])
        .await?;
    let tokens = action(
        api.port,
        admin,
        "system_list_operator_tokens",
        &json!({"account_id": victim}),
    )
    .await?;
    let token_id = tokens.body["data"]["tokens"][0]["token_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let v = Some(victim_token.as_str());
    let port = api.port;
    let call = |name: &'static str, args: Value| async move {
        let a = action(port, v, name, &args).await?;
        anyhow::ensure!(a.status == 200, "{name}: {:?}", a.body);
        Ok::<Value, anyhow::Error>(a.body["data"].clone())
    };
    let t = call("system_create_template", json!({"name": "victim-t"})).await?;
    let template = t["template"]["id"].as_str().unwrap_or_default().to_string();
    let n = call(
        "system_create_node",
        json!({"hostname": "victim-1", "node_template_id": template, "memory_mb": 2048}),
    )
    .await?;
    let node = n["node"]["id"].as_str().unwrap_or_default().to_string();
    let i = call("system_provision_instance", json!({"node_id": node})).await?;
    let instance = i["id"].as_str().unwrap_or_default().to_string();
    let w = call("system_sdwan_create_network", json!({"name": "victim-net"})).await?;
    let network = w["network"]["id"].as_str().unwrap_or_default().to_string();
    let victim = [victim, template, node, instance, network, token_id];
    anyhow::ensure!(victim.iter().all(|id| !id.is_empty()), "setup: {victim:?}");
    Ok(Target {
        api,
        operator,
        reader,
        victim,
    })
}

/// Sends `case` and checks the answer and the log.
pub(super) async fn check(t: &Target, case: &Case, before: u64) -> Result<(), String> {
    let token = match case.caller {
        Caller::Admin => t.api.admin.as_str(),
        Caller::Operator => t.operator.as_str(),
        Caller::Reader => t.reader.as_str(),
    };
    let mut body = case.body.clone();
    if case.category == "other_accounts_ids" {
        let mut text = String::from_utf8(body).map_err(|e| e.to_string())?;
        for (i, id) in t.victim.iter().enumerate() {
            text = text.replace(&format!("@victim{i}@"), id);
        }
        body = text.into_bytes();
    }
    let a = request(
        t.api.port,
        "POST",
        &format!("/v1/actions/{}", case.action),
        Some(token),
        &body,
    )
    .await
    .map_err(|e| format!("request failed: {e:#}"))?;
    let code = a.body["error"]["code"].as_str().unwrap_or("");
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
    let what = format!(
        "{} {} as {:?} with {shown:?}: {} {}",
        case.category, case.action, case.caller, a.status, a.body
    );
    if !(400..500).contains(&a.status) || a.status == 401 {
        return Err(format!("not refused with a 4xx: {what}"));
    }
    if code.is_empty() {
        return Err(format!("no error code: {what}"));
    }
    if !case.codes.is_empty() && !case.codes.contains(&code) {
        return Err(format!("expected {:?}: {what}", case.codes));
    }
    if case.status.is_some_and(|s| s != a.status) {
        return Err(format!("expected status {:?}: {what}", case.status));
    }
    let after = t.api.log.last_seq().await.map_err(|e| e.to_string())?;
    if after != before {
        return Err(format!("the log grew from {before} to {after}: {what}"));
    }
    Ok(())
}
