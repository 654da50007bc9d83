//! `GET /v1/openapi.json` on a running node: served without a token,
//! valid OpenAPI 3.1 by a validator nobody here wrote
//! (`openapi-spec-validator`), every action and error code in it, and the
//! server's real answers (reads, writes, refusals) valid against the
//! document's own schemas (python-jsonschema, strict about unknown fields),
//! so the document cannot drift from what the server says.

use anyhow::{ensure, Context};
use powernode_actions::{ActionName, ErrorCode};
use powernode_tests::api_support::Api;
use powernode_tests::http::{action, request};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// What the server answered to one call.
struct Case {
    action: &'static str,
    status: u16,
    body: Value,
}

/// Calls `name` and records the answer, which must have `status`.
async fn call(
    api: &Api,
    token: Option<&str>,
    name: &'static str,
    args: Value,
    status: u16,
    cases: &mut Vec<Case>,
) -> anyhow::Result<Value> {
    let a = action(api.port, token, name, &args).await?;
    ensure!(
        a.status == status,
        "{name} answered {}: {}",
        a.status,
        a.body
    );
    cases.push(Case {
        action: name,
        status,
        body: a.body.clone(),
    });
    Ok(a.body)
}

/// Runs the Python check; its output is printed and its verdict returned.
fn python_check(doc: &Value, cases: &[Case]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let doc_file = dir.path().join("openapi.json");
    let cases_file = dir.path().join("cases.json");
    std::fs::write(&doc_file, doc.to_string())?;
    let cases: Vec<Value> = cases
        .iter()
        .map(|c| json!({"action": c.action, "status": c.status, "body": c.body}))
        .collect();
    std::fs::write(&cases_file, Value::Array(cases).to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/openapi_check.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&doc_file)
        .arg(&cases_file)
        .output()
        .context("running python3 (scripts/test installs openapi-spec-validator)")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(
        out.status.success(),
        "openapi_check.py refused the document or an answer: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_valid_complete_and_matches_real_answers() -> anyhow::Result<()> {
    let api = Api::embedded().await?;

    // Served without a token, the same as the generator's.
    let served = request(api.port, "GET", "/v1/openapi.json", None, b"").await?;
    ensure!(served.status == 200, "{}: {}", served.status, served.body);
    let doc = served.body;
    ensure!(doc["openapi"] == "3.1.0", "{}", doc["openapi"]);
    ensure!(doc["info"]["version"] == env!("CARGO_PKG_VERSION"));
    ensure!(doc == powernode_actions::openapi::document(env!("CARGO_PKG_VERSION")));

    // Every action has its path; every error code it declares (and those
    // of any action) is listed under its status, in the code enum too.
    for name in powernode_actions::NAMES {
        let op = &doc["paths"][format!("/v1/actions/{name}")]["post"];
        ensure!(op["operationId"] == *name, "no path for {name}");
        let action: ActionName = name.parse()?;
        ensure!(
            op["x-powernode-permission"].as_str() == action.permission().map(|p| p.as_str()),
            "{name}: permission {}",
            op["x-powernode-permission"]
        );
        for code in ErrorCode::ANY_ACTION.iter().chain(action.errors()) {
            let response = &op["responses"][code.status().to_string()];
            let listed = response["x-powernode-error-codes"]
                .as_array()
                .with_context(|| format!("{name}: no {} response", code.status()))?;
            ensure!(
                listed.contains(&json!(code.as_str())),
                "{name}: {code} not listed"
            );
            let codes = &response["content"]["application/json"]["schema"]["allOf"][1]
                ["properties"]["error"]["properties"]["code"]["enum"];
            ensure!(
                codes
                    .as_array()
                    .is_some_and(|c| c.contains(&json!(code.as_str()))),
                "{name}: {code} not in the {} code enum",
                code.status()
            );
        }
    }
    for path in [
        "/healthz",
        "/v1/events/stream",
        "/v1/events/export",
        "/metrics",
        "/v1/openapi.json",
        "/mcp",
    ] {
        ensure!(doc["paths"][path].is_object(), "{path} is not described");
    }

    // Real answers: reads, writes and refusals.
    let mut cases = Vec::new();
    let admin = Some(api.admin.as_str());
    let (_, token) = api
        .account_with_token("prod", &["system.kubernetes_provision"])
        .await?;
    let (_, reader) = api.account_with_token("readers", &[]).await?;
    let t = Some(token.as_str());
    call(&api, admin, "system_whoami", json!({}), 200, &mut cases).await?;
    call(&api, t, "system_whoami", json!({}), 200, &mut cases).await?;
    call(
        &api,
        admin,
        "system_list_operator_tokens",
        json!({}),
        200,
        &mut cases,
    )
    .await?;
    call(&api, admin, "system_state_hash", json!({}), 200, &mut cases).await?;
    let created = call(
        &api,
        t,
        "system_create_template",
        json!({"name": "web"}),
        200,
        &mut cases,
    )
    .await?;
    let template = created["data"]["template"]["id"].clone();
    call(
        &api,
        t,
        "system_assign_module_to_template",
        json!({"template_id": template, "module_name": "k3s-server"}),
        200,
        &mut cases,
    )
    .await?;
    call(
        &api,
        t,
        "system_get_template",
        json!({"id": template}),
        200,
        &mut cases,
    )
    .await?;
    call(
        &api,
        t,
        "system_sdwan_create_network",
        json!({"name": "lan"}),
        200,
        &mut cases,
    )
    .await?;
    for read in [
        "kubernetes_list_clusters",
        "system_list_instances",
        "system_sdwan_list_networks",
        "system_sdwan_list_access_grants",
        "system_list_approvals",
        "system_list_modules",
        "system_list_skill_executions",
    ] {
        call(&api, t, read, json!({}), 200, &mut cases).await?;
    }
    let events = call(
        &api,
        t,
        "recent_events",
        json!({"limit": 50}),
        200,
        &mut cases,
    )
    .await?;
    ensure!(
        events["data"]["events"]
            .as_array()
            .is_some_and(|e| e.len() >= 3),
        "recent_events shows the writes: {events}"
    );
    call(
        &api,
        t,
        "agent_introspect",
        json!({"agent_id": "api"}),
        200,
        &mut cases,
    )
    .await?;
    // Refusals.
    call(
        &api,
        t,
        "system_get_template",
        json!({"id": "nope"}),
        404,
        &mut cases,
    )
    .await?;
    call(
        &api,
        Some(&reader),
        "system_create_template",
        json!({"name": "x"}),
        403,
        &mut cases,
    )
    .await?;
    call(
        &api,
        None,
        "kubernetes_list_clusters",
        json!({}),
        401,
        &mut cases,
    )
    .await?;
    call(
        &api,
        t,
        "system_create_template",
        json!({"name": "x", "bogus": 1}),
        400,
        &mut cases,
    )
    .await?;

    python_check(&doc, &cases)?;

    // The check can fail: an answer with a field the document lacks, and
    // a refusal with a code its status does not list, are refused.
    let mut drifted = cases.remove(
        cases
            .iter()
            .position(|c| c.action == "system_get_template" && c.status == 200)
            .context("the template read")?,
    );
    drifted.body["data"]["template"]["undocumented"] = json!(1);
    ensure!(
        python_check(&doc, &[drifted]).is_err(),
        "an undocumented field passed"
    );
    let wrong_code = Case {
        action: "system_get_template",
        status: 404,
        body: json!({"error": {"code": "forbidden", "message": "no"}}),
    };
    ensure!(
        python_check(&doc, &[wrong_code]).is_err(),
        "a code outside its status passed"
    );

    api.node.stop().await
}
