//! A skill's inputs as `execute_skill` receives them (a JSON object), read
//! into the typed inputs of its skill. Every refusal names the input: an
//! input the skill does not know, a missing one, a wrong type or a value
//! out of range.

use powernode_events::payloads::skills::{SkillInputs, SkillName};
use serde_json::{Map, Value};

/// What `execute_skill` was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkillRequest {
    /// `system-rolling-module-upgrade`.
    RollingUpgrade(UpgradeInputs),
    /// `provision_cluster`.
    Provision(ProvisionInputs),
    /// `system-pod-subnet-restamp`.
    Restamp(RestampInputs),
}

impl SkillRequest {
    /// The skill.
    pub fn skill(&self) -> SkillName {
        match self {
            Self::RollingUpgrade(_) => SkillName::RollingModuleUpgrade,
            Self::Provision(_) => SkillName::ProvisionCluster,
            Self::Restamp(_) => SkillName::PodSubnetRestamp,
        }
    }

    /// What only one execution at a time may work on: the plan's scope
    /// (`template/<id>` for an upgrade or a provision, by its server
    /// template; `cluster/<id>` for a re-stamp).
    pub fn scope(&self) -> String {
        match self {
            Self::RollingUpgrade(i) => super::plan::template_scope(&i.template_id),
            Self::Provision(i) => super::plan::template_scope(&i.server_template_id),
            Self::Restamp(i) => super::plan::cluster_scope(&i.cluster_id),
        }
    }
}

/// Inputs of `system-rolling-module-upgrade`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeInputs {
    /// The template whose instances are upgraded.
    pub template_id: String,
    /// `mod-k3s-server` or `mod-k3s-agent`.
    pub module_id: String,
    /// The version to run.
    pub target_version_id: String,
    /// Percent of the template's instances per batch (1-100).
    pub batch_pct: u32,
    /// Failures in a row that stop the execution (≥ 1, default 1).
    pub max_consecutive_failures: u32,
}

/// Inputs of `provision_cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionInputs {
    /// The SD-WAN network every node is attached to.
    pub network_id: String,
    /// The servers' template.
    pub server_template_id: String,
    /// The workers' template (needed when `workers` > 0).
    pub worker_template_id: Option<String>,
    /// How many servers (≥ 1).
    pub servers: u32,
    /// How many workers (default 0).
    pub workers: u32,
    /// How long the action waits for the cluster (default 600 s); the
    /// execution goes on after that.
    pub timeout_secs: u64,
}

/// Inputs of `system-pod-subnet-restamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestampInputs {
    /// The network whose `pod_subnet_prefix` was set.
    pub network_id: String,
    /// The cluster to re-stamp.
    pub cluster_id: String,
    /// Percent of the cluster's nodes per batch (1-100).
    pub batch_pct: u32,
    /// Failures in a row that stop the execution (≥ 1, default 1).
    pub max_consecutive_failures: u32,
}

impl UpgradeInputs {
    /// As recorded in `…execution.started`.
    pub fn recorded(&self) -> SkillInputs {
        SkillInputs {
            template_id: Some(self.template_id.clone()),
            module_id: Some(self.module_id.clone()),
            target_version_id: Some(self.target_version_id.clone()),
            batch_pct: Some(self.batch_pct),
            max_consecutive_failures: Some(self.max_consecutive_failures),
            ..SkillInputs::default()
        }
    }
}

impl ProvisionInputs {
    /// As recorded in `…execution.started` (`timeout_secs` is the call's
    /// own and not recorded).
    pub fn recorded(&self) -> SkillInputs {
        SkillInputs {
            network_id: Some(self.network_id.clone()),
            server_template_id: Some(self.server_template_id.clone()),
            worker_template_id: self.worker_template_id.clone(),
            servers: Some(self.servers),
            workers: Some(self.workers),
            ..SkillInputs::default()
        }
    }
}

impl RestampInputs {
    /// As recorded in `…execution.started`.
    pub fn recorded(&self) -> SkillInputs {
        SkillInputs {
            network_id: Some(self.network_id.clone()),
            cluster_id: Some(self.cluster_id.clone()),
            batch_pct: Some(self.batch_pct),
            max_consecutive_failures: Some(self.max_consecutive_failures),
            ..SkillInputs::default()
        }
    }
}

/// Why the inputs were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// No skill has that name.
    #[error("unknown skill {0:?}; known skills: {known}", known = known_skills())]
    UnknownSkill(String),
    /// An input is unknown, missing, of the wrong type or out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Every skill's name, comma-separated.
pub fn known_skills() -> String {
    SkillName::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest `timeout_secs` a `provision_cluster` call may wait.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// The default `timeout_secs`.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Reads `inputs` for the skill named `skill`.
pub fn parse(skill: &str, inputs: &Map<String, Value>) -> Result<SkillRequest, InputError> {
    let name = SkillName::parse(skill).ok_or_else(|| InputError::UnknownSkill(skill.into()))?;
    let r = Reader { name, inputs };
    match name {
        SkillName::RollingModuleUpgrade => {
            r.only(&[
                "template_id",
                "module_id",
                "target_version_id",
                "batch_pct",
                "max_consecutive_failures",
            ])?;
            Ok(SkillRequest::RollingUpgrade(UpgradeInputs {
                template_id: r.required_str("template_id")?,
                module_id: r.required_str("module_id")?,
                target_version_id: r.required_str("target_version_id")?,
                batch_pct: r.required_int("batch_pct", 1, 100)?,
                max_consecutive_failures: r.int("max_consecutive_failures", 1, 1000)?.unwrap_or(1),
            }))
        }
        SkillName::ProvisionCluster => {
            r.only(&[
                "network_id",
                "server_template_id",
                "worker_template_id",
                "servers",
                "workers",
                "timeout_secs",
            ])?;
            let workers = r.int("workers", 0, 1000)?.unwrap_or(0);
            let worker_template_id = r.str("worker_template_id")?;
            if workers > 0 && worker_template_id.is_none() {
                return Err(InputError::Invalid(format!(
                    "inputs.worker_template_id is required when inputs.workers is {workers}"
                )));
            }
            Ok(SkillRequest::Provision(ProvisionInputs {
                network_id: r.required_str("network_id")?,
                server_template_id: r.required_str("server_template_id")?,
                worker_template_id,
                servers: r.required_int("servers", 1, 99)?,
                workers,
                timeout_secs: r
                    .int("timeout_secs", 1, MAX_TIMEOUT_SECS as u32)?
                    .map_or(DEFAULT_TIMEOUT_SECS, u64::from),
            }))
        }
        SkillName::PodSubnetRestamp => {
            r.only(&[
                "network_id",
                "cluster_id",
                "batch_pct",
                "max_consecutive_failures",
            ])?;
            Ok(SkillRequest::Restamp(RestampInputs {
                network_id: r.required_str("network_id")?,
                cluster_id: r.required_str("cluster_id")?,
                batch_pct: r.required_int("batch_pct", 1, 100)?,
                max_consecutive_failures: r.int("max_consecutive_failures", 1, 1000)?.unwrap_or(1),
            }))
        }
    }
}

struct Reader<'a> {
    name: SkillName,
    inputs: &'a Map<String, Value>,
}

impl Reader<'_> {
    /// Refuses an input not in `known`.
    fn only(&self, known: &[&str]) -> Result<(), InputError> {
        match self.inputs.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(InputError::Invalid(format!(
                "inputs.{k}: {} has no input {k:?}; its inputs are {}",
                self.name.as_str(),
                known.join(", ")
            ))),
        }
    }

    /// The input `key`, `None` when absent or null.
    fn get(&self, key: &str) -> Option<&Value> {
        self.inputs.get(key).filter(|v| !v.is_null())
    }

    fn missing(&self, key: &str) -> InputError {
        InputError::Invalid(format!(
            "inputs.{key} is required for {}",
            self.name.as_str()
        ))
    }

    fn str(&self, key: &str) -> Result<Option<String>, InputError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(v) => Err(InputError::Invalid(format!(
                "inputs.{key} must be a non-empty string (an id); got {}",
                describe(v)
            ))),
        }
    }

    fn required_str(&self, key: &str) -> Result<String, InputError> {
        self.str(key)?.ok_or_else(|| self.missing(key))
    }

    fn int(&self, key: &str, min: u32, max: u32) -> Result<Option<u32>, InputError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(InputError::Invalid(format!(
                "inputs.{key} must be an integer from {min} to {max}; got {}",
                describe(v)
            ))),
        }
    }

    fn required_int(&self, key: &str, min: u32, max: u32) -> Result<u32, InputError> {
        self.int(key, min, max)?.ok_or_else(|| self.missing(key))
    }
}

/// A value's type and value, for messages: `the string "50"`.
fn describe(v: &Value) -> String {
    let text: String = v.to_string().chars().take(64).collect();
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => format!("the boolean {text}"),
        Value::Number(_) => format!("the number {text}"),
        Value::String(_) => format!("the string {text}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(v: Value) -> Map<String, Value> {
        v.as_object().expect("an object").clone()
    }

    fn runbook() -> Map<String, Value> {
        inputs(json!({
            "template_id": "tmpl-1",
            "module_id": "mod-k3s-server",
            "target_version_id": "v-k3s-1.31.0",
            "batch_pct": 50,
            "max_consecutive_failures": 1
        }))
    }

    fn refusal(skill: &str, i: Map<String, Value>) -> String {
        parse(skill, &i).expect_err("refused").to_string()
    }

    #[test]
    fn the_runbook_inputs_are_read() {
        let r = parse("system-rolling-module-upgrade", &runbook()).expect("read");
        assert_eq!(r.scope(), "template/tmpl-1");
        assert_eq!(r.skill(), SkillName::RollingModuleUpgrade);
        assert_eq!(
            r,
            SkillRequest::RollingUpgrade(UpgradeInputs {
                template_id: "tmpl-1".into(),
                module_id: "mod-k3s-server".into(),
                target_version_id: "v-k3s-1.31.0".into(),
                batch_pct: 50,
                max_consecutive_failures: 1,
            })
        );
    }

    #[test]
    fn an_unknown_skill_lists_the_known_ones() {
        let e = refusal("system-reboot", runbook());
        assert!(e.contains("\"system-reboot\""), "{e}");
        assert!(
            e.contains("system-rolling-module-upgrade, provision_cluster"),
            "{e}"
        );
    }

    #[test]
    fn bad_inputs_are_named() {
        let mut i = runbook();
        i.insert("colour".into(), json!("blue"));
        let e = refusal("system-rolling-module-upgrade", i);
        assert!(e.starts_with("inputs.colour: "), "{e}");
        for (pct, what) in [
            (json!("50"), "the string \"50\""),
            (json!(0), "the number 0"),
            (json!(101), "the number 101"),
            (json!(50.5), "the number 50.5"),
            (json!(-1), "the number -1"),
        ] {
            let mut i = runbook();
            i.insert("batch_pct".into(), pct);
            let e = refusal("system-rolling-module-upgrade", i);
            assert!(
                e.starts_with("inputs.batch_pct must be an integer from 1 to 100"),
                "{e}"
            );
            assert!(e.contains(what), "{e}");
        }
        let mut i = runbook();
        i.remove("target_version_id");
        let e = refusal("system-rolling-module-upgrade", i);
        assert_eq!(
            e,
            "inputs.target_version_id is required for system-rolling-module-upgrade"
        );
        let mut i = runbook();
        i.insert("max_consecutive_failures".into(), json!(0));
        assert!(refusal("system-rolling-module-upgrade", i)
            .starts_with("inputs.max_consecutive_failures must be"));
    }

    #[test]
    fn provision_needs_a_worker_template_only_for_workers() {
        let base = json!({"network_id": "net-1", "server_template_id": "tmpl-s", "servers": 3});
        match parse("provision_cluster", &inputs(base.clone())).expect("read") {
            SkillRequest::Provision(p) => {
                assert_eq!((p.workers, p.timeout_secs), (0, DEFAULT_TIMEOUT_SECS));
                assert_eq!(p.worker_template_id, None);
            }
            other => panic!("{other:?}"),
        }
        let mut i = inputs(base);
        i.insert("workers".into(), json!(2));
        assert_eq!(
            refusal("provision_cluster", i),
            "inputs.worker_template_id is required when inputs.workers is 2"
        );
    }
}
