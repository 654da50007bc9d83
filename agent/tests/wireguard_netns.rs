//! Three data planes in three network namespaces over an underlay bridge,
//! each with a userspace WireGuard (`boringtun-cli`): a client reaches a
//! VIP through the tunnel, the VIP moves to another holder, and the client
//! reaches the new holder. Needs root, `/dev/net/tun`, `wg` and
//! `boringtun-cli` (`scripts/test` installs the tools when missing).

use ipnet::IpNet;
use powernode_agent::driver::runner::{CommandOutput, CommandRunner};
use powernode_agent::driver::RuntimeError;
use powernode_agent::wireguard::runner::QuickRunner;
use powernode_agent::wireguard::{DataPlane, WireguardKey};
use powernode_events::wireguard::{WireguardConfig, WireguardPeer};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VIP: &str = "fd00:98::100";

/// Runs every command inside a network namespace.
struct InNetns {
    ns: String,
    inner: QuickRunner,
}

impl CommandRunner for InNetns {
    fn run(
        &mut self,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<CommandOutput, RuntimeError> {
        let mut all = vec![
            "netns".to_owned(),
            "exec".into(),
            self.ns.clone(),
            program.into(),
        ];
        all.extend(args.iter().cloned());
        self.inner.run("ip", &all, env)
    }
}

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap()
        .success()
}

struct Node {
    ns: String,
    iface: String,
    address: String,
    endpoint: String,
    key: WireguardKey,
    plane: DataPlane,
    _dir: tempfile::TempDir,
}

fn node(n: u8) -> Node {
    let ns = format!("pnag-{n}");
    let ul = format!("10.98.0.{n}");
    assert!(sh(&format!(
        "ip netns add {ns} && ip link add pnag-v{n} type veth peer name eth0 netns {ns} \
         && ip link set pnag-v{n} netns pnag-ul && ip -n pnag-ul link set pnag-v{n} master br0 up \
         && ip -n {ns} addr add {ul}/24 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up"
    )));
    let dir = tempfile::tempdir().unwrap();
    let key = WireguardKey::load_or_create(dir.path()).unwrap();
    let userspace = std::env::var("POWERNODE_WG_USERSPACE")
        .unwrap_or_else(|_| "/root/.cargo/bin/boringtun-cli".into());
    let endpoint = format!("{ul}:51820");
    let plane = DataPlane::new(
        key.clone(),
        endpoint.clone(),
        Box::new(InNetns {
            ns: ns.clone(),
            inner: QuickRunner::new(),
        }),
    )
    .with_userspace(userspace);
    Node {
        // One name per node: the UAPI sockets share this mount namespace.
        iface: format!("wg-pnag{n}"),
        address: format!("fd00:98::{n}"),
        ns,
        endpoint,
        key,
        plane,
        _dir: dir,
    }
}

fn config(me: &Node, revision: u64, peers: &[(&Node, Vec<String>)]) -> WireguardConfig {
    WireguardConfig {
        network_id: "net-1".into(),
        interface: me.iface.clone(),
        address: me.address.parse().unwrap(),
        listen_port: 51820,
        revision,
        forwarding: false,
        peers: peers
            .iter()
            .map(|(p, extra)| WireguardPeer {
                id: p.ns.clone(),
                public_key: p.key.public_key().to_owned(),
                endpoint: Some(p.endpoint.clone()),
                persistent_keepalive: Some(25),
                allowed_ips: std::iter::once(format!("{}/128", p.address))
                    .chain(extra.iter().cloned())
                    .map(|s| s.parse::<IpNet>().unwrap())
                    .collect(),
            })
            .collect(),
    }
}

/// A TCP server in `ns` that answers its name to every connection.
fn server(ns: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::',18080))\ns.listen()\nwhile True:\n  c,_=s.accept(); c.sendall(b'{ns}'); c.close()"
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Who answers at the VIP, from `ns` (None when nothing does within 1 s).
fn who(ns: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c"])
        .arg(format!(
            "import socket\ntry:\n  s=socket.create_connection(('{VIP}',18080),timeout=1); print(s.recv(64).decode())\nexcept Exception as e: print('')"
        ))
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
}

fn until_answered_by(ns: &str, holder: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if who(ns).as_deref() == Some(holder) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{holder} did not answer at the VIP within {within:?}");
}

fn cleanup() {
    for ns in ["pnag-1", "pnag-2", "pnag-3"] {
        let _ = sh(&format!("for p in $(ip netns pids {ns} 2>/dev/null); do kill -9 $p; done; ip netns del {ns} 2>/dev/null"));
    }
    let _ = sh("ip netns del pnag-ul 2>/dev/null");
}

#[test]
fn a_client_follows_the_vip_to_its_new_holder() {
    cleanup();
    assert!(sh("ip netns add pnag-ul && ip -n pnag-ul link add br0 type bridge && ip -n pnag-ul link set br0 up"));
    let (mut a, mut b, mut c) = (node(1), node(2), node(3));
    let vip = format!("{VIP}/128");
    let servers = [server(&b.ns), server(&c.ns)];

    // Generation 1: b holds the VIP.
    b.plane.hold_vip(Some("net-1"), VIP).unwrap();
    let ca = config(&a, 1, &[(&b, vec![vip.clone()]), (&c, vec![])]);
    let cb = config(&b, 1, &[(&a, vec![]), (&c, vec![])]);
    let cc = config(&c, 1, &[(&a, vec![]), (&b, vec![vip.clone()])]);
    a.plane.apply(&ca).unwrap();
    b.plane.apply(&cb).unwrap();
    c.plane.apply(&cc).unwrap();
    let first = until_answered_by(&a.ns, &b.ns, Duration::from_secs(10));
    println!("b answers at the VIP after {first:?}");

    // Generation 2: c holds it. New holder first, then every peer.
    let started = Instant::now();
    c.plane.hold_vip(Some("net-1"), VIP).unwrap();
    c.plane
        .apply(&config(&c, 2, &[(&a, vec![]), (&b, vec![])]))
        .unwrap();
    a.plane
        .apply(&config(&a, 2, &[(&b, vec![]), (&c, vec![vip.clone()])]))
        .unwrap();
    b.plane.release_vip(Some("net-1"), VIP).unwrap();
    b.plane
        .apply(&config(&b, 2, &[(&a, vec![]), (&c, vec![vip.clone()])]))
        .unwrap();
    let applied = started.elapsed();
    let moved = until_answered_by(&a.ns, &c.ns, Duration::from_secs(10));
    println!("applied on all three in {applied:?}; c answers {moved:?} later");
    assert!(applied < Duration::from_millis(500), "{applied:?}");
    // b answers nothing at the VIP any more, even from itself.
    assert_ne!(who(&b.ns).as_deref(), Some(b.ns.as_str()));

    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    cleanup();
}
