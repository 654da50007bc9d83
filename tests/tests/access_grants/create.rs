//! Create (with and without a key), the file, concurrent creations, list, revoke.

use super::world::*;
use anyhow::{ensure, Context};
use powernode_events::wireguard::{decode_base64, encode_base64};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::Ipv6Addr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_created_listed_and_revoked() -> anyhow::Result<()> {
    let mut w = world().await?;
    let net_id = s(&w.network["id"]);
    let overlay: ipnet::Ipv6Net = s(&w.network["overlay_prefix"]).parse()?;
    let vip_range: ipnet::Ipv6Net = s(&w.network["vip_range"]).parse()?;

    // No peer has a key yet: no gateway, nothing appended.
    let before = w.last_seq().await?;
    let none = w
        .call(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "laptop"}),
        )
        .await?;
    ensure!(
        none.status == 409
            && none.body["error"]["code"] == "no_gateway"
            && s(&none.body["error"]["message"]).contains("has registered a WireGuard key"),
        "{:?}",
        none.body
    );
    ensure!(w.last_seq().await? == before, "a refused grant appended");

    let (gw_instance, other_instance) =
        (s(&w.peers[0]["instance_id"]), s(&w.peers[1]["instance_id"]));
    w.register_key(&gw_instance, "10.99.0.2:51820").await?;
    w.register_key(&other_instance, "10.99.0.3:51820").await?;

    // Without a public key: the platform makes the pair; the private key is
    // only in this answer.
    let made = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "laptop", "ttl_secs": 3600}),
        )
        .await?;
    let grant = &made["grant"];
    let config = s(&made["wireguard_config"]);
    let sections = parse_wg_quick(&config)?;
    ensure!(
        sections.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>() == ["Interface", "Peer"],
        "{config}"
    );
    let (iface, peer) = (&sections[0].1, &sections[1].1);
    let private = iface.get("PrivateKey").context("no PrivateKey")?.clone();
    ensure!(
        public_of(&private)? == s(&grant["public_key"]),
        "the key pair does not match"
    );
    let address: Ipv6Addr = s(&grant["address"]).parse()?;
    ensure!(
        iface.get("Address") == Some(&format!("{address}/128")),
        "{config}"
    );
    ensure!(
        overlay.contains(&address) && !vip_range.contains(&address),
        "{address}"
    );
    let peer_ips: BTreeSet<Ipv6Addr> = w
        .peers
        .iter()
        .map(|p| s(&p["overlay_ip"]).parse())
        .collect::<Result<_, _>>()?;
    ensure!(!peer_ips.contains(&address), "a grant got a peer's address");
    // The one peer is the gateway (the oldest data-plane peer: no VIPs here).
    let (gw_key, gw_endpoint) = &w.keys[&gw_instance];
    ensure!(grant["gateway_peer_id"] == w.peers[0]["id"], "{grant}");
    ensure!(peer.get("PublicKey") == Some(gw_key), "{config}");
    ensure!(peer.get("Endpoint") == Some(gw_endpoint), "{config}");
    ensure!(
        peer.get("PersistentKeepalive").map(String::as_str) == Some("25"),
        "{config}"
    );
    let allowed: BTreeSet<&str> = peer
        .get("AllowedIPs")
        .context("no AllowedIPs")?
        .split(", ")
        .collect();
    let expected: BTreeSet<String> = [
        overlay.to_string(),
        "10.42.0.0/16".into(),
        "192.168.50.0/24".into(),
    ]
    .into();
    ensure!(
        allowed == expected.iter().map(String::as_str).collect(),
        "AllowedIPs {allowed:?}, expected {expected:?}"
    );
    ensure!(
        grant["status"] == "active" && grant["expires_at"].is_string(),
        "{grant}"
    );
    // The gateway has the grant as a peer and forwards; the other peer
    // routes the grant's /128 through the gateway.
    let host = ipnet::IpNet::from(std::net::IpAddr::V6(address));
    let gw_config = w.peer_config(0).await?;
    ensure!(gw_config.forwarding, "{gw_config:?}");
    ensure!(
        gw_config.peers.iter().any(|p| p.id == s(&grant["id"])
            && p.public_key == s(&grant["public_key"])
            && p.allowed_ips == [host]),
        "{gw_config:?}"
    );
    let other_config = w.peer_config(1).await?;
    ensure!(
        other_config
            .peers
            .iter()
            .any(|p| p.id == s(&w.peers[0]["id"]) && p.allowed_ips.contains(&host)),
        "{other_config:?}"
    );

    // The private key is in no record of the log (raw bytes or base64).
    let raw = decode_base64(&private).context("base64")?;
    for r in w.records().await? {
        let b = &r.bytes[..];
        ensure!(
            !b.windows(private.len()).any(|x| x == private.as_bytes())
                && !b.windows(raw.len()).any(|x| x == &raw[..]),
            "record {} ({}) holds the private key",
            r.seq,
            r.kind()
        );
    }
    let tail = w.ok("recent_events", json!({"limit": 1000})).await?;
    ensure!(
        !tail.to_string().contains(&private),
        "recent_events shows the private key"
    );

    // With the caller's key: the file has the placeholder, no private key.
    let own_key = encode_base64(&rand::random::<[u8; 32]>());
    let brought = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "ci", "public_key": own_key}),
        )
        .await?;
    let text = s(&brought["wireguard_config"]);
    ensure!(
        text.lines().any(|l| l == PLACEHOLDER)
            && !text.lines().any(|l| l.starts_with("PrivateKey")),
        "{text}"
    );
    ensure!(
        brought["grant"]["public_key"] == own_key.as_str(),
        "{brought}"
    );
    ensure!(brought["grant"]["expires_at"].is_null(), "{brought}");

    // Eight concurrent creations: eight distinct addresses.
    let answers = futures::future::join_all((0..8).map(|k| {
        w.call(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": format!("c{k}")}),
        )
    }))
    .await;
    let mut addrs = BTreeSet::from([
        address,
        brought["grant"]["address"].as_str().unwrap_or("").parse()?,
    ]);
    for a in answers {
        let a = a?;
        ensure!(a.status == 200, "{:?}", a.body);
        ensure!(
            addrs.insert(s(&a.body["data"]["grant"]["address"]).parse()?),
            "two grants got one address: {:?}",
            a.body
        );
    }
    ensure!(addrs.len() == 10);

    // List: all ten, oldest first; by network; an unknown network is 404.
    let list = w.ok("system_sdwan_list_access_grants", json!({})).await?;
    let grants = list["grants"].as_array().context("grants")?;
    ensure!(
        grants.len() == 10 && grants[0]["id"] == grant["id"],
        "{list}"
    );
    ensure!(grants.iter().all(|g| g["status"] == "active"), "{list}");
    let by_net = w
        .ok(
            "system_sdwan_list_access_grants",
            json!({"network_id": net_id}),
        )
        .await?;
    ensure!(
        by_net["grants"].as_array().map(Vec::len) == Some(10),
        "{by_net}"
    );
    let unknown = w
        .call(
            "system_sdwan_list_access_grants",
            json!({"network_id": "net-nope"}),
        )
        .await?;
    ensure!(unknown.status == 404, "{:?}", unknown.body);

    // Revoke, then revoke again: refused, nothing appended.
    let revoked = w
        .ok(
            "system_sdwan_revoke_access_grant",
            json!({"grant_id": grant["id"]}),
        )
        .await?;
    ensure!(revoked["grant"]["status"] == "revoked", "{revoked}");
    let before = w.last_seq().await?;
    let again = w
        .call(
            "system_sdwan_revoke_access_grant",
            json!({"grant_id": grant["id"]}),
        )
        .await?;
    ensure!(
        again.status == 409 && again.body["error"]["code"] == "already_revoked",
        "{:?}",
        again.body
    );
    let unknown = w
        .call(
            "system_sdwan_revoke_access_grant",
            json!({"grant_id": "grant-nope"}),
        )
        .await?;
    ensure!(unknown.status == 404, "{:?}", unknown.body);
    ensure!(w.last_seq().await? == before, "a refused revoke appended");
    // Revoked: gone from the gateway, and no longer routed anywhere.
    let gw_config = w.peer_config(0).await?;
    ensure!(
        !gw_config.peers.iter().any(|p| p.id == s(&grant["id"])),
        "{gw_config:?}"
    );
    let other_config = w.peer_config(1).await?;
    ensure!(
        !other_config
            .peers
            .iter()
            .any(|p| p.allowed_ips.contains(&host)),
        "{other_config:?}"
    );
    let list = w.ok("system_sdwan_list_access_grants", json!({})).await?;
    ensure!(
        list["grants"][0]["status"] == "revoked" && list["grants"][1]["status"] == "active",
        "{list}"
    );
    w.node.stop().await
}
