//! `powernode get KIND [NAME] [--watch]` and `powernode describe KIND NAME`.

use super::kinds::{self, Kind};
use crate::output::{cell, emit, field, key_values, line, print_data, Format, Table};
use crate::ApiArgs;
use powernode_actions::ActionName;
use powernode_client::Api;
use serde_json::{json, Value};
use std::time::Duration;

/// How often `--watch` reads the list again.
const WATCH_POLL: Duration = Duration::from_millis(500);

/// `objects` of `kind` as `format` prints them (`single`: one object
/// asked for by name).
fn render(kind: &Kind, format: Format, objects: &[Value], single: bool) -> String {
    match format {
        Format::Json | Format::Yaml => {
            let v = if single {
                objects.first().cloned().unwrap_or(Value::Null)
            } else {
                json!({ kind.key: objects })
            };
            if format == Format::Json {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            } else {
                serde_norway::to_string(&v).unwrap_or_default()
            }
        }
        Format::Name => objects.iter().map(|o| kind.ref_of(o) + "\n").collect(),
        Format::Table | Format::Wide => kind
            .table(objects, format == Format::Wide)
            .render(&format!("No {} found.", kind.plural)),
    }
}

/// `powernode get KIND [NAME]`.
pub async fn get(
    api_args: &ApiArgs,
    kind: &str,
    name: Option<&str>,
    watch: bool,
    all: bool,
) -> anyhow::Result<()> {
    let kind = kinds::kind(kind)?;
    let api = api_args.client()?;
    let format = api_args.output;
    let read = || async {
        let list = kind.list(&api, all || name.is_some()).await?;
        anyhow::Ok(match name {
            Some(n) => vec![kind.pick(&list, n)?],
            None => list,
        })
    };
    let objects = read().await?;
    emit(&render(kind, format, &objects, name.is_some()));
    if objects.is_empty() && !format.is_data() {
        if let Some(hint) = crate::hint::empty_list_hint(&api, kind.plural).await {
            eprintln!("{hint}");
        }
    }
    if !watch {
        return Ok(());
    }
    let mut last = objects;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(WATCH_POLL) => {}
        }
        let now = read().await?;
        if now != last {
            // Only the rows that changed or are new, as kubectl does.
            let changed: Vec<Value> = now.iter().filter(|o| !last.contains(o)).cloned().collect();
            let gone: Vec<&Value> = last
                .iter()
                .filter(|o| !now.iter().any(|n| kind.id_of(n) == kind.id_of(o)))
                .collect();
            if !changed.is_empty() {
                crate::output::set_no_headers(true);
                emit(&render(kind, format, &changed, false));
            }
            for g in gone {
                if !format.is_data() {
                    line(&format!("{} deleted", kind.ref_of(g)));
                }
            }
            last = now;
        }
    }
}

/// `powernode describe KIND NAME`.
pub async fn describe(api_args: &ApiArgs, kind: &str, name: &str) -> anyhow::Result<()> {
    let kind = kinds::kind(kind)?;
    let api = api_args.client()?;
    let obj = kind.resolve(&api, name).await?;
    let related = related(&api, kind, &obj).await?;
    let format = api_args.output;
    if format.is_data() {
        let mut all = json!({ kind.name: obj });
        if let (Value::Object(a), Value::Object(r)) = (&mut all, related.clone()) {
            a.extend(r);
        }
        print_data(format, &all);
        return Ok(());
    }
    if format == Format::Name {
        line(&kind.ref_of(&obj));
        return Ok(());
    }
    let mut out = String::new();
    out.push_str(&key_values(&object_pairs(&obj)));
    let r = &related;
    if let Some(nodes) = r["nodes"].as_array() {
        out.push_str("\nNodes:\n");
        let mut t = Table::new(&["INSTANCE", "ROLE", "STATUS", "VERSION", "NODE-NAME"]);
        for n in nodes {
            t.row(
                ["instance_id", "role", "status", "version", "node_name"]
                    .iter()
                    .map(|f| field(n, f))
                    .collect(),
            );
        }
        out.push_str(&t.render_indented(2, "none"));
    }
    if let Some(v) = r.get("virtual_ip").filter(|v| !v.is_null()) {
        out.push_str(&format!(
            "\nVIP:\n  {} {} ({}), holder {}, generation {}\n",
            field(v, "id"),
            field(v, "vip"),
            field(v, "status"),
            field(v, "holders"),
            field(v, "generation")
        ));
    }
    if let Some(c) = r.get("cluster").filter(|c| !c.is_null()) {
        out.push_str(&format!(
            "\nCluster:\n  {} {} ({})\n",
            field(c, "id"),
            field(c, "name"),
            field(c, "status")
        ));
    }
    if let Some(peers) = r["peers"].as_array() {
        out.push_str("\nPeers:\n");
        let k = kinds::kind("peer")?;
        out.push_str(&k.table(peers, false).render_indented(2, "none"));
    }
    if let Some(insts) = r["instances"].as_array() {
        out.push_str("\nInstances:\n");
        let k = kinds::kind("instance")?;
        out.push_str(&k.table(insts, false).render_indented(2, "none"));
    }
    if let Some(events) = r["events"].as_array() {
        out.push_str("\nEvents:\n");
        let mut t = Table::new(&["TIME", "KIND", "ACTOR"]);
        for e in events {
            t.row(vec![
                field(e, "occurred_at"),
                field(e, "kind"),
                actor(&e["actor"]),
            ]);
        }
        out.push_str(&t.render_indented(2, "none"));
    }
    emit(&out);
    Ok(())
}

fn actor(a: &Value) -> String {
    match a {
        Value::Object(m) => m.values().map(cell).collect::<Vec<_>>().join(":"),
        other => cell(other),
    }
}

/// The scalar fields of `obj` as `Label: value`, lists joined, objects
/// as compact JSON.
fn object_pairs(obj: &Value) -> Vec<(&str, String)> {
    obj.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let shown = match v {
                Value::Object(m) if m.is_empty() => "-".to_string(),
                Value::Object(_) => v.to_string(),
                Value::Array(a) if a.iter().any(Value::is_object) => v.to_string(),
                other => cell(other),
            };
            (k.as_str(), shown)
        })
        .collect()
}

/// What relates to `obj`: a cluster's nodes, VIP and recent events; an
/// instance's peers, cluster and events; a network's peers; a template's
/// instances.
async fn related(api: &Api, kind: &Kind, obj: &Value) -> anyhow::Result<Value> {
    let id = kind.id_of(obj);
    let events = |filter: Value| async move {
        let mut args = json!({ "limit": 10 });
        if let (Value::Object(a), Value::Object(f)) = (&mut args, filter) {
            a.extend(f);
        }
        let data = api.call(ActionName::RecentEvents.as_str(), &args).await?;
        anyhow::Ok(data["events"].clone())
    };
    Ok(match kind.name {
        "cluster" => {
            let nodes = api
                .call(ActionName::ListNodes.as_str(), &json!({ "cluster_id": id }))
                .await?;
            let vip = api
                .call(
                    ActionName::GetVirtualIp.as_str(),
                    &json!({ "cluster_id": id }),
                )
                .await
                .map(|d| d["virtual_ip"].clone())
                .unwrap_or(Value::Null);
            json!({
                "nodes": nodes["nodes"],
                "virtual_ip": vip,
                "events": events(json!({ "cluster": id })).await?,
            })
        }
        "instance" => {
            let peers: Vec<Value> = kinds::kind("peer")?
                .list(api, true)
                .await?
                .into_iter()
                .filter(|p| p["instance_id"] == id.as_str())
                .collect();
            let cluster = match obj["cluster_id"].as_str() {
                Some(c) => api
                    .call(ActionName::GetCluster.as_str(), &json!({ "id": c }))
                    .await
                    .map(|d| d["cluster"].clone())
                    .unwrap_or(Value::Null),
                None => Value::Null,
            };
            json!({
                "peers": peers,
                "cluster": cluster,
                "events": events(json!({ "instance": id })).await?,
            })
        }
        "network" => {
            let peers = api
                .call(ActionName::ListPeers.as_str(), &json!({ "network_id": id }))
                .await?;
            json!({ "peers": peers["peers"] })
        }
        "template" => {
            let instances: Vec<Value> = kinds::kind("instance")?
                .list(api, true)
                .await?
                .into_iter()
                .filter(|i| i["template_id"] == id.as_str())
                .collect();
            json!({ "instances": instances })
        }
        _ => json!({}),
    })
}
