//! Issue 13, medium and low findings of the operator HTTP surface:
//!
//! * duplicate JSON keys are refused (400 `malformed_json` naming the key);
//! * authentication comes first: an anonymous caller gets 401 whatever the
//!   action name or body;
//! * control characters (C0, DEL, C1, bidi overrides and isolates) are
//!   refused in every name, naming the field, and the CLI escapes anything
//!   non-printable the server sends before printing a table;
//! * operator tokens can be revoked (`token_revoked`), expire
//!   (`ttl_secs`, `token_expired`) and be listed without their secrets.

use anyhow::ensure;
use powernode_events::{Envelope, EventPayload};
use powernode_log::Filter;
use powernode_tests::api_support::Api;
use powernode_tests::http::{action, request, Answer};
use serde_json::{json, Value};
use std::time::Duration;

/// `POST /v1/actions/<name>` with raw bytes.
async fn raw(api: &Api, token: Option<&str>, name: &str, body: &[u8]) -> anyhow::Result<Answer> {
    request(
        api.port,
        "POST",
        &format!("/v1/actions/{name}"),
        token,
        body,
    )
    .await
}

/// The event at `seq`, decoded.
async fn last_event(api: &Api, seq: u64) -> anyhow::Result<Envelope> {
    let records = api.log.read(seq, 1, &Filter::all()).await?;
    let record = records
        .first()
        .ok_or_else(|| anyhow::anyhow!("no record at {seq}"))?;
    Ok(Envelope::decode(&record.bytes)?)
}

fn code(a: &Answer) -> &str {
    a.body["error"]["code"].as_str().unwrap_or("")
}

fn message(a: &Answer) -> &str {
    a.body["error"]["message"].as_str().unwrap_or("")
}

/// Asserts `a` is `status` with error `code`.
fn refused(a: &Answer, status: u16, want: &str, what: &str) -> anyhow::Result<()> {
    ensure!(
        a.status == status && code(a) == want,
        "{what}: expected {status} {want}, got {} {}",
        a.status,
        a.body
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_keys_are_refused_naming_the_key() -> anyhow::Result<()> {
    let api = Api::embedded().await?;
    let before = api.log.last_seq().await?;
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "system_create_template",
            br#"{"name":"a","name":"b"}"#,
            "name",
        ),
        (
            "system_create_account",
            br#"{"name":"x", "name" : "admin"}"#,
            "name",
        ),
        (
            "system_assign_module_to_template",
            br#"{"template_id":"t","module_name":"k3s-server","config":{"target_cluster_id":"a","target_cluster_id":"b"}}"#,
            "target_cluster_id",
        ),
        (
            "system_create_operator_token",
            br#"{"account_id":"system","permissions":[],"permissions":["system.admin"]}"#,
            "permissions",
        ),
        ("recent_events", br#"{"limit":1,"limit":2}"#, "limit"),
    ];
    for (name, body, key) in cases {
        let a = raw(&api, Some(&api.admin), name, body).await?;
        refused(&a, 400, "malformed_json", name)?;
        ensure!(
            message(&a).contains("duplicate key") && message(&a).contains(key),
            "{name}: the message should name the duplicated key {key:?}: {}",
            message(&a)
        );
    }
    ensure!(
        api.log.last_seq().await? == before,
        "a refused body appended something"
    );
    // The same body without the duplicate is accepted.
    let a = raw(
        &api,
        Some(&api.admin),
        "system_create_template",
        br#"{"name":"b"}"#,
    )
    .await?;
    ensure!(a.status == 200, "{:?}", a.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_comes_before_every_other_check() -> anyhow::Result<()> {
    let api = Api::embedded().await?;
    let bodies: &[&[u8]] = &[
        b"{}",
        b"{not json",
        b"[1,2]",
        br#"{"name":"a","name":"b"}"#,
        br#"{"nmae":"x"}"#,
        br#"{"name":"\u001b[2J"}"#,
    ];
    for name in [
        "system_no_such_action",
        "system_create_template",
        "kubernetes_get_kubeconfig",
    ] {
        for body in bodies {
            for token in [None, Some("pn_not-a-token"), Some("")] {
                let a = raw(&api, token, name, body).await?;
                refused(
                    &a,
                    401,
                    "unauthorized",
                    &format!("{name} {:?} token {token:?}", String::from_utf8_lossy(body)),
                )?;
                ensure!(
                    !message(&a).contains("known actions"),
                    "a 401 must not list the actions: {}",
                    message(&a)
                );
            }
        }
    }
    // Authenticated, the other checks answer as before.
    let a = raw(&api, Some(&api.admin), "system_no_such_action", b"{}").await?;
    refused(&a, 404, "unknown_action", "unknown action as admin")?;
    let a = raw(
        &api,
        Some(&api.admin),
        "system_create_template",
        b"{not json",
    )
    .await?;
    refused(&a, 400, "malformed_json", "malformed JSON as admin")?;
    let a = raw(&api, Some(&api.admin), "system_create_template", b"{}").await?;
    refused(&a, 400, "invalid_arguments", "missing name as admin")?;
    Ok(())
}

/// The characters no name may hold.
const HOSTILE: &[(char, &str)] = &[
    ('\u{0}', "NUL"),
    ('\u{7}', "BEL"),
    ('\t', "TAB"),
    ('\n', "LF"),
    ('\r', "CR"),
    ('\u{1b}', "ESC"),
    ('\u{7f}', "DEL"),
    ('\u{85}', "NEL (C1)"),
    ('\u{9b}', "CSI (C1)"),
    ('\u{202a}', "LRE"),
    ('\u{202e}', "RLO"),
    ('\u{2066}', "LRI"),
    ('\u{2069}', "PDI"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_in_every_name() -> anyhow::Result<()> {
    let api = Api::embedded().await?;
    let admin = Some(api.admin.as_str());
    let t = action(
        api.port,
        admin,
        "system_create_template",
        &json!({"name": "t"}),
    )
    .await?;
    ensure!(t.status == 200, "{:?}", t.body);
    let template = t.body["data"]["template"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = api.log.last_seq().await?;
    for (c, label) in HOSTILE {
        let evil = format!("web-1{c}[2Kinst-evil  ready");
        // (action, arguments, the field that must be named)
        let cases: Vec<(&str, Value, &str)> = vec![
            ("system_create_account", json!({"name": evil}), "name"),
            ("system_create_template", json!({"name": evil}), "name"),
            (
                "system_create_node",
                json!({"hostname": evil, "node_template_id": template, "memory_mb": 2048}),
                "hostname",
            ),
            ("system_sdwan_create_network", json!({"name": evil}), "name"),
            (
                "system_assign_module_to_template",
                json!({"template_id": template, "module_name": "k3s-server", "config": {"label": evil}}),
                "config.label",
            ),
            (
                "system_reject",
                json!({"approval_id": "appr-x", "reason": evil}),
                "reason",
            ),
            ("system_sdwan_get_virtual_ip", json!({"name": evil}), "name"),
        ];
        for (name, args, field) in cases {
            let a = action(api.port, admin, name, &args).await?;
            refused(
                &a,
                400,
                "invalid_arguments",
                &format!("{name} with {label}"),
            )?;
            ensure!(
                message(&a).starts_with(&format!("{field}:")),
                "{name} with {label}: the message should name {field}: {}",
                message(&a)
            );
        }
    }
    ensure!(
        api.log.last_seq().await? == before,
        "a refused name appended something"
    );
    // Plain names and non-ASCII letters are fine.
    for ok in ["k3s-prod-server-1", "Zürich edge", "東京"] {
        let a = action(
            api.port,
            admin,
            "system_create_template",
            &json!({"name": ok}),
        )
        .await?;
        ensure!(a.status == 200, "{ok}: {:?}", a.body);
    }
    Ok(())
}

#[test]
fn the_cli_escapes_server_strings_before_printing_instance_tables() {
    // What a hostile server (or a stored agent string) could send: a
    // hostname that ends its row and prints a forged one.
    let data = json!({"instances": [
        {"id": "inst-1", "hostname": "web-1\r\n\u{1b}[2Kinst-evil  admin-box  ready", "status": "ready"},
        {"id": "inst-2\u{202e}", "hostname": "db", "status": "ready",
         "last_join_rejection": "bad\u{9b}31m"},
    ]});
    let text = powernode_cli::fleet::render_instances(&data, 0);
    assert_eq!(text.lines().count(), 3, "header and two rows:\n{text}");
    assert!(
        !text
            .chars()
            .any(|c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))),
        "non-printable characters reached the terminal: {text:?}"
    );
    assert!(
        text.contains(r"web-1\u{d}\u{a}\u{1b}[2Kinst-evil"),
        "{text}"
    );
    assert!(text.contains(r"inst-2\u{202e}"), "{text}");
    assert!(text.contains(r"bad\u{9b}31m"), "{text}");
    // An event summary (`events tail`, `events list`), keys included.
    let event = json!({
        "kind": "system.k3s.module.assigned",
        "aggregate": {"type": "template", "id": "tmpl-1"},
        "payload": {"k\u{1b}]0;pwned\u{7}": "v\r\nforged"},
    });
    let summary = powernode_cli::events::summary(&event);
    assert!(!summary.chars().any(char::is_control), "{summary:?}");
    assert!(
        summary.contains(r"k\u{1b}]0;pwned\u{7}=v\u{d}\u{a}forged"),
        "{summary}"
    );
    // A refusal's code and message, as the CLI prints them.
    let e = powernode_client::Refusal {
        status: 404,
        code: "not_found\u{1b}[2J".into(),
        message: "no instance \"x\"\r\nforged: line".into(),
    };
    let shown = e.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(
        shown.contains(r"not_found\u{1b}[2J") && shown.contains(r"\u{d}\u{a}forged"),
        "{shown}"
    );
}

/// An account and a token with `permissions` (and `ttl_secs` when given).
async fn token(
    api: &Api,
    account: &str,
    permissions: &[&str],
    ttl_secs: Option<u64>,
) -> anyhow::Result<Answer> {
    let mut args = json!({"account_id": account, "permissions": permissions});
    if let Some(ttl) = ttl_secs {
        args["ttl_secs"] = json!(ttl);
    }
    action(
        api.port,
        Some(&api.admin),
        "system_create_operator_token",
        &args,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_operator_token_is_refused_on_its_next_call() -> anyhow::Result<()> {
    revoke_check(Api::embedded().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_operator_token_is_refused_on_its_next_call_on_jetstream() -> anyhow::Result<()> {
    revoke_check(Api::jetstream().await?).await
}

async fn revoke_check(api: Api) -> anyhow::Result<()> {
    let (account, tok) = api
        .account_with_token("acme", &["system.kubernetes_provision"])
        .await?;
    let a = action(api.port, Some(&tok), "system_list_instances", &json!({})).await?;
    ensure!(a.status == 200, "{:?}", a.body);
    let listed = action(
        api.port,
        Some(&api.admin),
        "system_list_operator_tokens",
        &json!({"account_id": account}),
    )
    .await?;
    ensure!(listed.status == 200, "{:?}", listed.body);
    let token_id = listed.body["data"]["tokens"][0]["token_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(token_id.starts_with("tok-"), "{:?}", listed.body);
    // Only an admin may revoke, and nobody revokes what does not exist.
    let a = action(
        api.port,
        Some(&tok),
        "system_revoke_operator_token",
        &json!({"token_id": token_id}),
    )
    .await?;
    refused(&a, 403, "forbidden", "revoke with a provision token")?;
    let a = action(
        api.port,
        Some(&api.admin),
        "system_revoke_operator_token",
        &json!({"token_id": "tok-nope"}),
    )
    .await?;
    refused(&a, 404, "not_found", "revoke an unknown token")?;
    let before = api.log.last_seq().await?;
    let a = action(
        api.port,
        Some(&api.admin),
        "system_revoke_operator_token",
        &json!({"token_id": token_id}),
    )
    .await?;
    ensure!(
        a.status == 200 && a.body["data"]["revoked"] == true,
        "{:?}",
        a.body
    );
    let revoked_at = api.log.last_seq().await?;
    ensure!(revoked_at == before + 1, "one event for one revocation");
    let last = last_event(&api, revoked_at).await?;
    ensure!(
        last.kind() == "system.operator_token.revoked" && last.aggregate.id == token_id,
        "the log records the revocation: {last:?}"
    );
    for name in [
        "system_list_instances",
        "system_create_template",
        "system_no_such_action",
    ] {
        let a = action(api.port, Some(&tok), name, &json!({"name": "x"})).await?;
        refused(&a, 401, "token_revoked", name)?;
    }
    // Revoking again changes nothing.
    let a = action(
        api.port,
        Some(&api.admin),
        "system_revoke_operator_token",
        &json!({"token_id": token_id}),
    )
    .await?;
    ensure!(
        a.status == 200 && a.body["data"]["already_revoked"] == true,
        "{:?}",
        a.body
    );
    ensure!(
        api.log.last_seq().await? == revoked_at,
        "a second revocation appended"
    );
    let listed = action(
        api.port,
        Some(&api.admin),
        "system_list_operator_tokens",
        &json!({}),
    )
    .await?;
    let row = listed.body["data"]["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["token_id"] == token_id.as_str())
        .cloned()
        .unwrap_or_default();
    ensure!(row["revoked"] == true, "{row}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_token_with_a_ttl_expires() -> anyhow::Result<()> {
    let api = Api::embedded().await?;
    let (account, _) = api.account_with_token("acme", &[]).await?;
    let t = token(&api, &account, &["system.kubernetes_provision"], Some(2)).await?;
    ensure!(t.status == 200, "{:?}", t.body);
    let secret = t.body["data"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let expires_at = t.body["data"]["expires_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let at = chrono::DateTime::parse_from_rfc3339(&expires_at)?;
    let now = chrono::Utc::now();
    ensure!(
        at > now && at <= now + chrono::Duration::seconds(3),
        "expires_at {expires_at} is not about 2 s from now"
    );
    // The issued event records the expiry.
    let issued = last_event(&api, api.log.last_seq().await?).await?;
    match &issued.payload {
        EventPayload::OperatorTokenIssued(p) => ensure!(
            p.expires_at.as_deref() == Some(expires_at.as_str()),
            "{p:?}"
        ),
        other => anyhow::bail!("the last event is {other:?}"),
    }
    let a = action(api.port, Some(&secret), "system_list_instances", &json!({})).await?;
    ensure!(a.status == 200, "before expiry: {:?}", a.body);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let a = action(api.port, Some(&secret), "system_list_instances", &json!({})).await?;
    refused(&a, 401, "token_expired", "after expiry")?;
    // Out-of-range TTLs are refused, naming the field.
    for bad in [
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(1.5),
        json!("60"),
    ] {
        let a = action(
            api.port,
            Some(&api.admin),
            "system_create_operator_token",
            &json!({"account_id": account, "permissions": [], "ttl_secs": bad}),
        )
        .await?;
        refused(&a, 400, "invalid_arguments", &format!("ttl_secs {bad}"))?;
        ensure!(message(&a).contains("ttl_secs"), "{}", message(&a));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_operator_tokens_shows_ids_and_fingerprints_never_tokens() -> anyhow::Result<()> {
    let api = Api::embedded().await?;
    let (acme, acme_tok) = api
        .account_with_token("acme", &["system.kubernetes_provision"])
        .await?;
    let (other, _) = api.account_with_token("other", &[]).await?;
    let with_ttl = token(&api, &acme, &[], Some(3600)).await?;
    ensure!(with_ttl.status == 200, "{:?}", with_ttl.body);
    let secrets = [
        acme_tok.clone(),
        with_ttl.body["data"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        api.admin.clone(),
    ];
    let all = action(
        api.port,
        Some(&api.admin),
        "system_list_operator_tokens",
        &json!({}),
    )
    .await?;
    ensure!(all.status == 200, "{:?}", all.body);
    let text = all.body.to_string();
    for s in &secrets {
        ensure!(
            !text.contains(s.as_str()),
            "a token secret is listed: {text}"
        );
    }
    let tokens = all.body["data"]["tokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(tokens.len() == 4, "admin + acme x2 + other: {text}");
    for t in &tokens {
        let keys: Vec<&str> = t
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut keys = keys;
        keys.sort();
        ensure!(
            keys == [
                "account_id",
                "expires_at",
                "fingerprint",
                "permissions",
                "revoked",
                "token_id"
            ],
            "{t}"
        );
        ensure!(
            t["fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with("sha256:")),
            "{t}"
        );
    }
    ensure!(
        tokens
            .iter()
            .any(|t| t["account_id"] == acme.as_str() && t["expires_at"].is_string()),
        "the TTL token shows its expiry: {text}"
    );
    let only = action(
        api.port,
        Some(&api.admin),
        "system_list_operator_tokens",
        &json!({"account_id": other}),
    )
    .await?;
    let only = only.body["data"]["tokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        only.len() == 1 && only[0]["account_id"] == other.as_str(),
        "{only:?}"
    );
    // Admin only.
    let a = action(
        api.port,
        Some(&acme_tok),
        "system_list_operator_tokens",
        &json!({}),
    )
    .await?;
    refused(&a, 403, "forbidden", "list with a provision token")?;
    let a = action(
        api.port,
        Some(&api.admin),
        "system_list_operator_tokens",
        &json!({"account_id": "acct-nope"}),
    )
    .await?;
    refused(&a, 404, "not_found", "list an unknown account")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_append_one_event() -> anyhow::Result<()> {
    concurrent_revocations(Api::embedded().await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_append_one_event_on_jetstream() -> anyhow::Result<()> {
    concurrent_revocations(Api::jetstream().await?).await
}

async fn concurrent_revocations(api: Api) -> anyhow::Result<()> {
    let (account, tok) = api.account_with_token("acme", &[]).await?;
    let listed = action(
        api.port,
        Some(&api.admin),
        "system_list_operator_tokens",
        &json!({"account_id": account}),
    )
    .await?;
    let token_id = listed.body["data"]["tokens"][0]["token_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = api.log.last_seq().await?;
    let args = json!({"token_id": token_id});
    let calls = (0..20).map(|_| {
        action(
            api.port,
            Some(&api.admin),
            "system_revoke_operator_token",
            &args,
        )
    });
    let answers = futures::future::join_all(calls).await;
    let mut fresh = 0;
    for a in answers {
        let a = a?;
        ensure!(
            a.status == 200 && a.body["data"]["revoked"] == true,
            "{:?}",
            a.body
        );
        if a.body["data"]["already_revoked"] == false {
            fresh += 1;
        }
    }
    ensure!(fresh == 1, "{fresh} calls say they revoked the token");
    let after = api.log.last_seq().await?;
    ensure!(
        after == before + 1,
        "{} events for one revocation",
        after - before
    );
    let a = action(api.port, Some(&tok), "system_list_instances", &json!({})).await?;
    refused(&a, 401, "token_revoked", "after concurrent revocations")?;
    Ok(())
}
