//! `powernode networks peer-config <peer>`: one peer's WireGuard config as
//! the platform wants it (public keys only) and whether its agent applied
//! it (system_sdwan_get_peer_config).

use super::output::{field, key_values, Ctx, Table};
use powernode_actions::ActionName;
use serde_json::{json, Value};

/// Shows the config of `peer_id` (a table, or the answer with `-o json`).
pub async fn run(ctx: &Ctx, peer_id: &str) -> anyhow::Result<()> {
    let data = ctx
        .api
        .call(
            ActionName::GetPeerConfig.as_str(),
            &json!({ "peer_id": peer_id }),
        )
        .await?;
    ctx.show(&data, render_peer_config);
    Ok(())
}

/// The answer as `Label: value` lines, then one row per WireGuard peer.
pub fn render_peer_config(d: &Value) -> String {
    let key = match d.get("wireguard").filter(|k| !k.is_null()) {
        Some(k) => format!(
            "{} (endpoint {})",
            field(k, "public_key"),
            field(k, "endpoint")
        ),
        None => "none registered (its agent has not made a WireGuard key yet)".into(),
    };
    let desired = d.get("desired").filter(|c| !c.is_null());
    let applied = match d.get("applied_revision").and_then(Value::as_u64) {
        Some(r) => r.to_string(),
        None => "-".into(),
    };
    let sync = if d["in_sync"] == true {
        "yes".to_string()
    } else if desired.is_none() {
        "no desired config yet".to_string()
    } else {
        format!(
            "NO: revision {} desired, {applied} applied",
            desired.map_or_else(String::new, |c| field(c, "revision"))
        )
    };
    let mut pairs = vec![
        ("Peer", field(d, "peer_id")),
        ("Network", field(d, "network_id")),
        ("Instance", field(d, "instance_id")),
        ("Public key", key),
    ];
    let Some(c) = desired else {
        pairs.push(("In sync", sync));
        return key_values(&pairs);
    };
    pairs.extend([
        ("Interface", field(c, "interface")),
        ("Address", format!("{}/128", field(c, "address"))),
        ("Listen port", field(c, "listen_port")),
        ("Forwarding", field(c, "forwarding")),
        ("Revision", field(c, "revision")),
        ("Applied", applied),
        ("In sync", sync),
    ]);
    let mut t = Table::new(&["PEER", "PUBLIC-KEY", "ENDPOINT", "KEEPALIVE", "ALLOWED-IPS"]);
    for p in c["peers"].as_array().into_iter().flatten() {
        let allowed: Vec<String> = p["allowed_ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        t.row(vec![
            field(p, "id"),
            field(p, "public_key"),
            field(p, "endpoint"),
            field(p, "persistent_keepalive"),
            allowed.join(","),
        ]);
    }
    format!(
        "{}\n{}",
        key_values(&pairs),
        t.render("No WireGuard peers (no other peer of the network registered a key).")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_config_shows_keys_routes_and_sync() {
        let d = json!({
            "peer_id": "peer-a", "network_id": "net-1", "instance_id": "inst-a",
            "wireguard": {"public_key": "KEYA=", "endpoint": "10.0.0.2:51820", "registered_seq": 9},
            "desired": {
                "network_id": "net-1", "interface": "wg-sdwan-abc", "address": "fd00::2",
                "listen_port": 51820, "revision": 12, "forwarding": false,
                "peers": [{"id": "peer-b", "public_key": "KEYB=", "endpoint": "10.0.0.3:51820",
                           "persistent_keepalive": 25, "allowed_ips": ["fd00::3/128", "fd00::100/128"]}]
            },
            "applied_revision": 11, "in_sync": false
        });
        let text = render_peer_config(&d);
        for expected in [
            "KEYA= (endpoint 10.0.0.2:51820)",
            "wg-sdwan-abc",
            "fd00::2/128",
            "NO: revision 12 desired, 11 applied",
            "fd00::3/128,fd00::100/128",
            "KEYB=",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let bare = render_peer_config(&json!({
            "peer_id": "peer-a", "network_id": "net-1", "instance_id": "inst-a",
            "wireguard": null, "desired": null, "applied_revision": null, "in_sync": false
        }));
        assert!(bare.contains("none registered"), "{bare}");
        assert!(bare.contains("no desired config yet"), "{bare}");
    }
}
