//! `powernode skills …`: run a skill (a rolling module upgrade, cluster
//! provisioning), read its plan first with `--dry-run`, follow it to the
//! end, list, get, pause, resume and cancel executions.

mod follow;
mod render;

pub use follow::{follow, get, live_phase, live_phases, Follower};
pub use render::{frame, render_execution, render_list, render_plan, summary, LivePhases};

use crate::confirm::{confirm, Target};
use crate::output::{emit, line, print_json, Ctx};
use crate::ApiArgs;
use anyhow::{bail, Context};
use powernode_actions::skills::{
    ExecuteSkillAnswer, ExecuteSkillArgs, ExecutionAnswer, ExecutionStatus, ListExecutionsAnswer,
    SkillExecution,
};
use powernode_actions::ActionName;
use serde_json::{json, Map, Value};

/// `powernode skills`.
#[derive(Debug, clap::Args)]
pub struct SkillsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SkillsCommand,
}

/// Subcommands of `powernode skills`.
#[derive(Debug, clap::Subcommand)]
pub enum SkillsCommand {
    /// Run a skill (execute_skill) and follow it to the end: a progress
    /// bar per batch and a line per node. Exits non-zero when it is
    /// aborted, saying why. E.g.
    /// `powernode skills run system-rolling-module-upgrade --template tmpl-… --module mod-k3s-server --to v-k3s-1.31.0 --batch-pct 50 --max-failures 1`.
    Run(RunArgs),
    /// The account's executions, oldest first (system_list_skill_executions).
    List {
        /// Only this skill.
        #[arg(long)]
        skill: Option<String>,
        /// Only this status.
        #[arg(long, value_parser = ["running", "paused", "completed", "aborted"])]
        status: Option<String>,
    },
    /// One execution: plan, steps, outcome (system_get_skill_execution).
    Get {
        /// Execution id (`exec-…`).
        execution_id: String,
        /// Follow it until it finishes, as `skills run` does.
        #[arg(long)]
        follow: bool,
    },
    /// Pause an execution: steps under way finish, none starts
    /// (system_pause_skill_execution).
    Pause {
        /// Execution id.
        execution_id: String,
        /// Why (recorded).
        #[arg(long, default_value = "paused by an operator")]
        reason: String,
    },
    /// Resume a paused execution where it was (system_resume_skill_execution).
    Resume {
        /// Execution id.
        execution_id: String,
    },
    /// Cancel an execution: steps under way finish, no further node is
    /// touched, it is aborted (system_cancel_skill_execution). Asks to type
    /// the execution id unless --yes.
    Cancel {
        /// Execution id.
        execution_id: String,
        /// Why (recorded).
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `powernode skills run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The skill: `system-rolling-module-upgrade`, `provision_cluster`.
    pub skill: String,
    /// Input `template_id`: the template whose instances are upgraded.
    #[arg(long, value_name = "TEMPLATE_ID")]
    pub template: Option<String>,
    /// Input `module_id`: `mod-k3s-server` or `mod-k3s-agent`.
    #[arg(long, value_name = "MODULE_ID")]
    pub module: Option<String>,
    /// Input `target_version_id`, e.g. `v-k3s-1.31.0`.
    #[arg(long, value_name = "VERSION_ID")]
    pub to: Option<String>,
    /// Input `batch_pct`: percent of the instances per batch (1-100).
    #[arg(long, value_name = "PCT")]
    pub batch_pct: Option<u32>,
    /// Input `max_consecutive_failures`: failures in a row that stop it.
    #[arg(long, value_name = "N")]
    pub max_failures: Option<u32>,
    /// Any input as `key=value` (repeatable; numbers and booleans are sent
    /// as such, the rest as strings).
    #[arg(long = "input", value_name = "KEY=VALUE")]
    pub input: Vec<String>,
    /// All inputs as one JSON object (the flags above override its keys).
    #[arg(long, value_name = "JSON")]
    pub inputs: Option<String>,
    /// Print the plan (batches, order, VIP moves) and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start it and return at once, printing its id.
    #[arg(long)]
    pub detach: bool,
}

impl RunArgs {
    /// The inputs object: `--inputs`, then each `--input`, then the named
    /// flags.
    pub fn build_inputs(&self) -> anyhow::Result<Map<String, Value>> {
        let mut inputs = match &self.inputs {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text)
                .with_context(|| format!("--inputs is not JSON: {text}"))?
            {
                Value::Object(m) => m,
                other => bail!("--inputs must be a JSON object, not {other}"),
            },
        };
        for kv in &self.input {
            let Some((k, v)) = kv.split_once('=') else {
                bail!("--input {kv:?} is not key=value");
            };
            let k = k.trim();
            if k.is_empty() {
                bail!("--input {kv:?} has no key");
            }
            let value = match serde_json::from_str::<Value>(v) {
                Ok(n @ (Value::Number(_) | Value::Bool(_))) => n,
                _ => Value::String(v.to_string()),
            };
            inputs.insert(k.to_string(), value);
        }
        let named = [
            ("template_id", self.template.clone().map(Value::from)),
            ("module_id", self.module.clone().map(Value::from)),
            ("target_version_id", self.to.clone().map(Value::from)),
            ("batch_pct", self.batch_pct.map(Value::from)),
            (
                "max_consecutive_failures",
                self.max_failures.map(Value::from),
            ),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                inputs.insert(k.to_string(), v);
            }
        }
        Ok(inputs)
    }
}

/// Runs `powernode skills …`.
pub async fn run(api: &ApiArgs, args: SkillsArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    match args.command {
        SkillsCommand::Run(r) => run_skill(&ctx, r).await,
        SkillsCommand::List { skill, status } => {
            let data = ctx
                .api
                .call(
                    ActionName::ListSkillExecutions.as_str(),
                    &json!({ "skill": skill, "status": status }),
                )
                .await?;
            if ctx.json() {
                print_json(&data);
            } else {
                let a: ListExecutionsAnswer = typed(data, ActionName::ListSkillExecutions)?;
                emit(&render_list(&a.executions));
            }
            Ok(())
        }
        SkillsCommand::Get {
            execution_id,
            follow,
        } => {
            if follow {
                let e = self::follow(&ctx, &execution_id, ctx.json()).await?;
                return finish(&ctx, &e);
            }
            let data = ctx
                .api
                .call(
                    ActionName::GetSkillExecution.as_str(),
                    &json!({ "execution_id": execution_id }),
                )
                .await?;
            if ctx.json() {
                print_json(&data);
            } else {
                let a: ExecutionAnswer = typed(data, ActionName::GetSkillExecution)?;
                emit(&render_execution(&a.execution));
            }
            Ok(())
        }
        SkillsCommand::Pause {
            execution_id,
            reason,
        } => {
            let e = about(
                &ctx,
                ActionName::PauseSkillExecution,
                &execution_id,
                Some(&reason),
            )
            .await?;
            said(&ctx, &e, &format!("paused execution {execution_id}: steps under way finish, none starts; resume with `powernode skills resume {execution_id}`"));
            Ok(())
        }
        SkillsCommand::Resume { execution_id } => {
            let e = about(&ctx, ActionName::ResumeSkillExecution, &execution_id, None).await?;
            said(&ctx, &e, &format!("resumed execution {execution_id} where it was; follow it with `powernode skills get {execution_id} --follow`"));
            Ok(())
        }
        SkillsCommand::Cancel {
            execution_id,
            reason,
            yes,
        } => {
            if !yes {
                let e = follow::get(&ctx.api, &execution_id).await?;
                if e.status.is_finished() {
                    bail!(
                        "execution {execution_id} is already {}; nothing to cancel",
                        e.status.as_str()
                    );
                }
                let pending = e
                    .steps
                    .iter()
                    .filter(|s| s.status == powernode_actions::skills::StepStatus::Pending)
                    .count();
                confirm(
                    &Target {
                        verb: "cancel",
                        kind: "execution",
                        id: &execution_id,
                        name: &execution_id,
                        name_label: "id",
                        details: vec![
                            format!("skill:   {}", e.skill.as_str()),
                            format!("status:  {}", e.status.as_str()),
                            format!("scope:   {}", e.scope),
                            format!(
                                "steps:   {} succeeded, {} failed, {pending} not started",
                                e.succeeded, e.failed
                            ),
                            "steps under way finish; the nodes not started yet are not touched"
                                .into(),
                        ],
                    },
                    yes,
                )?;
            }
            let e = about(
                &ctx,
                ActionName::CancelSkillExecution,
                &execution_id,
                Some(&reason),
            )
            .await?;
            said(&ctx, &e, &format!("cancelled execution {execution_id}: steps under way finish, then it is aborted; no further node is touched"));
            Ok(())
        }
    }
}

/// A typed answer, or an error naming the action.
fn typed<T: serde::de::DeserializeOwned>(data: Value, action: ActionName) -> anyhow::Result<T> {
    serde_json::from_value(data).with_context(|| format!("{action} answered something unexpected"))
}

/// Pause, resume or cancel: the execution after.
async fn about(
    ctx: &Ctx,
    action: ActionName,
    id: &str,
    reason: Option<&str>,
) -> anyhow::Result<SkillExecution> {
    let data = ctx
        .api
        .call(
            action.as_str(),
            &json!({ "execution_id": id, "reason": reason }),
        )
        .await?;
    if ctx.json() {
        print_json(&data);
    }
    Ok(typed::<ExecutionAnswer>(data, action)?.execution)
}

/// The text of a pause/resume/cancel, then the execution's summary.
fn said(ctx: &Ctx, e: &SkillExecution, text: &str) {
    if !ctx.json() {
        line(text);
        line(&render::summary(e));
    }
}

/// `skills run`.
async fn run_skill(ctx: &Ctx, r: RunArgs) -> anyhow::Result<()> {
    let args = ExecuteSkillArgs {
        skill: r.skill.clone(),
        inputs: r.build_inputs()?,
        dry_run: r.dry_run,
    };
    let data = ctx
        .api
        .call(
            ActionName::ExecuteSkill.as_str(),
            &serde_json::to_value(&args)?,
        )
        .await?;
    let answer: ExecuteSkillAnswer = typed(data.clone(), ActionName::ExecuteSkill)?;
    let e = answer.execution;
    if r.dry_run {
        if ctx.json() {
            print_json(&data);
        } else {
            emit(&render_plan(&e));
            line("Dry run: nothing was appended. Run the same command without --dry-run to start it.");
        }
        return Ok(());
    }
    if r.detach || e.status.is_finished() {
        if ctx.json() {
            print_json(&data);
        } else {
            line(&format!(
                "started execution {} ({} in {} batch(es)); follow it with `powernode skills get {} --follow`",
                e.id,
                e.steps.len(),
                e.batches.len(),
                e.id
            ));
        }
        if r.detach {
            return Ok(());
        }
        return finish(ctx, &e);
    }
    if !ctx.json() {
        line(&format!(
            "started execution {} ({} in {} batch(es)); Ctrl-C stops following, not the execution",
            e.id,
            e.steps.len(),
            e.batches.len()
        ));
    }
    let e = follow(ctx, &e.id, ctx.json()).await?;
    finish(ctx, &e)
}

/// The end of a followed execution: its JSON (`-o json`) or the final
/// view; an error when it was aborted, saying why.
fn finish(ctx: &Ctx, e: &SkillExecution) -> anyhow::Result<()> {
    if ctx.json() {
        print_json(&json!({ "execution": e }));
    } else {
        line("");
        emit(&frame(e, &LivePhases::new()));
    }
    if e.status == ExecutionStatus::Aborted {
        bail!(
            "execution {} was aborted: {}",
            e.id,
            e.reason.as_deref().unwrap_or("no reason recorded")
        );
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;
    use powernode_actions::skills::StepStatus;

    /// A two-batch rolling upgrade of three workers and the VIP-holding
    /// server last, running, nothing started.
    pub(crate) fn execution() -> SkillExecution {
        let step = |n: u32, batch: u32, name: &str, role: &str, vip: bool| {
            json!({
                "step": n, "batch": batch, "action": "upgrade",
                "instance_id": format!("inst-{name}"), "node_name": name, "role": role,
                "cluster_id": "clu-1", "from_version_id": "v-k3s-1.30.5",
                "to_version_id": "v-k3s-1.31.0",
                "vip_moves": if vip { json!([{"virtual_ip_id": "vip-1", "vip": "10.99.0.1"}]) } else { json!([]) },
                "status": "pending", "started_at": null, "finished_at": null, "reason": null,
                "rolled_back": null, "phases": []
            })
        };
        serde_json::from_value(json!({
            "id": "exec-1", "skill": "system-rolling-module-upgrade", "status": "running",
            "scope": "template/tmpl-1",
            "inputs": {"template_id": "tmpl-1", "module_id": "mod-k3s-server",
                       "target_version_id": "v-k3s-1.31.0", "batch_pct": 50, "max_consecutive_failures": 1},
            "max_consecutive_failures": 1,
            "batches": [[0, 1], [2, 3]],
            "steps": [step(0, 0, "w-0", "k3s-agent", false), step(1, 0, "w-1", "k3s-agent", false),
                      step(2, 1, "s-0", "k3s-server", false), step(3, 1, "s-1", "k3s-server", true)],
            "consecutive_failures": 0, "succeeded": 0, "failed": 0,
            "started_at": "2026-12-06T16:00:00Z", "finished_at": null, "reason": null,
            "cluster_id": null, "last_seq": 40
        }))
        .unwrap()
    }

    pub(crate) fn set(e: &mut SkillExecution, step: u32, status: StepStatus) {
        e.steps[step as usize].status = status;
    }

    #[test]
    fn the_plan_names_batches_order_and_vip_moves() {
        let mut e = execution();
        e.status = ExecutionStatus::Planned;
        let text = render_plan(&e);
        assert!(text.starts_with("Plan of system-rolling-module-upgrade (mod-k3s-server → v-k3s-1.31.0 on template/tmpl-1, batch_pct 50"), "{text}");
        assert!(text.contains("4 nodes in 2 batch(es)"), "{text}");
        let b1 = text.find("batch 1/2 (2 nodes)").unwrap();
        let b2 = text.find("batch 2/2 (2 nodes)").unwrap();
        let w0 = text.find("w-0").unwrap();
        let s1 = text.find("  3     s-1").unwrap();
        assert!(b1 < w0 && w0 < b2 && b2 < s1, "{text}");
        assert!(text.contains("vip-1 (10.99.0.1) moves first"), "{text}");
        assert!(text.contains("v-k3s-1.30.5 → v-k3s-1.31.0"), "{text}");
        assert!(text.contains("1 VIP move(s)"), "{text}");
    }

    #[test]
    fn a_failed_step_says_why_and_whether_it_is_back_in_service() {
        let mut e = execution();
        set(&mut e, 0, StepStatus::Failed);
        e.steps[0].reason = Some("upgrade: injected failure".into());
        e.steps[0].rolled_back = Some(true);
        set(&mut e, 1, StepStatus::Skipped);
        e.status = ExecutionStatus::Aborted;
        e.reason = Some("max_consecutive_failures: 1 failure in a row (w-0)".into());
        let text = frame(&e, &LivePhases::new());
        assert!(text.contains("✗ w-0 (inst-w-0, k3s-agent)  FAILED: upgrade: injected failure; back in service on v-k3s-1.30.5"), "{text}");
        assert!(text.contains("- w-1"), "{text}");
        assert!(
            text.contains("batch 1/2 [████████████████████████] 2/2 done"),
            "{text}"
        );
        assert!(
            text.contains("batch 2/2 [░░░░░░░░░░░░░░░░░░░░░░░░] 0/2 done"),
            "{text}"
        );
        assert!(text.lines().next().unwrap().contains("aborted"), "{text}");
        let full = render_execution(&e);
        assert!(
            full.contains("max_consecutive_failures: 1 failure in a row"),
            "{full}"
        );
        let list = render_list(&[e]);
        assert!(list.lines().nth(1).unwrap().starts_with("exec-1"), "{list}");
    }

    #[test]
    fn inputs_come_from_json_then_pairs_then_flags() {
        let cli = crate::Cli::try_parse_from([
            "powernode",
            "skills",
            "run",
            "system-rolling-module-upgrade",
            "--inputs",
            r#"{"template_id":"tmpl-a","batch_pct":10}"#,
            "--input",
            "batch_pct=30",
            "--input",
            "module_id=mod-k3s-agent",
            "--to",
            "v-k3s-agent-1.31.0",
            "--template",
            "tmpl-b",
            "--max-failures",
            "2",
        ])
        .unwrap();
        let crate::Command::Skills(SkillsArgs {
            command: SkillsCommand::Run(r),
            ..
        }) = cli.command
        else {
            panic!("not skills run");
        };
        let inputs = Value::Object(r.build_inputs().unwrap());
        assert_eq!(
            inputs,
            json!({"template_id": "tmpl-b", "batch_pct": 30, "module_id": "mod-k3s-agent",
                   "target_version_id": "v-k3s-agent-1.31.0", "max_consecutive_failures": 2})
        );
        let bad = RunArgs {
            input: vec!["novalue".into()],
            ..r
        };
        assert!(bad
            .build_inputs()
            .unwrap_err()
            .to_string()
            .contains("key=value"));
        let bad = RunArgs {
            input: vec![],
            inputs: Some("[1]".into()),
            ..bad
        };
        assert!(bad
            .build_inputs()
            .unwrap_err()
            .to_string()
            .contains("JSON object"));
    }
}
