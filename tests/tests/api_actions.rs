//! Operator actions over HTTP against a running node (embedded log and a
//! real nats-server): auth, bad input, read-your-writes, account isolation,
//! and that a refused action appends nothing.

use anyhow::ensure;
use powernode_server::node::start_node;
use powernode_server::services::ServiceName;
use powernode_tests::api_support::Api;
use powernode_tests::http::{action, request};
use serde_json::json;

async fn accounts_tokens_and_templates_read_their_writes(api: Api) -> anyhow::Result<()> {
    let (_, token) = api
        .account_with_token("prod", &["system.kubernetes_provision"])
        .await?;
    let created = action(
        api.port,
        Some(&token),
        "system_create_template",
        &json!({"name": "k3s-server"}),
    )
    .await?;
    ensure!(created.status == 200, "{:?}", created.body);
    let id = created.body["data"]["template"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(created.body["data"]["template"]["module_assignments"] == json!([]));
    // The very next call sees it.
    let got = action(
        api.port,
        Some(&token),
        "system_get_template",
        &json!({"id": id}),
    )
    .await?;
    ensure!(
        got.status == 200 && got.body["data"]["template"]["name"] == "k3s-server",
        "{:?}",
        got.body
    );
    api.node.stop().await
}

async fn one_account_never_sees_another(api: Api) -> anyhow::Result<()> {
    let (_, a) = api
        .account_with_token("tenant-a", &["system.kubernetes_provision"])
        .await?;
    let (_, b) = api
        .account_with_token("tenant-b", &["system.kubernetes_provision"])
        .await?;
    let created = action(
        api.port,
        Some(&a),
        "system_create_template",
        &json!({"name": "a-only"}),
    )
    .await?;
    let id = created.body["data"]["template"]["id"].clone();
    let seen_by_b = action(
        api.port,
        Some(&b),
        "system_get_template",
        &json!({"id": id}),
    )
    .await?;
    ensure!(
        seen_by_b.status == 404 && seen_by_b.body["error"]["code"] == "not_found",
        "{:?}",
        seen_by_b.body
    );
    api.node.stop().await
}

/// (token, action, body, expected status, expected error code)
type Case<'a> = (Option<&'a str>, &'a str, Vec<u8>, u16, &'a str);

async fn bad_input_is_refused_and_nothing_is_appended(api: Api) -> anyhow::Result<()> {
    let (_, reader) = api.account_with_token("ro", &[]).await?;
    let before = api.log.last_seq().await?;
    let cases: Vec<Case> = vec![
        (
            None,
            "system_create_template",
            br#"{"name":"x"}"#.to_vec(),
            401,
            "unauthorized",
        ),
        (
            Some("pn_not-a-token"),
            "system_create_template",
            br#"{"name":"x"}"#.to_vec(),
            401,
            "unauthorized",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            b"[1,2]".to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{"name":7}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{"name":"x","nmae":"y"}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{"name":"  "}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_no_such_action",
            b"{}".to_vec(),
            404,
            "unknown_action",
        ),
        (
            Some(&reader),
            "system_create_template",
            br#"{"name":"x"}"#.to_vec(),
            403,
            "forbidden",
        ),
        (
            Some(&reader),
            "system_create_account",
            br#"{"name":"x"}"#.to_vec(),
            403,
            "forbidden",
        ),
        (
            Some(&api.admin),
            "system_create_operator_token",
            br#"{"account_id":"acct-nope","permissions":[]}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            Some(&api.admin),
            "system_create_operator_token",
            br#"{"account_id":"system","permissions":["root"]}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_get_template",
            br#"{"id":"tmpl-nope"}"#.to_vec(),
            404,
            "not_found",
        ),
    ];
    for (token, name, body, status, code) in cases {
        let a = request(
            api.port,
            "POST",
            &format!("/v1/actions/{name}"),
            token,
            &body,
        )
        .await?;
        ensure!(
            a.status == status && a.body["error"]["code"] == code,
            "{name} {:?}: expected {status} {code}, got {} {:?}",
            String::from_utf8_lossy(&body),
            a.status,
            a.body
        );
        ensure!(
            !a.body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "no message: {:?}",
            a.body
        );
    }
    let after = api.log.last_seq().await?;
    ensure!(
        before == after,
        "refused actions appended {} events",
        after - before
    );
    api.node.stop().await
}

async fn the_admin_token_survives_a_restart_and_is_never_in_the_log(
    api: Api,
) -> anyhow::Result<()> {
    let Api {
        node,
        log,
        admin,
        _dir,
        _nats,
        ..
    } = api;
    node.stop().await?;
    let node = start_node(
        log.clone(),
        _dir.path(),
        &[ServiceName::Api],
        "127.0.0.1:0".parse()?,
        "api",
    )
    .await?;
    let port = node.api_addr.expect("api").port();
    let again = std::fs::read_to_string(node.admin_token_file.as_ref().expect("file"))?;
    ensure!(again.trim() == admin, "a restart replaced the admin token");
    let a = action(
        port,
        Some(&admin),
        "system_create_account",
        &json!({"name": "after-restart"}),
    )
    .await?;
    ensure!(a.status == 200, "{:?}", a.body);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.admin_token_file.as_ref().expect("file"))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o077 == 0,
            "admin.token is readable by others: {mode:o}"
        );
    }
    // Only the fingerprint is in the log.
    let records = log.read(1, 10_000, &powernode_log::Filter::all()).await?;
    for r in &records {
        ensure!(
            !r.bytes.windows(admin.len()).any(|w| w == admin.as_bytes()),
            "the admin token is in the log at seq {}",
            r.seq
        );
    }
    node.stop().await
}

async fn nodes_instances_and_module_assignments(api: Api) -> anyhow::Result<()> {
    let (_, token) = api
        .account_with_token("prod", &["system.kubernetes_provision"])
        .await?;
    let call = |name: &'static str, args: serde_json::Value| {
        let token = token.clone();
        let port = api.port;
        async move { action(port, Some(&token), name, &args).await }
    };
    let tmpl = call("system_create_template", json!({"name": "k3s-server"})).await?;
    let tmpl_id = tmpl.body["data"]["template"]["id"].clone();
    let light = call(
        "system_create_node",
        json!({"hostname": "k3s-edge-1", "node_template_id": tmpl_id, "memory_mb": 2048}),
    )
    .await?;
    ensure!(
        light.status == 200 && light.body["data"]["node"]["memory_mb"] == 2048,
        "{:?}",
        light.body
    );
    let light_id = light.body["data"]["node"]["id"].clone();
    let heavy = call(
        "system_create_node",
        json!({"hostname": "k3s-prod-server-1", "node_template_id": tmpl_id, "memory_mb": 8192}),
    )
    .await?;
    let heavy_id = heavy.body["data"]["node"]["id"].clone();

    // ovn on a lightweight node is refused, and nothing is appended.
    let before = api.log.last_seq().await?;
    let refused = call(
        "system_provision_instance",
        json!({"node_id": light_id, "cni_plugin": "ovn_kubernetes"}),
    )
    .await?;
    ensure!(
        refused.status == 400 && refused.body["error"]["code"] == "CniProfileMismatchError",
        "{:?}",
        refused.body
    );
    ensure!(
        api.log.last_seq().await? == before,
        "a refused provision appended events"
    );
    let bad_cni = call(
        "system_provision_instance",
        json!({"node_id": light_id, "cni_plugin": "calico"}),
    )
    .await?;
    ensure!(
        bad_cni.status == 400 && bad_cni.body["error"]["code"] == "invalid_arguments",
        "{:?}",
        bad_cni.body
    );

    let inst = call(
        "system_provision_instance",
        json!({"node_id": heavy_id, "cni_plugin": "ovn_kubernetes"}),
    )
    .await?;
    ensure!(inst.status == 200, "{:?}", inst.body);
    let credential = inst.body["data"]["enrollment_credential"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        credential.len() > 20 && inst.body["data"]["id"].is_string(),
        "{:?}",
        inst.body
    );
    ensure!(
        inst.body["data"]["instance"]["status"] == "provisioned",
        "{:?}",
        inst.body
    );
    let records = api
        .log
        .read(1, 10_000, &powernode_log::Filter::all())
        .await?;
    ensure!(
        records.iter().all(|r| !r
            .bytes
            .windows(credential.len())
            .any(|w| w == credential.as_bytes())),
        "the enrollment credential is in the log"
    );

    let assigned = call("system_assign_module_to_template", json!({"template_id": tmpl_id, "module_name": "k3s-agent", "config": {"target_cluster_id": "cluster-prod-id"}})).await?;
    ensure!(assigned.status == 200, "{:?}", assigned.body);
    let m = &assigned.body["data"]["template"]["module_assignments"][0];
    ensure!(
        m["module_name"] == "k3s-agent" && m["config"]["target_cluster_id"] == "cluster-prod-id",
        "{:?}",
        assigned.body
    );
    let unknown = call(
        "system_assign_module_to_template",
        json!({"template_id": tmpl_id, "module_name": "k8s-magic"}),
    )
    .await?;
    ensure!(
        unknown.status == 400 && unknown.body["error"]["code"] == "invalid_arguments",
        "{:?}",
        unknown.body
    );
    api.node.stop().await
}

async fn recent_events_are_the_accounts_newest_by_kind_prefix(api: Api) -> anyhow::Result<()> {
    let (_, a) = api
        .account_with_token("a", &["system.kubernetes_provision"])
        .await?;
    let (_, b) = api
        .account_with_token("b", &["system.kubernetes_provision"])
        .await?;
    for i in 0..5 {
        action(
            api.port,
            Some(&a),
            "system_create_template",
            &json!({"name": format!("a{i}")}),
        )
        .await?;
        action(
            api.port,
            Some(&b),
            "system_create_template",
            &json!({"name": format!("b{i}")}),
        )
        .await?;
    }
    let got = action(
        api.port,
        Some(&a),
        "recent_events",
        &json!({"kind_prefix": "system.templ", "limit": 3}),
    )
    .await?;
    ensure!(got.status == 200, "{:?}", got.body);
    let events = got.body["data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<_> = events
        .iter()
        .map(|e| e["payload"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    ensure!(
        names == ["a2", "a3", "a4"],
        "expected a's newest three in order, got {names:?}"
    );
    ensure!(events
        .iter()
        .all(|e| e["kind"] == "system.template.created" && e["seq"].is_u64()));
    let all = action(api.port, Some(&a), "recent_events", &json!({})).await?;
    let text = all.body.to_string();
    ensure!(
        !text.contains(&a) && !text.contains(&api.admin),
        "a token appears in recent_events"
    );
    let bad = action(api.port, Some(&a), "recent_events", &json!({"limit": 0})).await?;
    ensure!(
        bad.status == 400 && bad.body["error"]["code"] == "invalid_arguments",
        "{:?}",
        bad.body
    );
    api.node.stop().await
}

powernode_tests::api_both_backends!(
    accounts_tokens_and_templates_read_their_writes,
    one_account_never_sees_another,
    bad_input_is_refused_and_nothing_is_appended,
    the_admin_token_survives_a_restart_and_is_never_in_the_log,
    nodes_instances_and_module_assignments,
    recent_events_are_the_accounts_newest_by_kind_prefix,
);
