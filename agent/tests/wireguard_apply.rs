//! Applying WireGuard configs against a fake kernel (a recording runner
//! that keeps links, peers, addresses and routes): the commands of a first
//! apply, a re-apply (nothing), a VIP moving, a peer removed, a restart
//! over stale state, the userspace fallback and its absence.

use powernode_agent::wireguard::simulated as wireguard_fake;

use ipnet::IpNet;
use powernode_agent::wireguard::{DataPlane, DataPlaneError, WireguardKey};
use powernode_events::wireguard::{WireguardConfig, WireguardPeer};
use std::sync::{Arc, Mutex};
use wireguard_fake::{drain, runner, Kernel, Link, Shared};

const IF: &str = "wg-sdwan-prod";
const NET: &str = "net-1";
const VIP: &str = "fd00:abcd::100";

fn key(n: u8) -> String {
    powernode_events::wireguard::encode_base64(&[n; 32])
}

fn peer(n: u8, ips: &[&str]) -> WireguardPeer {
    WireguardPeer {
        id: format!("peer-{n}"),
        public_key: key(n),
        endpoint: Some(format!("10.99.0.{n}:51820")),
        persistent_keepalive: Some(25),
        allowed_ips: ips.iter().map(|i| i.parse::<IpNet>().unwrap()).collect(),
    }
}

fn config(revision: u64, peers: Vec<WireguardPeer>) -> WireguardConfig {
    WireguardConfig {
        network_id: NET.into(),
        interface: IF.into(),
        address: "fd00:abcd::1".parse().unwrap(),
        listen_port: 51820,
        revision,
        forwarding: false,
        peers,
    }
}

struct Rig {
    kernel: Shared,
    calls: Arc<Mutex<Vec<powernode_agent::driver::runner::RecordedCommand>>>,
    plane: DataPlane,
    dir: tempfile::TempDir,
}

fn rig(has_wireguard: bool, kernel: Option<Shared>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let kernel = kernel.unwrap_or_else(|| {
        Arc::new(Mutex::new(Kernel {
            has_wireguard,
            ..Kernel::default()
        }))
    });
    let (runner, calls) = runner(&kernel, dir.path());
    let key = WireguardKey::load_or_create(dir.path()).unwrap();
    let plane =
        DataPlane::new(key, "10.99.0.1:51820".into(), Box::new(runner)).with_socket_dir(dir.path());
    Rig {
        kernel,
        calls,
        plane,
        dir,
    }
}

fn two_peers(revision: u64) -> WireguardConfig {
    config(
        revision,
        vec![
            peer(2, &["fd00:abcd::2/128", VIP_NET, "10.42.1.0/24"]),
            peer(3, &["fd00:abcd::3/128"]),
        ],
    )
}

const VIP_NET: &str = "fd00:abcd::100/128";

#[test]
fn first_apply_sets_everything_and_a_repeat_runs_only_the_check() {
    let mut r = rig(true, None);
    let key_file = r.dir.path().join("wireguard.key").display().to_string();
    assert!(r.plane.apply_all(&[two_peers(7)]));
    let lines = drain(&r.calls);
    let expected = vec![
        format!("ip link show {IF}"),
        format!("ip link add {IF} type wireguard"),
        format!("wg show {IF} peers"),
        format!(
            "wg set {IF} listen-port 51820 private-key {key_file} peer {} endpoint 10.99.0.2:51820 persistent-keepalive 25 allowed-ips fd00:abcd::2/128,{VIP_NET},10.42.1.0/24 peer {} endpoint 10.99.0.3:51820 persistent-keepalive 25 allowed-ips fd00:abcd::3/128",
            key(2),
            key(3)
        ),
        format!("ip -6 addr replace fd00:abcd::1/128 dev {IF}"),
        format!("ip -6 addr show dev {IF}"),
        format!("ip link set {IF} up"),
        format!("ip -6 route show dev {IF}"),
        format!("ip -4 route show dev {IF}"),
        format!("ip -4 route replace 10.42.1.0/24 dev {IF}"),
        format!("ip -6 route replace fd00:abcd::2/128 dev {IF}"),
        format!("ip -6 route replace fd00:abcd::3/128 dev {IF}"),
        format!("ip -6 route replace fd00:abcd::100/128 dev {IF}"),
    ];
    assert_eq!(lines, expected);
    let applied = r.plane.applied_revisions();
    assert_eq!(applied.len(), 1);
    assert_eq!(
        (applied[0].network_id.as_str(), applied[0].revision),
        (NET, 7)
    );
    {
        let k = r.kernel.lock().unwrap();
        let link = &k.links[IF];
        assert!(link.up);
        assert_eq!(link.peers.len(), 2);
        assert_eq!(link.routes.len(), 4);
        assert!(k.sysctls.is_empty(), "no forwarding asked for");
    }
    // Same revision, interface up: only the check runs.
    assert!(!r.plane.apply_all(&[two_peers(7)]));
    assert_eq!(drain(&r.calls), vec![format!("ip link show {IF}")]);
    // An older revision (a lagging replica) is not applied either.
    assert!(!r.plane.apply_all(&[config(6, vec![])]));
    assert_eq!(drain(&r.calls), vec![format!("ip link show {IF}")]);
    assert_eq!(r.plane.applied_revisions()[0].revision, 7);
}

#[test]
fn a_vip_moving_between_peers_is_one_wg_set() {
    let mut r = rig(true, None);
    r.plane.apply_all(&[two_peers(1)]);
    drain(&r.calls);
    let moved = config(
        2,
        vec![
            peer(2, &["fd00:abcd::2/128", "10.42.1.0/24"]),
            peer(3, &["fd00:abcd::3/128", VIP_NET]),
        ],
    );
    assert!(r.plane.apply_all(&[moved]));
    assert_eq!(
        drain(&r.calls),
        vec![
            format!("ip link show {IF}"),
            format!(
                "wg set {IF} peer {} endpoint 10.99.0.2:51820 persistent-keepalive 25 allowed-ips fd00:abcd::2/128,10.42.1.0/24 peer {} endpoint 10.99.0.3:51820 persistent-keepalive 25 allowed-ips fd00:abcd::3/128,{VIP_NET}",
                key(2),
                key(3)
            ),
        ]
    );
    let k = r.kernel.lock().unwrap();
    assert_eq!(
        k.links[IF].peers[&key(3)].1,
        vec!["fd00:abcd::3/128".to_string(), VIP_NET.to_string()]
    );
    assert!(!k.links[IF].peers[&key(2)].1.contains(&VIP_NET.to_string()));
}

#[test]
fn a_vip_leaving_this_node_loses_its_address_and_gains_a_route() {
    let mut r = rig(true, None);
    let mine = config(1, vec![peer(2, &["fd00:abcd::2/128"])]);
    r.plane.hold_vip(Some(NET), VIP).unwrap();
    r.plane.apply_all(&[mine]);
    assert!(r.kernel.lock().unwrap().links[IF].addrs.contains(VIP_NET));
    drain(&r.calls);
    // Promotion: the VIP goes to peer 2; this node releases, then applies.
    r.plane.release_vip(Some(NET), VIP).unwrap();
    r.plane
        .apply_all(&[config(2, vec![peer(2, &["fd00:abcd::2/128", VIP_NET])])]);
    assert_eq!(
        drain(&r.calls),
        vec![
            format!("ip -6 addr del {VIP_NET} dev {IF}"),
            format!("ip link show {IF}"),
            format!(
                "wg set {IF} peer {} endpoint 10.99.0.2:51820 persistent-keepalive 25 allowed-ips fd00:abcd::2/128,{VIP_NET}",
                key(2)
            ),
            format!("ip -6 route replace {VIP_NET} dev {IF}"),
        ]
    );
    let k = r.kernel.lock().unwrap();
    assert!(!k.links[IF].addrs.contains(VIP_NET));
    assert!(k.links[IF].routes.contains(&("-6".into(), VIP_NET.into())));
}

#[test]
fn a_removed_peer_is_removed_with_its_routes() {
    let mut r = rig(true, None);
    r.plane.apply_all(&[two_peers(1)]);
    drain(&r.calls);
    let without = config(2, vec![peer(3, &["fd00:abcd::3/128"])]);
    r.plane.apply_all(&[without]);
    assert_eq!(
        drain(&r.calls),
        vec![
            format!("ip link show {IF}"),
            format!("wg set {IF} peer {} remove", key(2)),
            format!("ip -4 route del 10.42.1.0/24 dev {IF}"),
            format!("ip -6 route del fd00:abcd::2/128 dev {IF}"),
            format!("ip -6 route del fd00:abcd::100/128 dev {IF}"),
        ]
    );
    let k = r.kernel.lock().unwrap();
    assert_eq!(k.links[IF].peers.keys().collect::<Vec<_>>(), vec![&key(3)]);
    assert_eq!(k.links[IF].routes.len(), 1);
}

#[test]
fn a_restart_removes_stale_peers_routes_and_vip_addresses_but_keeps_kernel_routes() {
    let kernel: Shared = Arc::new(Mutex::new(Kernel {
        has_wireguard: true,
        ..Kernel::default()
    }));
    {
        let mut k = kernel.lock().unwrap();
        let mut link = Link {
            up: true,
            ..Link::default()
        };
        link.peers
            .insert(key(9), (None, vec!["fd00:abcd::9/128".into()]));
        link.peers.insert(key(3), (None, vec![]));
        link.addrs.insert("fd00:abcd::1/128".into());
        link.addrs.insert(VIP_NET.into()); // held before the restart, not any more
        link.routes.insert(("-6".into(), "fd00:abcd::9/128".into()));
        link.routes.insert(("-6".into(), "fd00:abcd::3/128".into()));
        link.kernel_routes.insert(("-6".into(), "fe80::/64".into()));
        k.links.insert(IF.into(), link);
    }
    let mut r = rig(true, Some(kernel));
    r.plane
        .apply_all(&[config(4, vec![peer(3, &["fd00:abcd::3/128"])])]);
    let lines = drain(&r.calls);
    assert!(
        lines[2].contains(&format!("peer {} remove", key(9))),
        "{lines:?}"
    );
    assert!(lines.contains(&format!("ip -6 addr del {VIP_NET} dev {IF}")));
    assert!(lines.contains(&format!("ip -6 route del fd00:abcd::9/128 dev {IF}")));
    assert!(
        !lines.iter().any(|l| l.contains("route replace")),
        "the route to peer 3 is there already: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("fe80")));
    let k = r.kernel.lock().unwrap();
    let link = &k.links[IF];
    assert_eq!(link.peers.len(), 1);
    assert_eq!(
        link.addrs.iter().collect::<Vec<_>>(),
        vec!["fd00:abcd::1/128"]
    );
}

#[test]
fn a_held_vip_waits_for_its_interface_and_a_restarted_holder_keeps_it() {
    let mut r = rig(true, None);
    // Before any config: nothing to put it on yet.
    r.plane.hold_vip(Some(NET), VIP).unwrap();
    assert!(drain(&r.calls).is_empty());
    let mut cfg = two_peers(1);
    cfg.peers[0]
        .allowed_ips
        .retain(|n| n.to_string() != VIP_NET);
    r.plane.apply_all(&[cfg]);
    let lines = drain(&r.calls);
    assert_eq!(
        lines.last().unwrap(),
        &format!("ip -6 addr replace {VIP_NET} dev {IF}")
    );
    assert!(!lines.iter().any(|l| l.contains("addr del")), "{lines:?}");
    assert!(r.kernel.lock().unwrap().links[IF].addrs.contains(VIP_NET));
    assert!(r.plane.hold_vip(Some(NET), "10.0.0.1").is_err());
}

#[test]
fn forwarding_is_switched_on_for_a_gateway() {
    let mut r = rig(true, None);
    let mut cfg = two_peers(1);
    cfg.forwarding = true;
    r.plane.apply_all(&[cfg]);
    let k = r.kernel.lock().unwrap();
    assert!(k.sysctls.contains("net.ipv6.conf.all.forwarding=1"));
    assert!(k.sysctls.contains("net.ipv4.ip_forward=1"));
}

#[test]
fn without_kernel_wireguard_the_userspace_command_makes_the_interface() {
    let Rig {
        calls, plane, dir, ..
    } = rig(false, None);
    let mut plane = plane.with_userspace("boringtun-cli");
    assert!(plane.apply_all(&[two_peers(1)]));
    let calls = calls.lock().unwrap().clone();
    let start = calls
        .iter()
        .find(|c| c.program == "boringtun-cli")
        .expect("userspace started");
    assert_eq!(start.args, vec!["--disable-drop-privileges", IF]);
    assert_eq!(start.env_value("WG_SUDO"), Some("1"));
    assert!(dir.path().join(format!("{IF}.sock")).exists());
    assert_eq!(plane.applied_revisions()[0].revision, 1);
}

#[test]
fn without_any_wireguard_the_error_names_both_options() {
    let mut r = rig(false, None);
    assert!(!r.plane.apply_all(&[two_peers(1)]));
    assert!(r.plane.applied_revisions().is_empty());
    match r.plane.apply(&two_peers(1)) {
        Err(e @ DataPlaneError::NoWireguard { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("--wireguard-userspace") && text.contains("kernel module"),
                "{text}"
            );
            assert!(text.contains("Unknown device type"), "{text}");
        }
        other => panic!("expected NoWireguard, got {other:?}"),
    }
}

#[test]
fn a_userspace_peer_is_replaced_not_modified_the_gaining_peer_first() {
    let Rig {
        kernel,
        calls,
        plane,
        dir: _dir,
    } = rig(false, None);
    let mut plane = plane.with_userspace("boringtun-cli");
    assert!(plane.apply_all(&[two_peers(1)]));
    let first = drain(&calls);
    let sets: Vec<&String> = first.iter().filter(|l| l.starts_with("wg set")).collect();
    assert_eq!(sets.len(), 3, "settings, then one per peer: {sets:?}");
    assert!(sets[0].ends_with("wireguard.key"), "{}", sets[0]);
    let moved = config(
        2,
        vec![
            peer(2, &["fd00:abcd::2/128", "10.42.1.0/24"]),
            peer(3, &["fd00:abcd::3/128", VIP_NET]),
        ],
    );
    assert!(plane.apply_all(&[moved]));
    // The peer that gains the VIP is replaced first: while it is away the
    // VIP is still routed to its old holder. Then the peer that lost it.
    assert_eq!(
        drain(&calls),
        vec![
            format!("ip link show {IF}"),
            format!("wg set {IF} peer {} remove", key(3)),
            format!(
                "wg set {IF} peer {} endpoint 10.99.0.3:51820 persistent-keepalive 25 allowed-ips fd00:abcd::3/128,{VIP_NET}",
                key(3)
            ),
            format!("wg set {IF} peer {} remove", key(2)),
            format!(
                "wg set {IF} peer {} endpoint 10.99.0.2:51820 persistent-keepalive 25 allowed-ips fd00:abcd::2/128,10.42.1.0/24",
                key(2)
            ),
        ]
    );
    assert_eq!(plane.applied_revisions()[0].revision, 2);
    let k = kernel.lock().unwrap();
    assert!(k.links[IF].peers[&key(3)].1.contains(&VIP_NET.to_string()));
}

#[test]
fn a_userspace_interface_nobody_answers_for_is_made_again() {
    let kernel: Shared = Arc::new(Mutex::new(Kernel::default()));
    kernel.lock().unwrap().links.insert(
        IF.into(),
        Link {
            up: true,
            userspace: true,
            ..Link::default()
        },
    );
    let Rig {
        calls,
        plane,
        dir: _dir,
        ..
    } = rig(false, Some(kernel));
    let mut plane = plane.with_userspace("boringtun-cli");
    assert!(plane.apply_all(&[two_peers(1)]));
    let lines = drain(&calls);
    assert_eq!(
        lines[..4],
        [
            format!("ip link show {IF}"),
            format!("wg show {IF} listen-port"),
            format!("ip link del {IF}"),
            format!("ip link add {IF} type wireguard"),
        ]
    );
    assert!(lines[4].starts_with("boringtun-cli"), "{lines:?}");
    assert_eq!(plane.applied_revisions()[0].revision, 1);
}

#[test]
fn a_reply_without_a_network_stops_its_report_but_not_its_interface() {
    let mut r = rig(true, None);
    r.plane.apply_all(&[two_peers(1)]);
    drain(&r.calls);
    assert!(!r.plane.apply_all(&[]));
    assert!(r.plane.applied_revisions().is_empty());
    assert!(drain(&r.calls).is_empty(), "nothing torn down");
    // Listed again at the same revision: nothing to do.
    assert!(!r.plane.apply_all(&[two_peers(1)]));
    assert_eq!(drain(&r.calls), vec![format!("ip link show {IF}")]);
    assert_eq!(r.plane.applied_revisions()[0].revision, 1);
}
