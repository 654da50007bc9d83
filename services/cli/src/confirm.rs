//! Confirmation of destructive commands: `--yes`, or typing the target's
//! name or id on a terminal. Without a terminal and without `--yes` the
//! command refuses, so scripts never destroy anything by accident.

use anyhow::bail;
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
