//! Confirmation of destructive commands: `--yes`, or typing the target's
//! name or id on a terminal. Without a terminal and without `--yes` the
//! command refuses, so scripts never destroy anything by accident.

use crate::output::field;
use anyhow::bail;
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};

/// What is about to be destroyed.
pub struct Target<'a> {
    /// The verb, e.g. `decommission`.
    pub verb: &'a str,
    /// The kind, e.g. `cluster`.
    pub kind: &'a str,
    /// Its id.
    pub id: &'a str,
    /// Its name (accepted as confirmation too).
    pub name: &'a str,
    /// What the name is called, e.g. `name` or `hostname`.
    pub name_label: &'a str,
    /// Lines describing it and the consequences, shown before asking.
    pub details: Vec<String>,
}

/// Returns when the operator confirmed (`yes` given, or the name or id
/// typed on a terminal); refuses otherwise.
pub fn confirm(target: &Target<'_>, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let Target {
        verb,
        kind,
        id,
        name,
        name_label,
        ..
    } = target;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to {verb} {kind} {id} ({name}) without confirmation: stdin is not a terminal; pass --yes to confirm"
        );
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "About to {verb} {kind} {id}:")?;
    for d in &target.details {
        writeln!(err, "  {d}")?;
    }
    write!(
        err,
        "Type the {kind}'s {name_label} ({name}) or id to confirm: "
    )?;
    err.flush()?;
    drop(err);
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    let answer = answer.trim();
    if answer.is_empty() || (answer != *name && answer != *id) {
        bail!("not confirmed ({answer:?} is neither {name:?} nor {id:?}); nothing changed");
    }
    Ok(())
}

/// Confirms decommissioning cluster `id` (`cluster`: its view), as every
/// command that decommissions asks it.
pub fn confirm_decommission(id: &str, cluster: &Value, yes: bool) -> anyhow::Result<()> {
    let name = field(cluster, "name");
    confirm(
        &Target {
            verb: "decommission",
            kind: "cluster",
            id,
            name: &name,
            name_label: "name",
            details: vec![
                format!("name:      {name}"),
                format!("status:    {}", field(cluster, "status")),
                format!("nodes:     {}", field(cluster, "node_count")),
                format!("endpoint:  {}", field(cluster, "api_endpoint")),
                "its node rows are removed and its VIP released; its instances are kept".into(),
            ],
        },
        yes,
    )
}

/// Confirms terminating instance `id` (`instance`: its view), as every
/// command that terminates asks it.
pub fn confirm_terminate(id: &str, instance: &Value, yes: bool) -> anyhow::Result<()> {
    let hostname = field(instance, "hostname");
    confirm(
        &Target {
            verb: "terminate",
            kind: "instance",
            id,
            name: &hostname,
            name_label: "hostname",
            details: vec![
                format!("hostname:  {hostname}"),
                format!("status:    {}", field(instance, "status")),
                format!("k3s phase: {}", field(instance, "k3s_phase")),
                format!("cluster:   {}", field(instance, "cluster_id")),
                "its agent stops and cannot come back; provision a new instance instead".into(),
            ],
        },
        yes,
    )
}
