//! `GET /ui/approvals`: the waiting queue (candidates and scores, an
//! expiry countdown, approve and reject) and the decided approvals (see
//! [`super::approvals_view`] for the markup). Approving a VIP failover
//! leads to its cluster's page, where the new holder and generation show
//! up live; rejecting needs a reason (checked here too, not only by the
//! browser: an empty reason is refused and nothing is sent).

use super::approvals_view;
use crate::backend::{At, Refusal};
use crate::layout::{self, Page};
use crate::session::Ctx;
use crate::widgets;
use axum::extract::{Form, Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use powernode_actions::approvals::{ApprovalAnswer, ApprovalStatus, ListApprovalsAnswer};
use powernode_actions::vips::GetVirtualIpAnswer;
use powernode_actions::ActionName;
use serde::Deserialize;
use serde_json::json;

/// The event kinds that change what the approvals page shows.
pub const LIVE: &str =
    "system.approval,system.sdwan.failover,system.sdwan.virtual_ip.promoted,sdwan.vip_holder";

/// How many decided approvals are listed (newest first).
const DECIDED_SHOWN: usize = 50;

/// The approvals page's query.
#[derive(Debug, Default, Deserialize)]
pub struct ApprovalsQuery {
    /// What an action that redirected here did.
    #[serde(default)]
    pub done: Option<String>,
    /// What it did it to.
    #[serde(default)]
    pub subject: Option<String>,
}

/// `GET /ui/approvals`.
pub async fn page(ctx: Ctx, Query(q): Query<ApprovalsQuery>) -> Response {
    let list = match ctx
        .call(ActionName::ListApprovals, json!({ "status": "all" }))
        .await
        .and_then(super::typed::<ListApprovalsAnswer>)
    {
        Ok(l) => l,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let (waiting, mut decided): (Vec<_>, Vec<_>) = list
        .approvals
        .into_iter()
        .partition(|a| a.status == ApprovalStatus::Requested);
    decided.reverse();
    decided.truncate(DECIDED_SHOWN);
    let body = maud::html! {
        (widgets::flash(q.done.as_deref(), q.subject.as_deref()))
        (approvals_view::waiting(&ctx, &waiting, chrono::Utc::now()))
        (approvals_view::decided(&decided))
    };
    layout::page(
        &ctx,
        Page {
            title: "Approvals".to_string(),
            nav: "approvals",
            body,
            live: (ctx.at == At::Head).then(|| LIVE.to_string()),
        },
    )
}

/// The approve and reject forms.
#[derive(Debug, Deserialize)]
pub struct DecideForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// Why (reject needs one).
    #[serde(default)]
    pub reason: String,
}

/// `POST /ui/approvals/{id}/approve`: on success, to the VIP's cluster
/// page (or back to the approvals when the approval is not about a VIP).
pub async fn approve(ctx: Ctx, Path(id): Path<String>, Form(f): Form<DecideForm>) -> Response {
    if let Err(r) = ctx.check_csrf(f.csrf.as_deref()) {
        return layout::refusal(&ctx, &r);
    }
    let reason = Some(f.reason.trim()).filter(|r| !r.is_empty());
    let decided = match ctx
        .call_head(
            ActionName::Approve,
            json!({ "approval_id": id, "reason": reason }),
        )
        .await
        .and_then(super::typed::<ApprovalAnswer>)
    {
        Ok(a) => a.approval,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let done = widgets::done_query("approved", &decided.id);
    if let Some(vip) = &decided.virtual_ip_id {
        if let Ok(v) = ctx
            .call_head(ActionName::GetVirtualIp, json!({ "id": vip }))
            .await
            .and_then(super::typed::<GetVirtualIpAnswer>)
        {
            return Redirect::to(&format!(
                "/ui/clusters/{}?{done}#vip",
                crate::session::urlencode(&v.virtual_ip.cluster_id)
            ))
            .into_response();
        }
    }
    Redirect::to(&format!("/ui/approvals?{done}")).into_response()
}

/// `POST /ui/approvals/{id}/reject`: needs a reason.
pub async fn reject(ctx: Ctx, Path(id): Path<String>, Form(f): Form<DecideForm>) -> Response {
    if let Err(r) = ctx.check_csrf(f.csrf.as_deref()) {
        return layout::refusal(&ctx, &r);
    }
    let reason = f.reason.trim();
    if reason.is_empty() {
        return layout::refusal(
            &ctx,
            &Refusal::new(
                422,
                "invalid_arguments",
                "a rejection needs a reason (say why the failover should not happen); nothing was sent",
            ),
        );
    }
    match ctx
        .call_head(
            ActionName::Reject,
            json!({ "approval_id": id, "reason": reason }),
        )
        .await
        .and_then(super::typed::<ApprovalAnswer>)
    {
        Ok(a) => Redirect::to(&format!(
            "/ui/approvals?{}",
            widgets::done_query("rejected", &a.approval.id)
        ))
        .into_response(),
        Err(r) => layout::refusal(&ctx, &r),
    }
}
