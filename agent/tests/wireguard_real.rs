//! The data plane against real `ip`, `wg` and a userspace WireGuard
//! (`boringtun-cli`). Needs root, `/dev/net/tun` and a private network and
//! mount namespace, so it is ignored by default; run it as
//!
//! ```text
//! ip netns add pn-wgreal
//! ip netns exec pn-wgreal unshare -m --propagation private sh -c \
//!   'mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && \
//!    exec target/debug/deps/wireguard_real-<hash> --ignored --nocapture'
//! ```

use ipnet::IpNet;
use powernode_agent::wireguard::runner::QuickRunner;
use powernode_agent::wireguard::{DataPlane, WireguardKey};
use powernode_events::wireguard::{encode_base64, WireguardConfig, WireguardPeer};
use std::process::Command;
use std::time::Instant;

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn peer(n: u8, ips: &[&str]) -> WireguardPeer {
    WireguardPeer {
        id: format!("peer-{n}"),
        public_key: encode_base64(&x25519_public(n)),
        endpoint: Some(format!("10.99.0.{n}:51820")),
        persistent_keepalive: Some(25),
        allowed_ips: ips.iter().map(|i| i.parse::<IpNet>().unwrap()).collect(),
    }
}

fn x25519_public(n: u8) -> [u8; 32] {
    let mut k = [n; 32];
    k[0] = n.wrapping_mul(7);
    k
}

#[test]
#[ignore = "needs root, /dev/net/tun, boringtun-cli and a private netns (see the file's doc)"]
fn applies_and_moves_a_vip_on_a_real_userspace_interface() {
    let dir = tempfile::tempdir().unwrap();
    let key = WireguardKey::load_or_create(dir.path()).unwrap();
    let userspace = std::env::var("POWERNODE_WG_USERSPACE")
        .unwrap_or_else(|_| "/root/.cargo/bin/boringtun-cli".into());
    let mut plane = DataPlane::new(
        key.clone(),
        "10.99.0.1:51820".into(),
        Box::new(QuickRunner::new()),
    )
    .with_userspace(userspace);
    let cfg = |revision, peers| WireguardConfig {
        network_id: "net-1".into(),
        interface: "wg-sdwan-real".into(),
        address: "fd00:abcd::1".parse().unwrap(),
        listen_port: 51820,
        revision,
        forwarding: true,
        peers,
    };
    let vip = "fd00:abcd::100/128";
    let started = Instant::now();
    plane
        .apply(&cfg(
            1,
            vec![
                peer(2, &["fd00:abcd::2/128", vip, "10.42.1.0/24"]),
                peer(3, &["fd00:abcd::3/128"]),
            ],
        ))
        .unwrap();
    println!("first apply: {:?}", started.elapsed());
    let shown = sh("wg show wg-sdwan-real dump");
    println!("{shown}");
    // boringtun answers `own_public_key` (hex) instead of the private key,
    // so `wg show` prints `(none)`; ask its UAPI socket.
    let uapi = sh("python3 -c 'import socket,time;s=socket.socket(socket.AF_UNIX);s.connect(\"/run/wireguard/wg-sdwan-real.sock\");s.send(b\"get=1\\n\\n\");time.sleep(0.1);print(s.recv(65536).decode())'");
    let own = powernode_events::wireguard::decode_base64(key.public_key()).unwrap();
    let own_hex: String = own.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        uapi.contains(&own_hex) || shown.contains(key.public_key()),
        "the interface has this node's key: {uapi}"
    );
    assert!(shown.contains("fd00:abcd::100/128"));
    assert!(sh("ip -6 addr show dev wg-sdwan-real").contains("fd00:abcd::1/128"));
    assert!(sh("ip -6 route show dev wg-sdwan-real").contains("fd00:abcd::100"));
    assert!(sh("ip -4 route show dev wg-sdwan-real").contains("10.42.1.0/24"));

    let started = Instant::now();
    plane
        .apply(&cfg(
            2,
            vec![
                peer(2, &["fd00:abcd::2/128", "10.42.1.0/24"]),
                peer(3, &["fd00:abcd::3/128", vip]),
            ],
        ))
        .unwrap();
    let moved = started.elapsed();
    println!("VIP move: {moved:?}");
    let allowed = sh("wg show wg-sdwan-real allowed-ips");
    let line3 = allowed
        .lines()
        .find(|l| l.starts_with(&encode_base64(&x25519_public(3))))
        .unwrap()
        .to_owned();
    assert!(line3.contains("fd00:abcd::100/128"), "{allowed}");

    // Holding the VIP here, then a new process over the same interface.
    plane.hold_vip(Some("net-1"), "fd00:abcd::100").unwrap();
    assert!(sh("ip -6 addr show dev wg-sdwan-real").contains("fd00:abcd::100/128"));
    drop(plane);
    let key = WireguardKey::load_or_create(dir.path()).unwrap();
    let mut again = DataPlane::new(key, "10.99.0.1:51820".into(), Box::new(QuickRunner::new()));
    again
        .apply(&cfg(3, vec![peer(3, &["fd00:abcd::3/128", vip])]))
        .unwrap();
    assert!(!sh("ip -6 addr show dev wg-sdwan-real").contains("fd00:abcd::100/128"));
    assert!(!sh("wg show wg-sdwan-real peers").contains(&encode_base64(&x25519_public(2))));
    assert!(!sh("ip -4 route show dev wg-sdwan-real").contains("10.42.1.0/24"));
    let _ = sh("ip link del wg-sdwan-real");
}
