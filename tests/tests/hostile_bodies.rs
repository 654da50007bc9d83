//! Issue 13: a property test that throws malformed and hostile action
//! bodies at every action of the build (the names come from the code's
//! action table, `powernode_server::api::actions::ACTIONS`) and requires
//! each to be refused with a 4xx and an error code, never a 5xx or a 200,
//! and the log's last sequence to stay where it was.
//!
//! Every generated body is invalid by construction, so "refused, nothing
//! appended" is the honest expectation for each one: bodies that are not
//! JSON, not an object, repeat a key, hold a control character, carry an
//! unknown field, give a field the wrong type (negative, fractional or
//! overflowing numbers, nested junk), miss a required field, hold a string
//! over the argument limit, nest past the JSON depth limit, exceed the body
//! limit, or name another account's objects (well-typed otherwise, sent by
//! a non-admin token of this account: the ids do not exist for it).
//!
//! Run: `cargo nextest run -p powernode-tests --test hostile_bodies
//! --no-capture` (prints how many bodies were tried: 1,500 on the embedded
//! log, 1,000 on JetStream).

use powernode_server::api::actions::{ACTIONS, MAX_ARGUMENT_TEXT};
use powernode_tests::api_support::Api;
use powernode_tests::http::{action, request};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many bodies one run sends.
const CASES: u32 = 1_500;

/// The type of one argument, as the action's argument struct declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// `String`, required.
    Str,
    /// `Option<String>`.
    OptStr,
    /// `u64` / `usize`, required.
    Int,
    /// `Option<u64>` / `Option<usize>`.
    OptInt,
    /// `bool` with a default.
    OptBool,
    /// `Vec<String>`, required.
    List,
    /// `Vec<String>` with a default.
    OptList,
    /// `BTreeMap<String, String>` with a default.
    OptMap,
    /// A snake_case enum with a default (`cni_plugin`, `routing_mode`).
    OptEnum,
    /// Any JSON (`since`): never given a "wrong" value.
    Any,
}

impl Ty {
    fn required(self) -> bool {
        matches!(self, Ty::Str | Ty::Int | Ty::List)
    }
}

/// The arguments of every action. The test fails when an action of the
/// table has no entry here, so a new action is covered from day one.
fn spec(action: &str) -> Option<&'static [(&'static str, Ty)]> {
    use Ty::*;
    Some(match action {
        "system_create_account" => &[("name", Str)],
        "system_create_operator_token" => &[
            ("account_id", Str),
            ("permissions", List),
            ("ttl_secs", OptInt),
        ],
        "system_revoke_operator_token" => &[("token_id", Str)],
        "system_list_operator_tokens" => &[("account_id", OptStr)],
        "system_create_template" => &[("name", Str)],
        "system_get_template" => &[("id", Str)],
        "system_assign_module_to_template" => &[
            ("template_id", Str),
            ("module_name", Str),
            ("config", OptMap),
        ],
        "system_create_node" => &[
            ("hostname", Str),
            ("node_template_id", Str),
            ("memory_mb", Int),
        ],
        "system_provision_instance" => &[("node_id", Str), ("cni_plugin", OptEnum)],
        "recent_events" => &[
            ("kind_prefix", OptStr),
            ("limit", OptInt),
            ("since", Any),
            ("cluster", OptStr),
            ("instance", OptStr),
        ],
        "system_state_hash" => &[],
        "system_sdwan_create_network" => &[
            ("name", Str),
            ("pod_subnet_prefix", OptStr),
            ("routing_mode", OptEnum),
        ],
        "system_sdwan_attach_peer" => &[
            ("network_id", Str),
            ("node_instance_id", Str),
            ("lan_subnets", OptList),
        ],
        "kubernetes_list_clusters" => &[("include_decommissioned", OptBool)],
        "kubernetes_get_cluster" => &[("id", Str)],
        "kubernetes_list_nodes"
        | "kubernetes_get_kubeconfig"
        | "kubernetes_decommission_cluster"
        | "kubernetes_rotate_join_token" => &[("cluster_id", Str)],
        "system_sdwan_get_virtual_ip" => {
            &[("id", OptStr), ("cluster_id", OptStr), ("name", OptStr)]
        }
        "system_sdwan_list_networks" | "system_list_instances" => &[],
        "system_sdwan_update_network" => &[("network_id", Str), ("pod_subnet_prefix", Str)],
        "system_drain_instance" | "system_terminate_instance" => &[("id", Str)],
        "system_list_approvals" => &[("status", OptStr)],
        "system_approve" | "system_reject" => &[("approval_id", Str), ("reason", OptStr)],
        "system_sdwan_failover_virtual_ip" => &[
            ("virtual_ip_id", Str),
            ("dry_run", OptBool),
            ("to_peer_id", OptStr),
        ],
        _ => return None,
    })
}

/// A well-typed value for a required field (the rest of a body is broken).
fn filler(field: &str, ty: Ty) -> String {
    match (field, ty) {
        (_, Ty::Int) => "2048".into(),
        (_, Ty::List) => "[]".into(),
        ("module_name", _) => json!("k3s-server").to_string(),
        ("pod_subnet_prefix", _) => json!("10.77.0.0/16").to_string(),
        ("name" | "hostname", _) => json!("hb-name").to_string(),
        _ => json!("hb-0190-no-such-object").to_string(),
    }
}

/// True for a field that names an object by id.
fn is_id(field: &str) -> bool {
    field == "id" || field.ends_with("_id")
}

/// Who sends a body.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// The bootstrap admin.
    Admin,
    /// An account's token with every non-admin permission.
    Operator,
    /// The same account's token without permissions.
    Reader,
}

/// One hostile request.
#[derive(Debug, Clone)]
struct Case {
    action: &'static str,
    caller: Caller,
    category: &'static str,
    body: Vec<u8>,
    /// The error codes that are right for it (empty: any code).
    codes: &'static [&'static str],
    /// The status it must get, when only one is right.
    status: Option<u16>,
}

const MALFORMED: &[&str] = &["malformed_json"];
const INVALID: &[&str] = &["invalid_arguments"];

/// A JSON object from `(key, JSON text)` pairs, keys repeated as given.
fn object(fields: &[(String, String)]) -> Vec<u8> {
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    format!("{{{}}}", inner.join(",")).into_bytes()
}

/// The required fields of `spec`, with fillers.
fn base(spec: &[(&'static str, Ty)]) -> Vec<(String, String)> {
    spec.iter()
        .filter(|(_, t)| t.required())
        .map(|(k, t)| (k.to_string(), filler(k, *t)))
        .collect()
}

/// Any JSON value (as text), nested a few levels.
fn junk() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A character no argument may hold.
fn unsafe_char() -> BoxedStrategy<char> {
    prop_oneof![
        proptest::char::range('\u{0}', '\u{1f}'),
        Just('\u{7f}'),
        proptest::char::range('\u{80}', '\u{9f}'),
        proptest::char::range('\u{202a}', '\u{202e}'),
        proptest::char::range('\u{2066}', '\u{2069}'),
    ]
    .boxed()
}

/// A value `ty` does not accept (never `null` for an optional field, which
/// means "absent"). JSON text, so overflowing numbers can be written.
fn wrong(ty: Ty) -> BoxedStrategy<String> {
    let not_string = prop_oneof![
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just(r#"["a"]"#.to_string()),
        junk()
            .prop_filter("not a string or null", |v| !v.is_string() && !v.is_null())
            .prop_map(|v| v.to_string()),
    ];
    let not_int = prop_oneof![
        (i64::MIN..0).prop_map(|n| n.to_string()),
        Just("-0.5".to_string()),
        Just("0.5".to_string()),
        Just("2048.0".to_string()),
        Just("1e300".to_string()),
        Just("18446744073709551616".to_string()),
        Just("340282366920938463463374607431768211456".to_string()),
        Just(r#""2048""#.to_string()),
        Just("true".to_string()),
        Just("[2048]".to_string()),
        Just(r#"{"n":1}"#.to_string()),
    ];
    let not_bool = prop_oneof![
        Just("1".to_string()),
        Just("0".to_string()),
        Just(r#""true""#.to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    let not_list = prop_oneof![
        Just(r#""system.admin""#.to_string()),
        Just("7".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        Just("[1]".to_string()),
        Just("[null]".to_string()),
        Just(r#"[["x"]]"#.to_string()),
        Just(r#"["a",{"b":1}]"#.to_string()),
    ];
    let not_map = prop_oneof![
        Just(r#""k=v""#.to_string()),
        Just("[]".to_string()),
        Just("3".to_string()),
        Just(r#"{"k":1}"#.to_string()),
        Just(r#"{"k":null}"#.to_string()),
        Just(r#"{"k":{"nested":"x"}}"#.to_string()),
        Just(r#"{"k":["x"]}"#.to_string()),
    ];
    match ty {
        Ty::Str => prop_oneof![Just("null".to_string()), not_string].boxed(),
        Ty::OptStr => not_string.boxed(),
        Ty::OptEnum => prop_oneof![
            not_string,
            Just(r#""zz-not-a-variant""#.to_string()),
            Just(r#""Flannel""#.to_string()),
            Just(r#""""#.to_string()),
        ]
        .boxed(),
        Ty::Int => prop_oneof![Just("null".to_string()), not_int].boxed(),
        Ty::OptInt => not_int.boxed(),
        Ty::OptBool => not_bool.boxed(),
        Ty::List => prop_oneof![Just("null".to_string()), not_list].boxed(),
        Ty::OptList => not_list.boxed(),
        Ty::OptMap => not_map.boxed(),
        Ty::Any => unreachable!("`Any` fields are never given a wrong value"),
    }
}

/// Bytes that are not JSON at all, or JSON text broken in one place.
fn not_json(spec: &'static [(&'static str, Ty)]) -> BoxedStrategy<Vec<u8>> {
    let good = object(&base(spec));
    let cut = {
        let good = good.clone();
        (1..good.len()).prop_map(move |n| good[..n].to_vec())
    };
    let field = spec.first().map_or("name", |(k, _)| k);
    let fixed: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"}".to_vec(),
        b"{\"a\":1,}".to_vec(),
        b"{'name':'x'}".to_vec(),
        b"{name:\"x\"}".to_vec(),
        b"{/* comment */}".to_vec(),
        format!("{{\"{field}\":NaN}}").into_bytes(),
        format!("{{\"{field}\":Infinity}}").into_bytes(),
        format!("{{\"{field}\":1e400}}").into_bytes(),
        format!("{{\"{field}\":-1e400}}").into_bytes(),
        format!("{{\"{field}\":\"\\u12\"}}").into_bytes(),
        format!("{{\"{field}\":\"\\ud800\"}}").into_bytes(),
        format!("{{\"{field}\":\"a\u{1}b\"}}").into_bytes(),
        [b"{\"".as_slice(), field.as_bytes(), b"\":\"\xff\xfe\"}"].concat(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"{}{}".to_vec(),
        b"{} x".to_vec(),
        b"undefined".to_vec(),
        b"\x00".to_vec(),
    ];
    let trailing = {
        let good = good.clone();
        prop_oneof![Just("x"), Just("}"), Just(",{}"), Just("]"), Just("\"")]
            .prop_map(move |t| [good.as_slice(), t.as_bytes()].concat())
    };
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 1..200).prop_filter(
            "not JSON",
            |b| !b.iter().all(u8::is_ascii_whitespace)
                && serde_json::from_slice::<Value>(b).is_err()
        ),
        2 => cut,
        2 => proptest::sample::select(fixed),
        1 => trailing,
    ]
    .boxed()
}

/// The strategy for one case of `action`.
fn case(action: &'static str) -> BoxedStrategy<Case> {
    let spec = spec(action).unwrap_or_else(|| panic!("{action}: no argument spec"));
    let names: Vec<&'static str> = spec.iter().map(|(k, _)| *k).collect();
    let first_name: &'static str = names.first().copied().unwrap_or("x");
    let caller = prop_oneof![
        Just(Caller::Admin),
        Just(Caller::Operator),
        Just(Caller::Reader)
    ];
    let non_admin = prop_oneof![Just(Caller::Operator), Just(Caller::Reader)];
    let mk = move |category: &'static str, codes: &'static [&'static str], status: Option<u16>| {
        move |(caller, body): (Caller, Vec<u8>)| Case {
            action,
            caller,
            category,
            body,
            codes,
            status,
        }
    };
    let unknown_key = {
        let names = names.clone();
        "[a-z_]{1,16}".prop_filter("not an argument", move |k| !names.contains(&k.as_str()))
    };
    let mut options: Vec<(u32, BoxedStrategy<Case>)> = vec![
        (
            3,
            (caller.clone(), not_json(spec))
                .prop_map(mk("not_json", MALFORMED, Some(400)))
                .boxed(),
        ),
        (
            2,
            (
                caller.clone(),
                junk()
                    .prop_filter("not an object", |v| !v.is_object())
                    .prop_map(|v| v.to_string().into_bytes()),
            )
                .prop_map(mk("not_an_object", INVALID, Some(400)))
                .boxed(),
        ),
        (
            3,
            (
                caller.clone(),
                proptest::sample::select(
                    names
                        .iter()
                        .map(|k| k.to_string())
                        .chain(["x".to_string()])
                        .collect::<Vec<_>>(),
                ),
                junk(),
                junk(),
                any::<bool>(),
            )
                .prop_map(move |(caller, key, a, b, first)| {
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| *k != key);
                    let at = if first { 0 } else { fields.len() };
                    fields.insert(at, (key.clone(), a.to_string()));
                    fields.push((key, b.to_string()));
                    (caller, object(&fields))
                })
                .prop_map(mk("duplicate_key", MALFORMED, Some(400)))
                .boxed(),
        ),
        (
            3,
            (
                caller.clone(),
                ".{0,12}",
                unsafe_char(),
                ".{0,12}",
                0..4usize,
                proptest::sample::select(
                    names
                        .iter()
                        .map(|k| k.to_string())
                        .chain(["label".to_string()])
                        .collect::<Vec<_>>(),
                ),
            )
                .prop_map(move |(caller, pre, c, post, place, key)| {
                    let evil = format!("{pre}{c}{post}");
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| *k != key);
                    let value = match place {
                        0 => json!(evil),
                        1 => json!([evil]),
                        2 => json!({ "k": evil }),
                        _ => {
                            // The control character in a key.
                            fields.push((evil, json!("x").to_string()));
                            return (caller, object(&fields));
                        }
                    };
                    fields.push((key, value.to_string()));
                    (caller, object(&fields))
                })
                .prop_map(mk("control_character", INVALID, Some(400)))
                .boxed(),
        ),
        (
            3,
            (caller.clone(), unknown_key, junk())
                .prop_map(move |(caller, key, v)| {
                    let mut fields = base(spec);
                    fields.push((key, v.to_string()));
                    (caller, object(&fields))
                })
                .prop_map(mk("unknown_field", INVALID, Some(400)))
                .boxed(),
        ),
        (
            2,
            (
                caller.clone(),
                MAX_ARGUMENT_TEXT + 1..100_000usize,
                proptest::char::range('a', 'z'),
                proptest::sample::select(
                    names
                        .iter()
                        .map(|k| k.to_string())
                        .chain(["note".to_string()])
                        .collect::<Vec<_>>(),
                ),
                any::<bool>(),
            )
                .prop_map(move |(caller, len, c, key, as_key)| {
                    let huge: String = std::iter::repeat_n(c, len).collect();
                    let mut fields = base(spec);
                    if as_key {
                        fields.push((huge, "1".into()));
                    } else {
                        fields.retain(|(k, _)| *k != key);
                        fields.push((key, json!(huge).to_string()));
                    }
                    (caller, object(&fields))
                })
                .prop_map(mk("huge_string", INVALID, Some(400)))
                .boxed(),
        ),
        (
            1,
            (caller.clone(), 130..3_000usize, any::<bool>())
                .prop_map(move |(caller, depth, arrays)| {
                    let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| k != first_name);
                    fields.push((
                        first_name.to_string(),
                        format!("{}1{}", open.repeat(depth), close.repeat(depth)),
                    ));
                    (caller, object(&fields))
                })
                .prop_map(mk("deep_nesting", MALFORMED, Some(400)))
                .boxed(),
        ),
        (
            1,
            (caller.clone(), 0..64usize)
                .prop_map(move |(caller, extra)| {
                    let mut body = br#"{"name":""#.to_vec();
                    body.resize(body.len() + 2 * 1024 * 1024 + extra, b'a');
                    body.extend_from_slice(b"\"}");
                    (caller, body)
                })
                .prop_map(mk("oversized_body", &["body_too_large"], Some(413)))
                .boxed(),
        ),
    ];
    let typed: Vec<(&'static str, Ty)> = spec
        .iter()
        .copied()
        .filter(|(_, t)| *t != Ty::Any)
        .collect();
    if !typed.is_empty() {
        let strategy =
            proptest::sample::select(typed).prop_flat_map(|(field, ty)| (Just(field), wrong(ty)));
        options.push((
            4,
            (caller.clone(), strategy)
                .prop_map(move |(caller, (field, value))| {
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| *k != field);
                    fields.push((field.to_string(), value));
                    (caller, object(&fields))
                })
                .prop_map(mk("wrong_type", INVALID, Some(400)))
                .boxed(),
        ));
    }
    let required: Vec<&'static str> = spec
        .iter()
        .filter(|(_, t)| t.required())
        .map(|(k, _)| *k)
        .collect();
    if !required.is_empty() {
        options.push((
            2,
            (caller.clone(), proptest::sample::select(required))
                .prop_map(move |(caller, missing)| {
                    let mut fields = base(spec);
                    fields.retain(|(k, _)| k != missing);
                    (caller, object(&fields))
                })
                .prop_map(mk("missing_field", INVALID, Some(400)))
                .boxed(),
        ));
    }
    let ids: Vec<&'static str> = names.iter().copied().filter(|k| is_id(k)).collect();
    if !ids.is_empty() {
        options.push((
            4,
            (
                non_admin,
                proptest::collection::vec(0..VICTIM_IDS, ids.len()),
            )
                .prop_map(move |(caller, picks)| {
                    // Marker bytes, replaced by the victim's real ids at run time.
                    let mut fields = base(spec);
                    for (field, pick) in ids.iter().zip(picks) {
                        fields.retain(|(k, _)| k != field);
                        fields.push((
                            field.to_string(),
                            json!(format!("@victim{pick}@")).to_string(),
                        ));
                    }
                    (caller, object(&fields))
                })
                .prop_map(mk("other_accounts_ids", &[], None))
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(options).boxed()
}

/// How many ids of the other account a case may pick from.
const VICTIM_IDS: usize = 6;

/// The running node and who calls it.
struct Target {
    api: Api,
    operator: String,
    reader: String,
    /// The other account's ids: account, template, node, instance, network, token.
    victim: [String; VICTIM_IDS],
}

async fn setup(jetstream: bool) -> anyhow::Result<Target> {
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
async fn check(t: &Target, case: &Case, before: u64) -> Result<(), String> {
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

#[test]
fn hostile_bodies_are_refused_with_a_4xx_and_append_nothing() {
    hostile_bodies(false, CASES);
}

/// The same on a real nats-server (the harness's authenticated one).
#[test]
fn hostile_bodies_are_refused_on_jetstream_too() {
    hostile_bodies(true, 1_000);
}

fn hostile_bodies(jetstream: bool, cases: u32) {
    for name in ACTIONS {
        assert!(
            spec(name).is_some(),
            "{name} has no argument spec in this test: add one"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let target = rt.block_on(setup(jetstream)).expect("setup");
    let before = rt
        .block_on(target.api.log.last_seq())
        .expect("the log's last seq");
    let strategy = proptest::sample::select(ACTIONS.to_vec()).prop_flat_map(case);
    let tried = AtomicUsize::new(0);
    let seen: Mutex<BTreeMap<(&'static str, &'static str), usize>> = Mutex::default();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let result = runner.run(&strategy, |case| {
        tried.fetch_add(1, Ordering::Relaxed);
        *seen
            .lock()
            .unwrap()
            .entry((case.action, case.category))
            .or_default() += 1;
        rt.block_on(check(&target, &case, before))
            .map_err(TestCaseError::fail)
    });
    let tried = tried.into_inner();
    let seen = seen.into_inner().unwrap();
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    for ((a, c), n) in &seen {
        *by_category.entry(c).or_default() += n;
        *by_action.entry(a).or_default() += n;
    }
    println!(
        "hostile bodies tried on {}: {tried} (shrinking included) across {} actions; by category: {by_category:?}",
        if jetstream { "JetStream" } else { "the embedded log" },
        by_action.len()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(tried >= cases as usize, "only {tried} bodies were tried");
    for name in ACTIONS {
        assert!(
            by_action.get(name).is_some_and(|n| *n > 0),
            "{name} got no hostile body: {by_action:?}"
        );
    }
    let last = rt.block_on(target.api.log.last_seq()).expect("last seq");
    assert_eq!(last, before, "the log grew");
}
