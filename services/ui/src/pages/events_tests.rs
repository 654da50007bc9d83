//! The events pages over a fake backend with the real JSON shapes.

use super::testkit::{ctx, fixture, read, Fake};
use crate::backend::{Head, Refusal};
use axum::extract::{Path, Query};
use powernode_actions::ActionName;

fn fake() -> Fake {
    let mut f = Fake::default();
    let recent = fixture("recent_events.json");
    for e in recent["events"].as_array().unwrap() {
        f.events.insert(e["seq"].as_u64().unwrap(), e.clone());
    }
    f.calls.insert(ActionName::RecentEvents, Ok(recent));
    f.explain.insert(
        "vip-5b411a2c2a94505599f51912106e7d15".into(),
        fixture("explain_vip.json"),
    );
    f.head = Some(Head {
        first_seq: 1,
        last_seq: 102,
    });
    f
}

#[tokio::test]
async fn the_tail_lists_newest_first_with_the_stream_after_the_newest() {
    let f = fake();
    let asked = f.asked.clone();
    let q = super::Filters {
        kind_prefix: Some(" system.sdwan. ".into()),
        cluster: Some("".into()),
        ..Default::default()
    };
    let (status, html) = read(super::page(ctx(f), Query(q)).await).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<table class="data" id="events""#),
        "{html}"
    );
    let first = html.find(r#"data-seq="100""#).unwrap();
    let older = html.find(r#"data-seq="17""#).unwrap();
    assert!(first < older, "newest first");
    assert!(html.contains(r#"data-stream-after="102""#));
    assert!(
        html.contains(r#"data-stream="/ui/stream?kind_prefix=system.sdwan.&amp;after=102""#),
        "{html}"
    );
    assert!(html.contains(
        r#"<td class="kind"><a href="/ui/events/17">system.sdwan.virtual_ip.allocated</a>"#
    ));
    assert!(html.contains("events.js"));
    assert!(html.contains(
        r#"<p id="pause-wrap" hidden><button id="pause" type="button" aria-pressed="false">Pause</button>"#
    ));
    assert!(!html.contains("data-live"), "events.js does the live part");
    // Event text is escaped.
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("&lt;script&gt;alert(1)"));
    // The filters went to recent_events, blank ones dropped.
    let asked = asked.lock().unwrap();
    let (_, _, args) = asked.last().unwrap();
    assert_eq!(args["kind_prefix"], "system.sdwan.");
    assert!(args["cluster"].is_null());
    assert_eq!(args["limit"], 100);
}

#[tokio::test]
async fn a_correlation_lists_its_flow_and_is_not_live() {
    let q = super::Filters {
        correlation: Some("01a24d6a-c6cc-7406-824c-c3b39ff39500".into()),
        ..Default::default()
    };
    let (status, html) = read(super::page(ctx(fake()), Query(q)).await).await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"data-seq="97""#));
    assert!(!html.contains("data-stream"));
    let q = super::Filters {
        correlation: Some("nope".into()),
        ..Default::default()
    };
    let (_, html) = read(super::page(ctx(fake()), Query(q)).await).await;
    assert!(html.contains("No events match."));
}

#[tokio::test]
async fn a_refused_tail_shows_the_refusal_with_its_status() {
    let mut f = Fake::default();
    f.calls.insert(
        ActionName::RecentEvents,
        Err(Refusal::new(422, "invalid_arguments", "bad prefix")),
    );
    let (status, html) = read(super::page(ctx(f), Query(Default::default())).await).await;
    assert_eq!(status, 422);
    assert!(html.contains(r#"data-code="invalid_arguments""#));
    assert!(html.contains(r#"id="event-filters""#));
}

#[tokio::test]
async fn an_expired_token_goes_back_to_login() {
    let mut f = Fake::default();
    f.calls.insert(
        ActionName::RecentEvents,
        Err(Refusal::new(401, "token_expired", "expired")),
    );
    let res = super::page(ctx(f), Query(Default::default())).await;
    assert_eq!(res.status().as_u16(), 303);
    let to = res.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/ui/login?next="), "{to}");
}

#[tokio::test]
async fn the_envelope_links_cause_correlation_and_explain() {
    let (status, html) = read(super::one(ctx(fake()), Path("97".into())).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<section id="envelope""#));
    assert!(
        html.contains(r#"data-field="actor"><code>service:skills</code>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<a class="causation" href="/ui/events/96">"#),
        "{html}"
    );
    assert!(html.contains(r#"<a class="correlation" href="/ui/events?correlation=01a24d6a-c6cc-7406-824c-c3b39ff39500">"#));
    assert!(html.contains(r#"href="/ui/explain?id=vip-5b411a2c2a94505599f51912106e7d15""#));
    assert!(html.contains(r#"<a class="caused" href="/ui/events/98">"#));
    assert!(html.contains(r#"<pre id="payload""#));
    assert!(
        html.contains(
            "&quot;virtual_ip_id&quot;: &quot;vip-5b411a2c2a94505599f51912106e7d15&quot;"
        ),
        "{html}"
    );
}

#[tokio::test]
async fn the_payload_is_escaped() {
    let (_, html) = read(super::one(ctx(fake()), Path("100".into())).await).await;
    assert!(!html.contains("</pre><b>x</b>"));
    assert!(html.contains("&lt;/pre&gt;&lt;b&gt;x&lt;/b&gt;"));
    // No explanation lists it: the causation (none) reads as the start.
    assert!(html.contains("it starts its flow"));
}

#[tokio::test]
async fn a_bad_or_too_late_seq_is_refused_clearly() {
    let (status, html) = read(super::one(ctx(fake()), Path("abc".into())).await).await;
    assert_eq!(status, 422);
    assert!(html.contains(r#"data-code="invalid_arguments""#));
    assert!(html.contains("is not a sequence number"));
    let (status, html) = read(super::one(ctx(fake()), Path("5000".into())).await).await;
    assert_eq!(status, 404);
    assert!(html.contains(r#"data-code="not_found""#));
    assert!(html.contains("seq 5000 is beyond the head 102"), "{html}");
}
