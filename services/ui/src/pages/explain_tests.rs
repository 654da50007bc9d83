//! The explain page over a fake backend.

use crate::pages::events::testkit::{ctx, fixture, read, Fake};
use axum::extract::Query;

fn fake() -> Fake {
    let mut f = Fake::default();
    f.explain.insert(
        "vip-5b411a2c2a94505599f51912106e7d15".into(),
        fixture("explain_vip_failover.json"),
    );
    f
}

fn q(id: &str) -> Query<super::ExplainQuery> {
    Query(super::ExplainQuery {
        id: Some(id.into()),
    })
}

#[tokio::test]
async fn a_vip_after_a_failover_names_the_approval() {
    let (status, html) =
        read(super::page(ctx(fake()), q(" vip-5b411a2c2a94505599f51912106e7d15 ")).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<form id="explain""#));
    assert!(html.contains(r#"<svg id="graph""#));
    assert!(html.contains(
        r#"<g class="node why highlight approval" data-seq="112" data-kind="system.approval.granted">"#
    ));
    assert!(html.contains(r#"data-kind="system.approval.requested""#));
    assert!(html.contains(r#"data-kind="system.sdwan.failover.proposed""#));
    assert!(html.contains(r#"<path class="edge" data-from="112" data-to="113""#));
    // The why sentence, with links to its events.
    let why = &html[html.find(r#"<p id="why">"#).unwrap()..];
    let why = &why[..why.find("</p>").unwrap()];
    assert!(
        why.contains("holds VIP fd2f:bca5:c7c1:1::100 at generation 2"),
        "{why}"
    );
    assert!(
        why.contains(r#"<a href="/ui/events/112">"#) && why.contains("system.approval.granted")
    );
    assert!(html.contains("(via appr-7f3a9c)"));
}

#[tokio::test]
async fn an_unknown_id_is_a_404_refusal_and_nothing_else() {
    let (status, html) = read(super::page(ctx(fake()), q("vip-nope")).await).await;
    assert_eq!(status, 404);
    assert!(
        html.contains(r#"role="alert" data-code="not_found""#),
        "{html}"
    );
    assert!(!html.contains("<svg"));
    assert!(!html.contains(r#"id="why""#));
}

#[tokio::test]
async fn without_an_id_the_form_only() {
    let (status, html) = read(super::page(ctx(fake()), Query(Default::default())).await).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"<input id="explain-id" name="id""#));
    assert!(html.contains(r#"<label for="explain-id">"#));
    assert!(!html.contains("<svg"));
}
