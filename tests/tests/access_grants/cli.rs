//! The CLI: the key pair made here, a new 0600 file, list, revoke.

use super::world::*;
use anyhow::{ensure, Context};
use serde_json::Value;
use std::path::Path;

/// Runs the `powernode` binary against the world's API.
fn cli(w: &World, bin: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(powernode_tests::cli_support::powernode(bin)
        .args(["--url", &format!("http://127.0.0.1:{}", w.node.port)])
        .args(["--token", &w.token])
        .args(args)
        .output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_the_key_here_and_writes_a_private_file() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bin = powernode_tests::bins::powernode_bin()?;
    let mut w = world().await?;
    let net_id = s(&w.network["id"]);
    let gw_instance = s(&w.peers[0]["instance_id"]);
    w.register_key(&gw_instance, "10.99.0.2:51820").await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("laptop.conf");
    let out_arg = out.display().to_string();
    let run = cli(
        &w,
        &bin,
        &[
            "networks", "grant", &net_id, "--name", "laptop", "--ttl", "8h", "--out", &out_arg,
        ],
    )?;
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    ensure!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    ensure!(
        stdout.contains(&out_arg) && stdout.contains("0600"),
        "{stdout}"
    );
    let mode = std::fs::metadata(&out)?.permissions().mode();
    ensure!(mode & 0o777 == 0o600, "mode {mode:o}");
    let text = std::fs::read_to_string(&out)?;
    let sections = parse_wg_quick(&text)?;
    let private = sections[0]
        .1
        .get("PrivateKey")
        .context("no PrivateKey")?
        .clone();
    ensure!(!text.contains(PLACEHOLDER), "{text}");

    let list = cli(&w, &bin, &["networks", "grants", &net_id, "-o", "json"])?;
    ensure!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let data: Value = serde_json::from_slice(&list.stdout)?;
    let g = &data["grants"][0];
    ensure!(
        g["public_key"] == public_of(&private)?.as_str() && g["status"] == "active",
        "{data}"
    );
    ensure!(g["expires_at"].is_string(), "{data}");
    // Only the public key went to the platform.
    for r in w.records().await? {
        ensure!(
            !r.bytes
                .windows(private.len())
                .any(|x| x == private.as_bytes()),
            "record {} holds the private key",
            r.seq
        );
    }
    // An existing file is never overwritten.
    let again = cli(
        &w,
        &bin,
        &[
            "networks", "grant", &net_id, "--name", "laptop2", "--out", &out_arg,
        ],
    )?;
    ensure!(!again.status.success(), "overwrote {out_arg}");
    ensure!(std::fs::read_to_string(&out)? == text, "the file changed");

    let id = s(&g["id"]);
    let revoke = cli(&w, &bin, &["networks", "revoke-grant", &id])?;
    ensure!(
        revoke.status.success() && String::from_utf8_lossy(&revoke.stdout).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let again = cli(&w, &bin, &["networks", "revoke-grant", &id])?;
    ensure!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already_revoked"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    w.node.stop().await
}
