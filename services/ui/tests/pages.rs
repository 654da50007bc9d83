//! The fleet, cluster and approvals pages render the markup the browser
//! tests and the live script select on, over a fake backend.

mod common;

use axum::http::StatusCode;
use common::{fleet, Browser, Fake};
use powernode_actions::ActionName;
use powernode_ui::{At, Refusal};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn the_fleet_lists_clusters_with_their_columns() {
    let b = Browser::sign_in(fleet()).await;
    let page = b.get("/ui/fleet").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = &page.body;
    assert!(
        html.contains("<main id=\"main\" data-live=\"system.k3s.cluster"),
        "{html}"
    );
    assert!(html.contains("id=\"filter\" name=\"q\""));
    assert!(html.contains("<table class=\"data\" id=\"clusters\">"));
    assert!(html.contains("<tr data-cluster-id=\"c-1\" data-status=\"active\">"));
    assert!(html.contains("<td class=\"name\"><a href=\"/ui/clusters/c-1\">prod-1</a>"));
    assert!(html.contains("<td class=\"status\"><span class=\"badge ok\">active</span>"));
    assert!(html.contains("<td class=\"endpoint mono\">https://[fd00::3]:6443</td>"));
    assert!(html.contains("<td class=\"nodes num\">2</td>"));
    assert!(html.contains("<td class=\"version\">v1.31.4+k3s1</td>"));
    assert!(html.contains("<td class=\"network\">"));
    assert!(html.contains("data-cluster-id=\"c-22\""));
    // A fragment is only <main>.
    let frag = b.fragment("/ui/fleet").await;
    assert!(frag.body.starts_with("<main id=\"main\""), "{}", frag.body);
}

#[tokio::test]
async fn the_fleet_filters_on_the_server() {
    let b = Browser::sign_in(fleet()).await;
    let page = b.get("/ui/fleet?q=EDGE").await;
    assert!(page.body.contains("data-cluster-id=\"c-22\""));
    assert!(!page.body.contains("data-cluster-id=\"c-1\""));
    assert!(page.body.contains("1 of 2 clusters"));
    let page = b.get("/ui/fleet?status=active").await;
    assert!(page.body.contains("data-cluster-id=\"c-1\""));
    assert!(!page.body.contains("data-cluster-id=\"c-22\""));
    let page = b.get("/ui/fleet?q=nothing-like-it").await;
    assert!(page.body.contains("No cluster matches the filter"));
}

#[tokio::test]
async fn decommissioned_clusters_are_asked_for_only_when_wanted() {
    let fake = fleet();
    let b = Browser::sign_in(fake.clone()).await;
    b.get("/ui/fleet").await;
    assert_eq!(
        fake.args_of(ActionName::ListClusters).unwrap(),
        json!({ "include_decommissioned": false })
    );
    b.get("/ui/fleet?all=1").await;
    assert_eq!(
        fake.args_of(ActionName::ListClusters).unwrap(),
        json!({ "include_decommissioned": true })
    );
}

#[tokio::test]
async fn an_empty_fleet_says_what_to_do() {
    let fake = fleet();
    fake.answer(ActionName::ListClusters, Ok(json!({ "clusters": [] })));
    let b = Browser::sign_in(fake).await;
    let page = b.get("/ui/fleet").await;
    assert!(page.body.contains("No clusters yet."));
    assert!(page.body.contains("powernode create cluster"));
}

#[tokio::test]
async fn the_fleet_at_a_past_sequence_is_read_there_and_not_live() {
    let fake = fleet();
    let b = Browser::sign_in(fake.clone()).await;
    let page = b.get("/ui/fleet?at=5").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"as-of\" data-seq=\"5\""));
    assert!(!page.body.contains("data-live="));
    assert!(page.body.contains("href=\"/ui/clusters/c-1?at=5\""));
    let at = fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(a, _, _)| a == "kubernetes_list_clusters")
        .map(|(_, at, _)| *at);
    assert_eq!(at, Some(At::Seq(5)));
}

#[tokio::test]
async fn the_cluster_page_shows_nodes_vip_and_candidates() {
    let b = Browser::sign_in(fleet()).await;
    let page = b.get("/ui/clusters/c-1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("<section id=\"nodes\""));
    assert!(html.contains("<tr data-node-id=\"inst-a\">"));
    assert!(html.contains("<td class=\"role\">control-plane</td>"));
    assert!(html.contains("<td class=\"status\"><span class=\"badge warn\">joining</span>"));
    assert!(html.contains("<section class=\"card\" id=\"vip\""));
    assert!(html.contains("data-field=\"holder\"><span class=\"mono\">inst-a</span>"));
    assert!(html.contains("data-field=\"generation\">3</dd>"));
    assert!(html.contains("data-field=\"silence\"><span class=\"badge bad\">silent</span>"));
    assert!(html.contains("data-field=\"datapath\">"));
    assert!(html.contains("<tr data-candidate=\"peer-b\">"));
    assert!(html.contains("<td class=\"score num\">0.87</td>"));
    assert!(html.contains("<td class=\"reason\">heard 2s ago</td>"));
    assert!(html.contains("href=\"/ui/approvals#approval-apr-1\""));
    assert!(!html.contains("id=\"split-brain\""));
    assert!(html.contains("id=\"kubeconfig\" href=\"/ui/clusters/c-1/kubeconfig\""));
    assert!(html.contains("<form id=\"decommission\""));
    assert!(html.contains("name=\"confirm_name\""));
    assert!(html.contains("data-expect=\"prod-1\""));
}

#[tokio::test]
async fn a_split_vip_warns() {
    let fake = fleet();
    fake.answer(
        ActionName::GetVirtualIp,
        Ok(json!({ "virtual_ip": common::vip(true) })),
    );
    let b = Browser::sign_in(fake).await;
    let page = b.get("/ui/clusters/c-1").await;
    assert!(page.body.contains("id=\"split-brain\" role=\"alert\""));
}

#[tokio::test]
async fn a_cluster_without_vip_says_so_and_an_unknown_one_is_refused() {
    let fake = fleet();
    fake.answer(
        ActionName::GetVirtualIp,
        Err(Refusal::new(404, "not_found", "no virtual IP")),
    );
    let b = Browser::sign_in(fake.clone()).await;
    let page = b.get("/ui/clusters/c-1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("This cluster has no virtual IP"));
    fake.answer(
        ActionName::GetCluster,
        Err(Refusal::new(404, "not_found", "cluster c-9 not found")),
    );
    let page = b.get("/ui/clusters/c-9").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("role=\"alert\" data-code=\"not_found\""));
}

#[tokio::test]
async fn the_kubeconfig_downloads_as_an_attachment() {
    let fake = fleet();
    fake.answer(
        ActionName::GetKubeconfig,
        Ok(json!({ "kubeconfig": "apiVersion: v1\n", "api_endpoint": "https://[fd00::100]:6443" })),
    );
    let b = Browser::sign_in(fake.clone()).await;
    let res = b.get("/ui/clusters/c-1/kubeconfig").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "text/yaml; charset=utf-8");
    assert_eq!(
        res.headers["content-disposition"],
        "attachment; filename=\"prod-1.kubeconfig\""
    );
    assert_eq!(res.body, "apiVersion: v1\n");
    assert!(fake
        .called()
        .contains(&"kubernetes_get_kubeconfig".to_string()));
}

#[tokio::test]
async fn approvals_show_the_waiting_queue_and_the_decided() {
    let b = Browser::sign_in(fleet()).await;
    let page = b.get("/ui/approvals").await;
    let html = &page.body;
    assert!(html.contains("<section id=\"waiting\""));
    assert!(html.contains("<tr id=\"approval-apr-1\" data-approval-id=\"apr-1\">"));
    assert!(html.contains("<td class=\"expires\" data-expires-at=\"2999-01-01T00:00:00Z\">"));
    assert!(html.contains(
        "<form class=\"approve\" method=\"post\" action=\"/ui/approvals/apr-1/approve\">"
    ));
    assert!(html.contains("data-action=\"approve\""));
    assert!(html
        .contains("<form class=\"reject\" method=\"post\" action=\"/ui/approvals/apr-1/reject\">"));
    assert!(html.contains("name=\"reason\" rows=\"2\" required"));
    assert!(html.contains("data-action=\"reject\""));
    assert!(html.contains("0.87"));
    assert!(html.contains("<section id=\"decided\""));
    assert!(html.contains("data-approval-id=\"apr-0\""));
    assert!(html.contains("<td class=\"status\"><span class=\"badge bad\">rejected</span>"));
}

#[tokio::test]
async fn the_offline_dashboard_needs_no_sign_in_and_shows_its_banner() {
    let fake = Arc::new(Fake {
        offline: true,
        ..Default::default()
    });
    fake.answer(ActionName::ListClusters, Ok(json!({ "clusters": [] })));
    let ui = powernode_ui::Ui::new(fake);
    let res = common::send(
        &ui,
        axum::http::Request::get("/ui/fleet")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.contains("id=\"offline\""));
    assert!(res.body.contains("data-offline=\"true\""));
}

#[tokio::test]
async fn the_assets_are_served_from_the_binary() {
    let b = Browser::sign_in(fleet()).await;
    for (name, ty) in [("ui.css", "text/css"), ("ui.js", "text/javascript")] {
        let res = b.get(&format!("/ui/assets/{name}")).await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ty));
        assert!(res.body.len() > 500);
    }
    let js = b.get("/ui/assets/ui.js").await.body;
    assert!(js.contains("new EventSource(\"/ui/stream\")"));
    assert!(js.contains("\"x-pn-fragment\": \"1\""));
    assert!(!js.contains("console.error"));
}

#[tokio::test]
async fn a_vip_whose_dry_run_finds_no_candidate_says_so() {
    let fake = fleet();
    fake.answer(
        ActionName::FailoverVirtualIp,
        Ok(json!({
            "resolved": false, "dry_run": true, "virtual_ip_id": "vip-1",
            "current_holder": "peer-a", "generation": 3, "holder_silent": false,
            "candidates": []
        })),
    );
    let b = Browser::sign_in(fake).await;
    let page = b.get("/ui/clusters/c-1").await;
    assert!(page.body.contains("id=\"no-candidates\""));
    assert!(!page.body.contains("data-candidate="));
}
