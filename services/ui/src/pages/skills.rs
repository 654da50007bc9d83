//! `GET /ui/skills`: skill executions with their progress; `GET
//! /ui/skills/{id}`: one execution, step by step. Both are live on
//! `system.skill.` events (the layout's script re-fetches `<main>`).

use super::events::{typed, wire};
use crate::backend::At;
use crate::layout::{self, Page};
use crate::session::{urlencode, Ctx};
use axum::extract::Path;
use axum::response::Response;
use maud::{html, Markup};
use powernode_actions::skills::{ExecutionAnswer, ListExecutionsAnswer, SkillExecution};
use powernode_actions::ActionName;
use serde_json::json;

/// The kind prefix that makes these pages re-fetch.
pub const LIVE: &str = "system.skill.";

fn live(ctx: &Ctx) -> Option<String> {
    matches!(ctx.at, At::Head).then(|| LIVE.to_string())
}

/// Steps done (succeeded, failed or skipped) and steps in all.
pub fn progress(e: &SkillExecution) -> (usize, usize) {
    let done = e
        .steps
        .iter()
        .filter(|s| !matches!(wire(&s.status).as_str(), "pending" | "running"))
        .count();
    (done, e.steps.len())
}

/// `<progress>` with its numbers as text.
fn progress_bar(e: &SkillExecution) -> Markup {
    let (done, all) = progress(e);
    let label = format!("{done} of {all} steps done");
    html! {
        progress value=(done) max=(all.max(1)) aria-label=(label) { (label) }
        " " span.small { (done) "/" (all) }
        @if e.failed > 0 { " " span.bad.small { (e.failed) " failed" } }
    }
}

/// What an execution is about: its cluster, else its scope.
fn target(e: &SkillExecution) -> Markup {
    html! {
        @match &e.cluster_id {
            Some(c) => a href={ "/ui/clusters/" (urlencode(c)) } { (c) },
            None => code { (e.scope) },
        }
    }
}

/// `GET /ui/skills`.
pub async fn page(ctx: Ctx) -> Response {
    let answer = ctx
        .call(ActionName::ListSkillExecutions, json!({}))
        .await
        .and_then(|v| typed::<ListExecutionsAnswer>("system_list_skill_executions", v));
    let body = match answer {
        Ok(a) => executions_table(&a),
        Err(r) if r.needs_login() => return layout::refusal(&ctx, &r),
        Err(r) => return layout::refusal(&ctx, &r),
    };
    layout::page(
        &ctx,
        Page {
            title: "Skills".into(),
            nav: "skills",
            body,
            live: live(&ctx),
        },
    )
}

/// `table#executions`, newest first.
pub fn executions_table(a: &ListExecutionsAnswer) -> Markup {
    html! {
        div.scroll {
            table.data #executions {
                caption.sr-only { "Skill executions, newest first" }
                thead { tr {
                    th scope="col" { "Execution" } th scope="col" { "Skill" } th scope="col" { "Status" }
                    th scope="col" { "Target" } th scope="col" { "Progress" } th scope="col" { "Started" }
                    th scope="col" { "Finished" }
                } }
                tbody {
                    @for e in a.executions.iter().rev() {
                        tr data-execution-id=(e.id) data-status=(wire(&e.status)) {
                            td.id { a href={ "/ui/skills/" (urlencode(&e.id)) } { (e.id) } }
                            td.skill { (wire(&e.skill)) }
                            td.status { (wire(&e.status)) }
                            td.target { (target(e)) }
                            td.progress { (progress_bar(e)) }
                            td { (e.started_at.as_deref().unwrap_or("—")) }
                            td { (e.finished_at.as_deref().unwrap_or("—")) }
                        }
                    }
                    @if a.executions.is_empty() {
                        tr.empty { td colspan="7" { "No skill executions yet." } }
                    }
                }
            }
        }
    }
}

/// `GET /ui/skills/{id}`.
pub async fn one(ctx: Ctx, Path(id): Path<String>) -> Response {
    let answer = ctx
        .call(ActionName::GetSkillExecution, json!({ "execution_id": id }))
        .await
        .and_then(|v| typed::<ExecutionAnswer>("system_get_skill_execution", v));
    let e = match answer {
        Ok(a) => a.execution,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    layout::page(
        &ctx,
        Page {
            title: format!("Skill execution {}", e.id),
            nav: "skills",
            body: execution(&e),
            live: live(&ctx),
        },
    )
}

/// One execution: summary and steps.
pub fn execution(e: &SkillExecution) -> Markup {
    html! {
        section #execution data-execution-id=(e.id) aria-labelledby="exec-h" {
            h2 #exec-h { (wire(&e.skill)) }
            dl.kv {
                dt { "Status" } dd data-field="status" { (wire(&e.status)) }
                dt { "Target" } dd data-field="target" { (target(e)) }
                dt { "Progress" } dd data-field="progress" { (progress_bar(e)) }
                dt { "Succeeded / failed" } dd { (e.succeeded) " / " (e.failed)
                    " (stops after " (e.max_consecutive_failures) " consecutive failure(s))" }
                dt { "Started" } dd { (e.started_at.as_deref().unwrap_or("—")) }
                dt { "Finished" } dd { (e.finished_at.as_deref().unwrap_or("—")) }
                @if let Some(r) = &e.reason { dt { "Reason" } dd data-field="reason" { (r) } }
                dt { "Inputs" } dd { code { (e.inputs.to_string()) } }
                dt { "Log" } dd { "Through " a href={ "/ui/events/" (e.last_seq) } { "seq " (e.last_seq) }
                    " · " a href={ "/ui/events?kind_prefix=system.skill." } { "skill events" } }
            }
        }
        section #steps aria-labelledby="steps-h" {
            h2 #steps-h { "Steps" }
            div.scroll {
                table.data #execution-steps {
                    caption.sr-only { "Steps in order" }
                    thead { tr {
                        th scope="col" { "Step" } th scope="col" { "Batch" } th scope="col" { "Action" }
                        th scope="col" { "Node" } th scope="col" { "Version" } th scope="col" { "Status" }
                        th scope="col" { "Phases" } th scope="col" { "Reason" }
                    } }
                    tbody {
                        @for s in &e.steps {
                            tr data-step=(s.step) data-status=(wire(&s.status)) {
                                td { (s.step) } td { (s.batch) } td { (wire(&s.action)) }
                                td { (s.node_name) " " span.muted.small { "(" (s.role) ", " (s.instance_id) ")" } }
                                td { (s.from_version_id.as_deref().unwrap_or("—")) " → " (s.to_version_id.as_deref().unwrap_or("—")) }
                                td.status { (wire(&s.status)) @if s.rolled_back == Some(true) { " (rolled back)" } }
                                td { @for (i, p) in s.phases.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    (wire(&p.phase)) @if !p.ok { " ✗" }
                                } }
                                td { (s.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "skills_tests.rs"]
mod tests;
