//! `kubernetes_list_clusters` at many clusters: the runbook's lifecycle
//! ([`workload`], 5 nodes a cluster) folded into the API's projection for
//! the measured account, then a first page, a page from a token and the
//! whole list, next to the cheapest action over the same HTTP.

use super::{measure_action, percentiles, ratio, workload};
use anyhow::Context;
use powernode_actions::ActionName;
use powernode_client::Api;
use powernode_events::AccountId;
use powernode_projections::{FleetState, Projection};
use serde_json::{json, Value};
use std::time::Instant;

/// Clusters a page holds in the paginated cases.
const PAGE: usize = 100;

/// Folds `n` whole cluster lifecycles of `account` into `fleet` (after
/// what it holds); answers how many clusters the account then has.
pub(super) fn fold(fleet: &mut FleetState, account: &AccountId, n: usize) -> usize {
    let per_cluster = workload::build(1_000, 1)[0].events.len();
    let mut seq = fleet.last_seq();
    for stream in workload::build(n * per_cluster, 1).into_iter().take(n) {
        for event in stream.events {
            let mut event = event;
            event.account_id = account.clone();
            seq += 1;
            fleet.apply(seq, &event);
        }
    }
    fleet.clusters(account, true).len()
}

/// The cases, each with p50 / p99 / max.
pub(super) async fn measure(api: &Api, queries: usize) -> anyhow::Result<Value> {
    let list = ActionName::ListClusters;
    let first_page = json!({"limit": PAGE});
    let page = api.call(list.as_str(), &first_page).await?;
    let token = page["next_page_token"]
        .as_str()
        .context("a first page of a big list names the next")?;
    // A page from the middle: follow tokens half-way.
    let mut mid_token = token.to_string();
    let total = api.call(list.as_str(), &json!({})).await?["clusters"]
        .as_array()
        .map_or(0, Vec::len);
    for _ in 1..(total / PAGE / 2) {
        let next = api
            .call(
                list.as_str(),
                &json!({"limit": PAGE, "page_token": mid_token}),
            )
            .await?;
        match next["next_page_token"].as_str() {
            Some(t) => mid_token = t.to_string(),
            None => break,
        }
    }
    let floor = measure_action(api, ActionName::Whoami, "permissions", &json!({}), queries).await?;
    let mut out = serde_json::Map::new();
    for (name, args) in [
        ("first_page", first_page),
        ("mid_page", json!({"limit": PAGE, "page_token": mid_token})),
        ("whole_list", json!({})),
    ] {
        let mut case = measure_action(api, list, "clusters", &args, queries).await?;
        case["ratio_whoami_to_this_p99"] = ratio(&floor, &case);
        out.insert(name.to_string(), case);
    }
    out.insert("whoami_over_the_same_http".into(), floor);
    Ok(Value::Object(out))
}

/// Where a page's time goes inside the API, measured on the projection
/// itself: the account's clusters collected and sorted by creation (what
/// every page pays), and a page's views (node counts) serialized.
pub(super) fn breakdown(fleet: &FleetState, account: &AccountId, runs: usize) -> Value {
    let mut sort = Vec::with_capacity(runs);
    let mut page = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let all = fleet.clusters(account, false);
        sort.push(start.elapsed());
        let start = Instant::now();
        let views: Vec<Value> = all
            .iter()
            .take(PAGE)
            .map(|c| json!({"cluster": c, "node_count": fleet.node_count(account, &c.id)}))
            .collect();
        let text = serde_json::to_vec(&views).unwrap_or_default();
        page.push(start.elapsed());
        std::hint::black_box(text);
    }
    json!({
        "collect_and_sort_all": percentiles(json!({}), sort),
        "one_page_views_serialized": percentiles(json!({"clusters": PAGE}), page),
    })
}
