//! The tour's day-2 steps: the module catalog (the tour's assignments pin
//! k3s 1.30.5), then a new release, the rolling upgrade of prod's server
//! template read as a plan first and then run with its progress, and what
//! the platform's services and the upgraded node's agent say about
//! themselves (`agent_introspect`).

use super::flow::Tour;
use super::narrator::say_block;
use crate::modules::render_modules;
use crate::output::field;
use crate::skills::{get, live_phases, render_plan, Follower, LivePhases};
use anyhow::{bail, Context};
use powernode_actions::modules::ListModulesAnswer;
use powernode_actions::skills::{ExecuteSkillAnswer, ExecutionStatus};
use powernode_actions::ActionName;
use powernode_events::payloads::k3s::K3sModule;
use serde_json::json;

/// The release the tour's nodes are installed with (pinned).
pub(super) const FROM: (&str, &str) = ("1.30.5", "v1.30.5+k3s1");
/// The release the tour upgrades prod's server to.
const TO: (&str, &str) = ("1.31.0", "v1.31.0+k3s1");
/// The skill.
const SKILL: &str = "system-rolling-module-upgrade";

/// `text` with every line indented by four spaces.
fn indented(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

impl Tour {
    /// Setup: k3s 1.30.5 in the catalog for both modules; the tour's
    /// assignments pin it from here on.
    pub(super) async fn catalog(&mut self) -> anyhow::Result<()> {
        self.n.step(
            "Day-2 · module catalog",
            &format!(
                "k3s {} for k3s-server and k3s-agent ({}); the tour's assignments pin it",
                FROM.0,
                ActionName::CreateModuleVersion
            ),
        );
        for module in [K3sModule::K3sServer, K3sModule::K3sAgent] {
            self.add_version(module, FROM).await?;
        }
        self.pinned = true;
        self.n.events().await?;
        Ok(())
    }

    async fn add_version(
        &mut self,
        module: K3sModule,
        (version, k3s): (&str, &str),
    ) -> anyhow::Result<()> {
        let v = self
            .n
            .call(
                ActionName::CreateModuleVersion.as_str(),
                json!({ "module_name": module.as_str(), "version": version, "k3s_version": k3s }),
            )
            .await?;
        let v = &v["module_version"];
        self.n.info(&format!(
            "{} {}: version {}, installs k3s {}",
            field(v, "module_id"),
            field(v, "id"),
            field(v, "version"),
            field(v, "k3s_version")
        ));
        Ok(())
    }

    /// The pin an assignment of `module` carries (none before the catalog step).
    pub(super) fn pin(&self, module: &str) -> Option<String> {
        let module = match module {
            "k3s-server" => K3sModule::K3sServer,
            "k3s-agent" => K3sModule::K3sAgent,
            _ => return None,
        };
        self.pinned.then(|| module.version_id(FROM.0))
    }

    /// Day-2: 1.31.0 arrives; prod's server template is upgraded to it,
    /// dry run first; then `agent_introspect`.
    pub(super) async fn upgrade(&mut self, prod: &str) -> anyhow::Result<()> {
        self.n.step(
            "Day-2 · a new release",
            &format!(
                "k3s {} joins the catalog; `powernode modules list` shows who is behind",
                TO.0
            ),
        );
        self.add_version(K3sModule::K3sServer, TO).await?;
        self.add_version(K3sModule::K3sAgent, TO).await?;
        let modules = self
            .n
            .call(ActionName::ListModules.as_str(), json!({}))
            .await?;
        let modules: ListModulesAnswer = serde_json::from_value(modules)
            .context("system_list_modules answered something unexpected")?;
        say_block(&indented(&render_modules(&modules)));
        self.n.events().await?;

        let (holder, holder_t, others) = self.server_templates(prod).await?;
        let target = K3sModule::K3sServer.version_id(TO.0);
        let inputs = |template: &str| {
            json!({
                "template_id": template,
                "module_id": K3sModule::K3sServer.module_id(),
                "target_version_id": target,
                "batch_pct": 50,
                "max_consecutive_failures": 1,
            })
        };
        self.n.step(
            "Day-2 · rolling upgrade, dry run",
            &format!(
                "{} {SKILL} with dry_run: the plan (batches, order, VIP moves), nothing appended",
                ActionName::ExecuteSkill
            ),
        );
        self.n.info(&format!(
            "powernode skills run {SKILL} --template {holder_t} --module mod-k3s-server --to {target} --batch-pct 50 --max-failures 1 --dry-run"
        ));
        let plan = self
            .n
            .call(
                ActionName::ExecuteSkill.as_str(),
                json!({ "skill": SKILL, "inputs": inputs(&holder_t), "dry_run": true }),
            )
            .await?;
        let plan: ExecuteSkillAnswer =
            serde_json::from_value(plan).context("execute_skill answered something unexpected")?;
        say_block(&indented(&render_plan(&plan.execution)));
        // Agents keep reporting meanwhile; the dry run itself appends no
        // skill execution.
        let appended = self.n.events().await?;
        if appended.iter().any(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("system.skill."))
        }) {
            bail!(
                "{}: the dry run appended a skill execution",
                self.n.current()
            );
        }
        self.n
            .info("(no skill execution appended: a dry run appends nothing)");
        self.n.info(&format!(
            "{holder} holds prod's VIP: it goes last, its VIP drained to an upgraded server first,"
        ));
        self.n
            .info("so the template of prod's other server (Runbook Phase 4) is upgraded first");

        for (i, template) in others.iter().chain([&holder_t]).enumerate() {
            self.n.step(
                "Day-2 · rolling upgrade",
                &if i < others.len() {
                    format!("template {template}: the other server first")
                } else {
                    format!("template {template}: the VIP holder, its VIP moved to the upgraded server first")
                },
            );
            self.n.info(&format!(
                "powernode skills run {SKILL} --template {template} --module mod-k3s-server --to {target} --batch-pct 50 --max-failures 1"
            ));
            let started = self
                .n
                .call(
                    ActionName::ExecuteSkill.as_str(),
                    json!({ "skill": SKILL, "inputs": inputs(template) }),
                )
                .await?;
            let id = started["execution"]["id"]
                .as_str()
                .context("execute_skill answered no execution.id")?
                .to_string();
            self.n.info(&format!("execution {id} started"));
            self.follow(&id).await?;
            self.n.events().await?;
        }
        let vip = self
            .n
            .call(
                ActionName::GetVirtualIp.as_str(),
                json!({ "cluster_id": prod }),
            )
            .await?;
        self.show_vip(&vip["virtual_ip"]);

        self.n.step(
            "Day-2 · agent_introspect",
            "what the platform's services and the upgraded node's agent say about themselves",
        );
        self.n.info(&format!(
            "{} {{\"agent_id\": \"sdwan_manager_agent\"}} (powernode agents introspect sdwan_manager_agent):",
            ActionName::AgentIntrospect
        ));
        let sdwan = self
            .n
            .call(
                ActionName::AgentIntrospect.as_str(),
                json!({ "agent_id": "sdwan_manager_agent" }),
            )
            .await?;
        say_block(&indented(&crate::agents::render(&sdwan)));
        // The agent reports what it runs in its next heartbeat.
        let mut w = self
            .n
            .wait(&format!("{holder}'s agent to report running {target}"));
        let node = loop {
            let node = self
                .n
                .call(
                    ActionName::AgentIntrospect.as_str(),
                    json!({ "agent_id": holder }),
                )
                .await?;
            let reported = node["node"]["modules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["reported_version_id"] == target.as_str());
            if reported && node["node"]["upgrading"].is_null() {
                break node;
            }
            w.pending("not reported yet").await?;
        };
        w.done(&format!("it runs {target}"));
        self.n.info(&format!(
            "{} {{\"agent_id\": \"{holder}\"}} (powernode agents introspect {holder}):",
            ActionName::AgentIntrospect
        ));
        say_block(&indented(&crate::agents::render(&node)));
        Ok(())
    }

    /// Follows execution `id` to its end, a line per change; fails when it
    /// is aborted or takes longer than the tour's timeout.
    async fn follow(&mut self, id: &str) -> anyhow::Result<()> {
        let mut f = Follower::new();
        let mut w = self.n.wait(&format!("execution {id} to finish"));
        let e = loop {
            let e = get(&self.n.api, id).await?;
            let live = if e.status.is_finished() {
                LivePhases::new()
            } else {
                live_phases(&self.n.api, &e).await
            };
            for l in f.changes(&e, &live) {
                self.n.info(&l);
            }
            if e.status.is_finished() {
                break e;
            }
            w.pending(&format!(
                "{} ({} of {} steps done)",
                e.status.as_str(),
                e.succeeded + e.failed,
                e.steps.len()
            ))
            .await?;
        };
        if e.status != ExecutionStatus::Completed {
            bail!(
                "{}: execution {id} was {}: {}",
                self.n.current(),
                e.status.as_str(),
                e.reason.as_deref().unwrap_or("no reason recorded")
            );
        }
        w.done(&format!(
            "execution {id} completed: {} of {} nodes upgraded",
            e.succeeded,
            e.steps.len()
        ));
        Ok(())
    }

    /// The id of the instance that bootstrapped `cluster`.
    async fn bootstrap_instance(&self, cluster: &str) -> anyhow::Result<String> {
        let c = self
            .n
            .call(ActionName::GetCluster.as_str(), json!({ "id": cluster }))
            .await?;
        c["cluster"]["bootstrap_instance_id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("cluster {cluster} names no bootstrap instance"))
    }

    /// Prod's VIP holder, its template, and the templates of the
    /// cluster's other control-plane nodes.
    async fn server_templates(
        &self,
        cluster: &str,
    ) -> anyhow::Result<(String, String, Vec<String>)> {
        let vip = self
            .n
            .call(
                ActionName::GetVirtualIp.as_str(),
                json!({ "cluster_id": cluster }),
            )
            .await?;
        let holder = match vip["virtual_ip"]["holders"][0].as_str() {
            Some(h) => h.to_string(),
            None => self.bootstrap_instance(cluster).await?,
        };
        let nodes = self
            .n
            .call(
                ActionName::ListNodes.as_str(),
                json!({ "cluster_id": cluster }),
            )
            .await?;
        let servers: Vec<String> = nodes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["role"] == "control-plane")
            .filter_map(|n| n["instance_id"].as_str().map(str::to_string))
            .collect();
        let list = self
            .n
            .call(ActionName::ListInstances.as_str(), json!({}))
            .await?;
        let template_of = |id: &str| {
            list["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["id"] == id)
                .and_then(|i| i["template_id"].as_str())
                .map(str::to_string)
        };
        let holder_t =
            template_of(&holder).with_context(|| format!("instance {holder} has no template"))?;
        let mut others: Vec<String> = servers
            .iter()
            .filter(|s| **s != holder)
            .filter_map(|s| template_of(s))
            .filter(|t| *t != holder_t)
            .collect();
        others.dedup();
        Ok((holder, holder_t, others))
    }
}
