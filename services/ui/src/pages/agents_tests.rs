//! The agents page over a fake backend.

use crate::backend::Refusal;
use crate::pages::events::testkit::{ctx, read, Fake};
use axum::extract::Query;
use powernode_actions::ActionName;
use serde_json::json;

#[tokio::test]
async fn services_and_node_agents() {
    let mut f = Fake::default();
    f.calls.insert(
        ActionName::AgentIntrospect,
        Ok(
            json!({"agent_id": "sdwan", "kind": "service", "replicas": [{
            "service": "sdwan", "replica": "sdwan", "status": "running", "applied_seq": 100,
            "log_head_seq": 102, "lag": 2, "last_error": null, "checkpoint_age_secs": 1.5,
            "uptime_secs": 30.0, "reported_at": "2026-12-06T22:12:55Z", "host": "demo"}]}),
        ),
    );
    f.calls.insert(
        ActionName::ListInstances,
        Err(Refusal::new(403, "forbidden", "no")),
    );
    let (status, html) = read(super::page(ctx(f), Query(Default::default())).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<table class="data" id="agents">"#));
    assert!(html.contains(r#"data-agent="sdwan" data-kind="service" data-status="running""#));
    assert!(html.contains("100 / 102 (2)"));
    assert!(html.contains(r#"data-code="forbidden""#));
}

#[tokio::test]
async fn a_refused_introspection_is_shown_in_its_row() {
    let mut f = Fake::default();
    f.calls
        .insert(ActionName::ListInstances, Ok(json!({"instances": []})));
    let (status, html) = read(super::page(ctx(f), Query(Default::default())).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        html.matches(r#"data-code="not_found""#).count(),
        super::SERVICES.len()
    );
}
