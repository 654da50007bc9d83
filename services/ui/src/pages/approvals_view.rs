//! The approvals page's markup: `section#waiting` (one row per approval
//! with its candidates, the expiry countdown and the approve and reject
//! forms) and `section#decided`.

use crate::layout::csrf_field;
use crate::session::{urlencode, Ctx};
use crate::widgets::{self, badge};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use powernode_actions::approvals::{ApprovalView, Candidate};

/// `section#waiting`: the approvals nobody decided yet, oldest first.
pub(crate) fn waiting(ctx: &Ctx, list: &[ApprovalView], now: DateTime<Utc>) -> Markup {
    html! {
        section id="waiting" aria-labelledby="waiting-h" {
            h2 id="waiting-h" { "Waiting (" (list.len()) ")" }
            @if list.is_empty() {
                p.muted id="no-waiting" {
                    "Nothing waits for a decision. A VIP failover asks here when its holder falls silent and the policy wants a human."
                }
            } @else {
                div.scroll {
                    table.data.approvals {
                        thead { tr {
                            th scope="col" { "Approval" }
                            th scope="col" { "Proposal" }
                            th scope="col" { "Candidates" }
                            th scope="col" { "Expires" }
                            th scope="col" { "Decide" }
                        } }
                        tbody {
                            @for a in list { (waiting_row(ctx, a, now)) }
                        }
                    }
                }
            }
        }
    }
}

fn waiting_row(ctx: &Ctx, a: &ApprovalView, now: DateTime<Utc>) -> Markup {
    let reason_id = format!("reason-{}", a.id);
    html! {
        tr id={ "approval-" (a.id) } data-approval-id=(a.id) {
            td {
                span.mono { (a.id) } br;
                span.muted.small { (a.action) " · " } (subject_link(&a.subject))
            }
            td {
                (a.summary)
                @if let (Some(from), Some(to)) = (&a.current_holder, &a.proposed_peer) {
                    br;
                    span.small {
                        span.mono { (from) } " → " span.mono data-field="proposed" { (to) }
                        @if let Some(g) = a.generation { " (replaces generation " (g) ")" }
                    }
                }
            }
            td.candidates { (candidates(&a.candidates)) }
            td.expires data-expires-at=(a.expires_at) {
                span.countdown { (widgets::countdown(&a.expires_at, now)) }
                br;
                time.muted.small datetime=(a.expires_at) { (clock(&a.expires_at)) }
            }
            td.decide {
                div.actions {
                    form.approve method="post" action={ "/ui/approvals/" (urlencode(&a.id)) "/approve" } {
                        (csrf_field(ctx))
                        button.ok type="submit" data-action="approve" { "Approve" }
                    }
                    form.reject method="post" action={ "/ui/approvals/" (urlencode(&a.id)) "/reject" } {
                        (csrf_field(ctx))
                        label for=(reason_id) { "Reason to reject" }
                        textarea id=(reason_id) name="reason" rows="2" required
                            placeholder="why the failover should not happen" {}
                        button.bad type="submit" data-action="reject" { "Reject" }
                    }
                }
            }
        }
    }
}

/// `2026-12-06T23:12:18Z` as `at 23:12:18 UTC` (as it is when unreadable).
fn clock(rfc3339: &str) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => format!("at {}", t.with_timezone(&Utc).format("%H:%M:%S UTC")),
        Err(_) => rfc3339.to_string(),
    }
}

fn candidates(list: &[Candidate]) -> Markup {
    if list.is_empty() {
        return html! { span.muted { "—" } };
    }
    html! {
        ol.candidates {
            @for c in list {
                li data-candidate=(c.peer) {
                    span.mono { (c.instance_id) } " "
                    span.score title="score in [0, 1], higher is better" { (format!("{:.2}", c.score)) }
                    @if !c.reasons.is_empty() {
                        br; span.muted.small.reason { (c.reasons.join("; ")) }
                    }
                }
            }
        }
    }
}

/// `virtual_ip/<id>` as a link to its explanation.
fn subject_link(subject: &str) -> Markup {
    let id = subject.split_once('/').map(|(_, id)| id).unwrap_or(subject);
    html! { a.mono href={ "/ui/explain?id=" (urlencode(id)) } { (subject) } }
}

/// `section#decided`: the decided approvals, newest first.
pub(crate) fn decided(list: &[ApprovalView]) -> Markup {
    html! {
        section id="decided" aria-labelledby="decided-h" {
            h2 id="decided-h" { "Decided" }
            @if list.is_empty() {
                p.muted { "None yet." }
            } @else {
                div.scroll {
                    table.data {
                        thead { tr {
                            th scope="col" { "Approval" }
                            th scope="col" { "Status" }
                            th scope="col" { "Summary" }
                            th scope="col" { "Reason" }
                            th scope="col" { "Requested" }
                            th scope="col" { "Decided" }
                        } }
                        tbody {
                            @for a in list {
                                tr id={ "approval-" (a.id) } data-approval-id=(a.id) {
                                    td { span.mono { (a.id) } br; (subject_link(&a.subject)) }
                                    td.status { (badge(&widgets::word(&a.status))) }
                                    td {
                                        (a.summary)
                                        @if let Some(to) = &a.proposed_peer { br; span.small { "to " span.mono { (to) } } }
                                    }
                                    td.reason { (widgets::or_dash(a.reason.as_deref())) }
                                    td { (widgets::seq_link(a.requested_seq)) }
                                    td { @match a.decided_seq { Some(s) => (widgets::seq_link(s)), None => span.muted { "—" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
