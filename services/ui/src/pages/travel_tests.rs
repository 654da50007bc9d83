//! The time-travel page over a fake backend.

use crate::backend::{At, Head, Refusal};
use crate::pages::events::testkit::{ctx, fixture, read, Fake};
use axum::extract::Query;
use powernode_actions::ActionName;

fn fake() -> Fake {
    let mut f = Fake {
        head: Some(Head {
            first_seq: 1,
            last_seq: 102,
        }),
        ..Default::default()
    };
    let mut early = fixture("clusters_head.json");
    early["clusters"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["created_seq"] == 18);
    early["clusters"][0]["status"] = "bootstrapping".into();
    f.calls_at.insert((ActionName::ListClusters, 19), Ok(early));
    f.calls
        .insert(ActionName::ListClusters, Ok(fixture("clusters_head.json")));
    f.calls.insert(
        ActionName::ListApprovals,
        Ok(serde_json::json!({"approvals": []})),
    );
    f.diff = Some(Ok(fixture("diff_43_47.json")));
    f
}

fn q(seq: Option<&str>, from: Option<&str>, to: Option<&str>) -> Query<super::TravelQuery> {
    Query(super::TravelQuery {
        seq: seq.map(Into::into),
        from: from.map(Into::into),
        to: to.map(Into::into),
    })
}

#[tokio::test]
async fn without_seq_the_form_and_the_head() {
    let (status, html) = read(super::page(ctx(fake()), q(None, None, None)).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<p id="head" data-seq="102">"#));
    assert!(html.contains(r#"<form id="travel""#));
    assert!(html.contains(r#"<input id="seq" name="seq" type="number" min="0" max="102""#));
    assert!(html.contains(r#"<input id="seq-slider" type="range" min="0" max="102""#));
    assert!(html.contains(r#"<form id="diff""#));
    assert!(!html.contains(r#"id="clusters""#));
}

#[tokio::test]
async fn an_early_seq_shows_the_earlier_fleet() {
    let f = fake();
    let asked = f.asked.clone();
    let (status, html) = read(super::page(ctx(f), q(Some("19"), None, None)).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(r#"id="as-of" role="status" data-seq="19""#)
            || html.contains(r#"data-seq="19""#)
    );
    assert!(
        html.contains(r#"<table class="data" id="clusters">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<tr data-cluster-id="cluster-5b411a2c2a94505599f51912106e7d15" data-status="bootstrapping">"#),
        "{html}"
    );
    assert!(html.contains(r#"<td class="status">"#));
    assert!(
        !html.contains("cluster-1cb96b59f2e959dfbaace31372d5b77f"),
        "created later"
    );
    assert!(html.contains(r#"href="/ui/clusters/cluster-5b411a2c2a94505599f51912106e7d15?at=19""#));
    let asked = asked.lock().unwrap();
    assert!(asked
        .iter()
        .any(|(a, at, args)| *a == ActionName::ListClusters
            && *at == At::Seq(19)
            && args["include_decommissioned"] == true));
}

#[tokio::test]
async fn a_seq_beyond_the_head_is_refused_naming_the_head() {
    let (status, html) = read(super::page(ctx(fake()), q(Some("500"), None, None)).await).await;
    assert_eq!(status, 422);
    assert!(html.contains(r#"data-code="invalid_arguments""#));
    assert!(html.contains("seq 500 is beyond the head 102"), "{html}");
    assert!(!html.contains(r#"id="clusters""#));
    let (status, html) = read(super::page(ctx(fake()), q(Some("x"), None, None)).await).await;
    assert_eq!(status, 422);
    assert!(html.contains("is not a sequence number"));
}

#[tokio::test]
async fn what_changed_lists_each_event_and_its_fields() {
    let (status, html) =
        read(super::page(ctx(fake()), q(None, Some("43"), Some("47"))).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<section id="changes""#));
    for s in 44..=47 {
        assert!(html.contains(&format!(r#"<tr data-seq="{s}">"#)), "{s}");
    }
    assert!(html.contains("system.sdwan.virtual_ip.allocated"));
    assert!(html.contains(
        r#"<li data-path="networks.net-01a24d6ac696756eb22172c19bb75437.config_seq"><code>"#
    ));
    assert!(
        html.contains(r#"<span class="before">41</span> → <span class="after">44</span>"#),
        "{html}"
    );
    // from after to; to beyond the head.
    let (status, html) =
        read(super::page(ctx(fake()), q(None, Some("50"), Some("40"))).await).await;
    assert_eq!(status, 422);
    assert!(html.contains("from 50 comes after to 40"));
    let (status, html) =
        read(super::page(ctx(fake()), q(None, Some("1"), Some("900"))).await).await;
    assert_eq!(status, 422);
    assert!(html.contains("seq 900 is beyond the head 102"));
}

#[tokio::test]
async fn a_backend_without_history_says_so() {
    let f = Fake::default();
    let (status, html) = read(super::page(ctx(f), q(Some("3"), None, None)).await).await;
    assert_eq!(status, 501);
    assert!(html.contains(r#"data-code="not_implemented""#));
    let mut f = fake();
    f.calls.insert(
        ActionName::ListClusters,
        Err(Refusal::new(409, "read_only", "no")),
    );
    let (status, html) = read(super::page(ctx(f), q(Some("3"), None, None)).await).await;
    assert_eq!(status, 409);
    assert!(html.contains(r#"data-code="read_only""#));
}

#[tokio::test]
async fn the_diff_is_read_as_an_object_with_events_too() {
    let mut f = fake();
    f.diff = Some(Ok(serde_json::json!({
        "from": 43,
        "to": 47,
        "events": fixture("diff_43_47.json"),
        "totals": {"records": 4, "changed": 4, "refused": 0},
    })));
    let (status, html) = read(super::page(ctx(f), q(None, Some("43"), Some("47"))).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<tr data-seq="45">"#));
    assert!(html.contains("4 event(s): 4 changed the state, 0 changed nothing, 0 refused."));
    // Neither shape: said, not a panic.
    let mut f = fake();
    f.diff = Some(Ok(serde_json::json!("nope")));
    let (_, html) = read(super::page(ctx(f), q(None, Some("43"), Some("47"))).await).await;
    assert!(html.contains(r#"data-code="bad_answer""#));
}
