//! The skills pages over a fake backend.

use crate::pages::events::testkit::{ctx, fixture, read, Fake};
use axum::extract::Path;
use powernode_actions::ActionName;

fn fake() -> Fake {
    let mut f = Fake::default();
    let list = fixture("skill_executions.json");
    let one = serde_json::json!({ "execution": list["executions"][0].clone() });
    f.calls.insert(ActionName::ListSkillExecutions, Ok(list));
    f.calls.insert(ActionName::GetSkillExecution, Ok(one));
    f
}

#[tokio::test]
async fn executions_with_progress_and_live() {
    let (status, html) = read(super::page(ctx(fake())).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"data-live="system.skill.""#));
    assert!(html.contains(r#"<table class="data" id="executions">"#));
    assert!(html.contains(
        r#"<tr data-execution-id="exec-ccf997c0db8a5d3fa03662014fcfa017" data-status="running">"#
    ));
    assert!(html.contains(r#"<progress value="1" max="2""#), "{html}");
    assert!(html.contains("system-rolling-module-upgrade"));
}

#[tokio::test]
async fn one_execution_step_by_step() {
    let f = fake();
    let asked = f.asked.clone();
    let (status, html) =
        read(super::one(ctx(f), Path("exec-ccf997c0db8a5d3fa03662014fcfa017".into())).await).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"<tr data-step="1" data-status="succeeded">"#));
    assert!(html.contains("cordon, drain, upgrade"));
    assert_eq!(
        asked.lock().unwrap()[0].2["execution_id"],
        "exec-ccf997c0db8a5d3fa03662014fcfa017"
    );
}

#[tokio::test]
async fn an_unknown_execution_is_refused() {
    let mut f = fake();
    f.calls.remove(&ActionName::GetSkillExecution);
    let (status, html) = read(super::one(ctx(f), Path("exec-nope".into())).await).await;
    assert_eq!(status, 404);
    assert!(html.contains(r#"data-code="not_found""#));
}
