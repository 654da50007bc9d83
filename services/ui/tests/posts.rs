//! Posts: the CSRF token is checked first; the typed-name confirmation and
//! the rejection's reason are checked before anything is sent; refusals
//! show their code; an expired token leads back to the login page.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{fleet, send, Browser};
use powernode_actions::ActionName;
use powernode_ui::Refusal;
use serde_json::json;

#[tokio::test]
async fn a_post_without_or_with_a_wrong_csrf_token_is_refused_before_anything_runs() {
    let fake = fleet();
    let b = Browser::sign_in(fake.clone()).await;
    let before = fake.called().len();
    for form in ["confirm_name=prod-1", "confirm_name=prod-1&csrf=0000"] {
        let res = b.post("/ui/clusters/c-1/decommission", form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
        assert!(res.body.contains("data-code=\"csrf_failed\""));
    }
    for path in ["/ui/approvals/apr-1/approve", "/ui/approvals/apr-1/reject"] {
        let res = b.post(path, "reason=because").await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
    }
    let res = b.post("/ui/logout", "").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(fake.called().len(), before, "{:?}", fake.called());
}

#[tokio::test]
async fn decommission_needs_the_cluster_name_typed_back() {
    let fake = fleet();
    fake.answer(
        ActionName::DecommissionCluster,
        Ok(
            json!({ "cluster": common::cluster("c-1", "prod-1", "decommissioned"),
                   "removed_nodes": 2, "instances_kept": [], "released_virtual_ip_id": "vip-1" }),
        ),
    );
    let b = Browser::sign_in(fake.clone()).await;
    let csrf = b.csrf().await;
    let res = b
        .post(
            "/ui/clusters/c-1/decommission",
            &format!("csrf={csrf}&confirm_name=prod-2"),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains("is not the cluster&#39;s name")
            || res.body.contains("is not the cluster's name")
    );
    assert!(!fake
        .called()
        .contains(&"kubernetes_decommission_cluster".to_string()));

    let res = b
        .post(
            "/ui/clusters/c-1/decommission",
            &format!("csrf={csrf}&confirm_name=prod-1"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(
        res.location(),
        "/ui/fleet?all=1&done=decommissioned&subject=prod-1"
    );
    assert_eq!(
        fake.args_of(ActionName::DecommissionCluster).unwrap(),
        json!({ "cluster_id": "c-1" })
    );
    let page = b.get(res.location()).await;
    assert!(page.body.contains("id=\"flash\""));
}

#[tokio::test]
async fn another_accounts_cluster_is_the_actions_own_not_found() {
    let fake = fleet();
    fake.answer(
        ActionName::GetCluster,
        Err(Refusal::new(404, "not_found", "cluster c-other not found")),
    );
    let b = Browser::sign_in(fake.clone()).await;
    let csrf = b.csrf().await;
    let res = b
        .post(
            "/ui/clusters/c-other/decommission",
            &format!("csrf={csrf}&confirm_name=x"),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.body.contains("data-code=\"not_found\""));
    assert!(!fake
        .called()
        .contains(&"kubernetes_decommission_cluster".to_string()));
}

#[tokio::test]
async fn a_rejection_needs_a_reason() {
    let fake = fleet();
    fake.answer(
        ActionName::Reject,
        Ok(json!({ "approval": common::approval("apr-1", "rejected", "2999-01-01T00:00:00Z") })),
    );
    let b = Browser::sign_in(fake.clone()).await;
    let csrf = b.csrf().await;
    let res = b
        .post(
            "/ui/approvals/apr-1/reject",
            &format!("csrf={csrf}&reason=+++"),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("data-code=\"invalid_arguments\""));
    assert!(res.body.contains("a rejection needs a reason"));
    assert!(!fake.called().contains(&"system_reject".to_string()));

    let res = b
        .post(
            "/ui/approvals/apr-1/reject",
            &format!("csrf={csrf}&reason=not+now"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/ui/approvals?done=rejected&subject=apr-1");
    assert_eq!(
        fake.args_of(ActionName::Reject).unwrap(),
        json!({ "approval_id": "apr-1", "reason": "not now" })
    );
}

#[tokio::test]
async fn approving_leads_to_the_cluster_and_an_expired_approval_shows_the_409() {
    let fake = fleet();
    fake.answer(
        ActionName::Approve,
        Ok(json!({ "approval": common::approval("apr-1", "granted", "2999-01-01T00:00:00Z") })),
    );
    let b = Browser::sign_in(fake.clone()).await;
    let csrf = b.csrf().await;
    let res = b
        .post("/ui/approvals/apr-1/approve", &format!("csrf={csrf}"))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(
        res.location(),
        "/ui/clusters/c-1?done=approved&subject=apr-1#vip"
    );

    fake.answer(
        ActionName::Approve,
        Err(Refusal::new(
            409,
            "conflict",
            "approval apr-1 expired at 2026-01-01T00:00:00Z",
        )),
    );
    let res = b
        .post("/ui/approvals/apr-1/approve", &format!("csrf={csrf}"))
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert!(res.body.contains("data-code=\"conflict\""));
    assert!(res.body.contains("expired at 2026-01-01T00:00:00Z"));
}

#[tokio::test]
async fn an_expired_token_goes_back_to_the_login_page_with_the_reason() {
    let fake = fleet();
    fake.answer(
        ActionName::ListClusters,
        Err(Refusal::new(
            401,
            "token_expired",
            "the token expired at noon",
        )),
    );
    let b = Browser::sign_in(fake).await;
    let res = b.fragment("/ui/fleet?q=a").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let to = res.location().to_string();
    assert!(
        to.starts_with("/ui/login?next=/ui/fleet%3Fq%3Da&reason=token_expired"),
        "{to}"
    );
    let login = send(&b.ui, Request::get(&to).body(Body::empty()).unwrap()).await;
    assert!(
        login.body.contains("data-code=\"token_expired\""),
        "{}",
        login.body
    );
    assert!(login.body.contains("the token expired at noon"));
    assert!(login.body.contains("<form id=\"login\""));
    assert!(login.body.contains("value=\"/ui/fleet?q=a\""));
}

#[tokio::test]
async fn a_post_after_the_session_ended_returns_to_the_page_it_came_from() {
    let fake = fleet();
    let b = Browser::sign_in(fake).await;
    let csrf = b.csrf().await;
    let res = b.post("/ui/logout", &format!("csrf={csrf}")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // The session is gone: a post answers the login page, back to the
    // page the form was on (its Referer), not the post's own URL.
    let res = b
        .post("/ui/approvals/apr-1/approve", &format!("csrf={csrf}"))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/ui/login?next=/ui/approvals%3Fx%3D1");
}

#[tokio::test]
async fn no_session_means_the_login_page_and_a_bad_token_is_refused() {
    let ui = powernode_ui::Ui::new(fleet());
    let res = send(&ui, Request::get("/ui/fleet").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/ui/login?next=/ui/fleet");
    let res = send(
        &ui,
        Request::post("/ui/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("token=pn_bad"))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.body.contains("data-code=\"unauthorized\""));
    assert!(!res.body.contains("pn_bad"));
}
