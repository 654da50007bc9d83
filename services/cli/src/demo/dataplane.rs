//! The tour's SD-WAN data plane step: the WireGuard config the platform
//! folded for the prod VIP holder's peer (and that its agent applied), and
//! an operator access grant whose key pair is made here.

use super::flow::Tour;
use super::narrator::{say, say_block};
use crate::grants::{fill_in, key_pair, write_private};
use anyhow::Context as _;
use powernode_actions::ActionName;
use serde_json::{json, Value};
use std::path::Path;

impl Tour {
    /// Shows the prod VIP holder's WireGuard config (desired, applied, in
    /// sync) and makes an access grant, written to `<dir>/laptop.conf`.
    pub(super) async fn dataplane(&mut self, prod: &str, dir: &Path) -> anyhow::Result<()> {
        self.n.step(
            "SD-WAN data plane",
            "every peer's WireGuard config is folded from the log; the VIP is routed by AllowedIPs",
        );
        let vip = self
            .n
            .call(
                ActionName::GetVirtualIp.as_str(),
                json!({ "cluster_id": prod }),
            )
            .await?;
        let holder = vip["virtual_ip"]["holder_peer_id"]
            .as_str()
            .or_else(|| vip["virtual_ip"]["failover_holder_peer_ids"][0].as_str())
            .context("the VIP names no holder peer")?
            .to_string();
        let mut w = self
            .n
            .wait(&format!("{holder}'s agent to apply its WireGuard config"));
        let config = loop {
            let c = self
                .n
                .call(
                    ActionName::GetPeerConfig.as_str(),
                    json!({ "peer_id": holder }),
                )
                .await?;
            if c["in_sync"] == true {
                break c;
            }
            let state = match (&c["desired"], &c["applied_revision"]) {
                (Value::Null, _) => "no WireGuard key registered yet".to_string(),
                (d, Value::Null) => format!("revision {} not applied yet", d["revision"]),
                (d, a) => format!("applied {a}, desired {}", d["revision"]),
            };
            w.pending(&state).await?;
        };
        w.done("in sync");
        say_block(&render_config(&config));
        self.grant(dir).await?;
        self.n.events().await?;
        Ok(())
    }

    /// An access grant: the key pair is made here, only the public key is
    /// sent; the file goes to `<dir>/laptop.conf` (0600).
    async fn grant(&mut self, dir: &Path) -> anyhow::Result<()> {
        let (private_key, public_key) = key_pair();
        let answer = self
            .n
            .call(
                ActionName::CreateAccessGrant.as_str(),
                json!({
                    "network_id": self.network_id(),
                    "name": "laptop",
                    "public_key": public_key,
                    "ttl_secs": 8 * 3600,
                }),
            )
            .await?;
        let text = answer["wireguard_config"]
            .as_str()
            .context("the grant's answer has no wireguard_config")?;
        let path = dir.join("laptop.conf");
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot replace {}", path.display()))?;
        }
        write_private(&path, &fill_in(text, &private_key)?)?;
        let g = &answer["grant"];
        say(&format!(
            "    access grant {} for {}: address {}, through gateway {}, expires {}",
            g["id"].as_str().unwrap_or("?"),
            g["name"].as_str().unwrap_or("?"),
            g["address"].as_str().unwrap_or("?"),
            g["gateway_peer_id"].as_str().unwrap_or("?"),
            g["expires_at"].as_str().unwrap_or("never"),
        ));
        say(&format!(
            "    wrote {} (mode 0600); the key pair was made here, the platform only saw the public key:",
            path.display()
        ));
        let indented: Vec<String> = text.lines().map(|l| format!("      {l}")).collect();
        say_block(&format!("{}\n", indented.join("\n")));
        Ok(())
    }
}

/// A peer config as `wg show` would print it, plus desired/applied.
fn render_config(c: &Value) -> String {
    let d = &c["desired"];
    let mut out = format!(
        "    peer {} on {} — revision {} desired, {} applied (in sync: {})\n    interface: {}\n      address: {}/128\n      listening port: {}{}\n",
        c["peer_id"].as_str().unwrap_or("?"),
        c["network_id"].as_str().unwrap_or("?"),
        d["revision"],
        c["applied_revision"],
        c["in_sync"],
        d["interface"].as_str().unwrap_or("?"),
        d["address"].as_str().unwrap_or("?"),
        d["listen_port"],
        if d["forwarding"] == true { "\n      forwarding: on (gateway)" } else { "" },
    );
    for p in d["peers"].as_array().into_iter().flatten() {
        let ips: Vec<&str> = p["allowed_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "    peer: {} ({})\n      endpoint: {}\n      allowed ips: {}\n",
            p["public_key"].as_str().unwrap_or("?"),
            p["id"].as_str().unwrap_or("?"),
            p["endpoint"].as_str().unwrap_or("(dials in)"),
            ips.join(", "),
        ));
    }
    out
}
