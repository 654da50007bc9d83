//! The workspace's binaries, built on demand for tests that run them as
//! processes (the way an operator does).

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;

/// Builds (if needed) `bin` of `package` and returns its path.
pub fn built_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build of {bin} failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("debug").join(bin))
}

/// The `powernode` binary.
pub fn powernode_bin() -> anyhow::Result<PathBuf> {
    built_binary("powernode-services", "powernode")
}
