//! The cluster page's `section#vip`: the cluster's virtual IP — holder,
//! generation, silence, the data-path check, what each agent reports
//! holding (a split-brain warning when two hold it at one generation), the
//! failover candidates with their scores (the dry run of
//! `system_sdwan_failover_virtual_ip`, as `powernode vip failover
//! --dry-run` shows them), the pending approval and the last promotion.

use crate::backend::{At, Refusal};
use crate::layout;
use crate::session::{urlencode, Ctx};
use crate::widgets::{self, badge, badge_as, Tone};
use maud::{html, Markup};
use powernode_actions::approvals::{FailoverDryRun, FailoverVirtualIpAnswer};
use powernode_actions::vips::{GetVirtualIpAnswer, VipStatus, VirtualIpView};
use powernode_actions::ActionName;
use serde_json::json;

/// What the VIP section shows.
pub(crate) enum VipState {
    /// The cluster has no virtual IP (its endpoint is the bootstrap
    /// instance's address).
    None,
    /// It could not be read.
    Refused(Refusal),
    /// The VIP, with the scored candidates when they could be had.
    Some(Box<VirtualIpView>, Option<FailoverDryRun>),
}

/// Reads the VIP of `cluster_id` and, at the live head, its scored
/// failover candidates.
pub(crate) async fn load(ctx: &Ctx, cluster_id: &str) -> VipState {
    let vip = match ctx
        .call(
            ActionName::GetVirtualIp,
            json!({ "cluster_id": cluster_id }),
        )
        .await
        .and_then(super::typed::<GetVirtualIpAnswer>)
    {
        Ok(v) => v.virtual_ip,
        Err(r) if r.status == 404 || r.code == "not_found" => return VipState::None,
        Err(r) => return VipState::Refused(r),
    };
    let scores = if ctx.at == At::Head && vip.status == VipStatus::Allocated {
        ctx.call(
            ActionName::FailoverVirtualIp,
            json!({ "virtual_ip_id": vip.id, "dry_run": true }),
        )
        .await
        .ok()
        .and_then(|v| serde_json::from_value::<FailoverVirtualIpAnswer>(v).ok())
        .and_then(|a| match a {
            FailoverVirtualIpAnswer::DryRun(d) => Some(d),
            FailoverVirtualIpAnswer::Forced(_) => None,
        })
    } else {
        None
    };
    VipState::Some(Box::new(vip), scores)
}

/// `section#vip`.
pub(crate) fn section(ctx: &Ctx, state: &VipState) -> Markup {
    html! {
        section.card id="vip" aria-labelledby="vip-h" {
            h2 id="vip-h" { "Virtual IP" }
            @match state {
                VipState::None => p.muted { "This cluster has no virtual IP: its API endpoint is its bootstrap server's address, and there is nothing to fail over." },
                VipState::Refused(r) => (layout::refusal_box(r)),
                VipState::Some(vip, scores) => (details(ctx, vip, scores.as_ref())),
            }
        }
    }
}

fn details(ctx: &Ctx, v: &VirtualIpView, scores: Option<&FailoverDryRun>) -> Markup {
    let status = widgets::word(&v.status);
    html! {
        @if v.split {
            div.error id="split-brain" role="alert" {
                strong { "Split brain: " }
                "two agents report holding " (v.vip) " at the same generation. Fencing should never let this happen; check the holders below."
            }
        }
        dl.kv {
            dt { "Address" } dd.mono data-field="vip" { (v.vip) }
            dt { "Status" } dd data-field="status" { (badge(&status)) }
            dt { "Holder" }
            dd data-field="holder" {
                @if v.holders.is_empty() { span.muted { "none" } }
                @else { span.mono { (v.holders.join(", ")) } }
                " " span.muted.small { "(peer " span.mono data-field="holder-peer" { (v.holder_peer_id) } ")" }
            }
            dt { "Generation" } dd data-field="generation" { (v.generation) }
            dt { "Silence" } dd data-field="silence" { (silence(v)) }
            dt { "Data path" } dd data-field="datapath" { (datapath(v)) }
            dt { "Applied" } dd data-field="applied" { (applied(v)) }
            dt { "Pending approval" }
            dd data-field="pending-approval" {
                @match &v.pending_approval {
                    Some(id) => a href={ "/ui/approvals#approval-" (id) } { (id) " — approve or reject it" },
                    None => span.muted { "none" },
                }
            }
            dt { "Last promotion" }
            dd data-field="last-promotion" {
                @match &v.last_promotion {
                    Some(p) => {
                        "generation " (p.generation) ": "
                        span.mono { (p.from_peer_id.as_deref().unwrap_or("—")) } " → " span.mono { (p.to_peer_id) }
                        " (" (p.reason) ") at " time datetime=(p.at.to_rfc3339()) { (p.at.format("%Y-%m-%d %H:%M:%S UTC")) }
                    }
                    None => span.muted { "none" },
                }
            }
            @if let Some(r) = &v.release_reason {
                dt { "Release reason" } dd { (r) }
            }
            dt { "Why" } dd { a href={ "/ui/explain?id=" (urlencode(&v.id)) } { "Explain this virtual IP" } }
        }
        (candidates(ctx, v, scores))
    }
}

fn silence(v: &VirtualIpView) -> Markup {
    if !v.holder_silent {
        return html! { (badge_as("heard", Tone::Ok)) };
    }
    let why = match v.silence_reason.as_ref().map(widgets::word).as_deref() {
        Some("data_path") => "data path: its VIP does not answer probes",
        _ => "no heartbeat",
    };
    html! {
        (badge_as("silent", Tone::Bad)) " " (why)
        @if let Some(since) = &v.silent_since { " since " time datetime=(since) { (since) } }
    }
}

fn datapath(v: &VirtualIpView) -> Markup {
    match &v.reachable {
        Some(r) if v.reachable_now => html! {
            (badge_as("reachable", Tone::Ok))
            " holder " span.mono { (r.holder_peer_id) } " answered at generation " (r.generation)
            " (probed by " span.mono { (r.probed_by_peer_id) } " at " (r.probed_at) ")"
        },
        Some(r) => html! {
            (badge_as("not yet", Tone::Warn))
            " not reached at generation " (v.generation) " yet (last: " span.mono { (r.holder_peer_id) }
            " at generation " (r.generation) ", " (r.probed_at) ")"
        },
        None => html! {
            span.muted { "not checked yet (no probe through the VIP has reached a holder)" }
        },
    }
}

fn applied(v: &VirtualIpView) -> Markup {
    if v.applied_generations.is_empty() {
        return html! { span.muted { "no agent reports holding it" } };
    }
    html! {
        ul.plain {
            @for (peer, g) in &v.applied_generations {
                li {
                    span.mono { (peer) } " at generation " (g)
                    @if *g < v.generation { " " (badge_as("stale", Tone::Warn)) }
                }
            }
        }
        @if !v.split && v.applied_generations.len() > 1 {
            p.muted.small { "Fenced: only the newest generation serves; the older holder releases when its agent hears the newer one." }
        }
    }
}

fn candidates(ctx: &Ctx, v: &VirtualIpView, scores: Option<&FailoverDryRun>) -> Markup {
    html! {
        h3 id="candidates-h" { "Failover candidates" }
        @if scores.map_or(v.failover_candidates.len(), |s| s.candidates.len()) == 0 {
            p.muted id="no-candidates" { "None: no other server of the cluster can take it over (failover has nowhere to go)." }
        } @else {
            div.scroll {
                table.data id="candidates" aria-labelledby="candidates-h" {
                    thead { tr {
                        th scope="col" { "Instance" }
                        th scope="col" { "Peer" }
                        th scope="col" { "Score" }
                        th scope="col" { "Why" }
                        th scope="col" { "Heard lately" }
                    } }
                    tbody {
                        @match scores {
                            Some(d) => {
                                @for c in &d.candidates {
                                    tr data-candidate=(c.candidate.peer) {
                                        td.mono { (c.candidate.instance_id) }
                                        td.mono { (c.candidate.peer) }
                                        td.score.num { (format!("{:.2}", c.candidate.score)) }
                                        td.reason { (c.candidate.reasons.join("; ")) }
                                        td { @if c.heard_within_threshold { "yes" } @else { (badge_as("no", Tone::Bad)) } }
                                    }
                                }
                            }
                            None => {
                                @for c in &v.failover_candidates {
                                    tr data-candidate=(c.peer_id) {
                                        td.mono { (widgets::or_dash(c.instance_id.as_deref())) }
                                        td.mono { (c.peer_id) }
                                        td.score.num { span.muted { "—" } }
                                        td.reason { span.muted { (if ctx.at == At::Head { "scores unavailable" } else { "scores are computed at the live head only" }) } }
                                        td { span.muted { "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.muted.small { "Scores are a dry run: nothing changes until an operator approves a proposal." }
        }
    }
}
