//! The workspace's binaries, built on demand for tests that run them as
//! processes (the way an operator does).

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;

/// `cargo build --quiet -p <package> --bin <bin>`, without the variables
/// cargo set for the test process itself: a build script that tracks one
/// (ring's tracks `CARGO_MANIFEST_DIR`) would otherwise see it change
/// between this build and an ordinary one, and each would rebuild half the
/// dependency tree (tens of seconds per test run).
pub fn cargo_build(package: &str, bin: &str) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin]);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Builds (if needed) `bin` of `package` and returns its path.
pub fn built_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let status = cargo_build(package, bin)
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
    built_binary("powernode-cli", "powernode")
}
