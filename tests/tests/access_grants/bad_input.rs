//! Bad input: each refused with a clear error, nothing appended.

use super::world::*;
use anyhow::ensure;
use powernode_events::wireguard::encode_base64;
use powernode_tests::http::action;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_appends_nothing() -> anyhow::Result<()> {
    let mut w = world().await?;
    let net_id = s(&w.network["id"]);
    let gw_instance = s(&w.peers[0]["instance_id"]);
    w.register_key(&gw_instance, "10.99.0.2:51820").await?;
    let peer_key = w.keys[&gw_instance].0.clone();

    // Another account's network does not exist for this one.
    let admin = w.node.admin.clone();
    let port = w.node.port;
    let other = action(
        port,
        Some(&admin),
        "system_create_account",
        &json!({"name": "other"}),
    )
    .await?;
    let other_id = s(&other.body["data"]["account"]["id"]);
    let t = action(
        port,
        Some(&admin),
        "system_create_operator_token",
        &json!({"account_id": other_id, "permissions": ["system.kubernetes_provision"]}),
    )
    .await?;
    let other_token = s(&t.body["data"]["token"]);
    let reader = action(
        port,
        Some(&admin),
        "system_create_operator_token",
        &json!({"account_id": w.account, "permissions": []}),
    )
    .await?;
    let reader_token = s(&reader.body["data"]["token"]);

    let before = w.last_seq().await?;
    let cross = action(
        port,
        Some(&other_token),
        "system_sdwan_create_access_grant",
        &json!({"network_id": net_id, "name": "x"}),
    )
    .await?;
    ensure!(
        cross.status == 404 && cross.body["error"]["code"] == "not_found",
        "{:?}",
        cross.body
    );
    let forbidden = action(
        port,
        Some(&reader_token),
        "system_sdwan_create_access_grant",
        &json!({"network_id": net_id, "name": "x"}),
    )
    .await?;
    ensure!(forbidden.status == 403, "{:?}", forbidden.body);

    let bad = [
        (
            json!({"network_id": net_id, "name": "x", "public_key": "not base64!"}),
            "public_key",
        ),
        (
            json!({"network_id": net_id, "name": "x", "public_key": encode_base64(&[1; 31])}),
            "32",
        ),
        (
            json!({"network_id": net_id, "name": "x", "public_key": encode_base64(&[1; 33])}),
            "32",
        ),
        (
            json!({"network_id": net_id, "name": "x", "public_key": peer_key}),
            "public_key",
        ),
        (
            json!({"network_id": net_id, "name": "x", "ttl_secs": 0}),
            "ttl_secs",
        ),
        (
            json!({"network_id": net_id, "name": "x", "ttl_secs": 10_000_000_000u64}),
            "ttl_secs",
        ),
        (
            json!({"network_id": net_id, "name": "x", "ttl_secs": -5}),
            "ttl_secs",
        ),
        (json!({"network_id": net_id, "name": ""}), "name"),
        (json!({"network_id": net_id, "name": "  "}), "name"),
        (
            json!({"network_id": net_id, "name": "n".repeat(129)}),
            "name",
        ),
        (json!({"network_id": net_id}), "name"),
        (
            json!({"network_id": net_id, "name": "x", "extra": 1}),
            "extra",
        ),
    ];
    for (args, mentions) in bad {
        let a = w
            .call("system_sdwan_create_access_grant", args.clone())
            .await?;
        ensure!(
            a.status == 400
                && a.body["error"]["code"] == "invalid_arguments"
                && s(&a.body["error"]["message"]).contains(mentions),
            "{args}: {:?}",
            a.body
        );
    }
    let unknown = w
        .call(
            "system_sdwan_create_access_grant",
            json!({"network_id": "net-nope", "name": "x"}),
        )
        .await?;
    ensure!(unknown.status == 404, "{:?}", unknown.body);

    // A grant of this account cannot be revoked from another.
    let g = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "mine"}),
        )
        .await?;
    let before_revoke = w.last_seq().await?;
    let cross = action(
        port,
        Some(&other_token),
        "system_sdwan_revoke_access_grant",
        &json!({"grant_id": g["grant"]["id"]}),
    )
    .await?;
    ensure!(cross.status == 404, "{:?}", cross.body);
    ensure!(
        w.last_seq().await? == before_revoke,
        "a refused revoke appended"
    );
    ensure!(before < before_revoke, "the good grant was not appended");
    w.node.stop().await
}
