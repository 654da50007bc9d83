//! The git revision for `powernode --version` and `powernode_build_info`:
//! `git rev-parse --short=12 HEAD` (with `-dirty` when tracked files
//! differ from it), else the env var `POWERNODE_GIT_REV` (a build without
//! `.git`, e.g. a docker build), else `unknown`. Set as
//! `POWERNODE_BUILD_REV` for the crate.
//!
//! Re-run when HEAD moves (`HEAD`, the branch's ref, `packed-refs`), when
//! the index changes (a commit or `git add`) and when the env var does.
//! An edit to a tracked file alone does not re-run it: `-dirty` is as of
//! the last time one of those changed.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=POWERNODE_GIT_REV");
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).map(|rev| {
        if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) {
            println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
            println!("cargo:rerun-if-changed={}", dir.join("index").display());
        }
        if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from) {
            println!(
                "cargo:rerun-if-changed={}",
                common.join("packed-refs").display()
            );
            if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
                println!("cargo:rerun-if-changed={}", common.join(head_ref).display());
            }
        }
        let dirty = Command::new("git")
            .args(["diff-index", "--quiet", "HEAD", "--"])
            .status()
            .is_ok_and(|s| s.code() == Some(1));
        if dirty {
            format!("{rev}-dirty")
        } else {
            rev
        }
    });
    let rev = rev
        .or_else(|| {
            std::env::var("POWERNODE_GIT_REV")
                .ok()
                .filter(|r| !r.trim().is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=POWERNODE_BUILD_REV={}", rev.trim());
}
