//! The data plane with real parts (issue 15): network namespaces on an
//! underlay bridge, userspace WireGuard (`boringtun-cli`), real
//! `powernode-agent`s and the real `kubectl`.
//!
//! Runs as root with `/dev/net/tun`, `wg`, `wg-quick`, `boringtun-cli` and
//! `kubectl` on `PATH` (`scripts/test` installs them); without them the
//! tests fail naming what is missing.
//!
//! `cargo nextest run -p powernode-tests --test dataplane --no-capture`
//! shows the timings.

mod scenario;

use anyhow::{ensure, Context as _};
use powernode_tests::netns::wireguard::{KeyPair, PeerSpec, Tunnel, WgQuick};
use powernode_tests::netns::Underlay;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn the_underlay_carries_a_userspace_wireguard_tunnel() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("pn-netns-").tempdir()?;
    let underlay = Underlay::new()?;
    let names = [underlay.netns().to_string()];
    let a = underlay.host("a")?;
    let b = underlay.host("b")?;
    let (ka, kb) = (KeyPair::generate()?, KeyPair::generate()?);
    ensure!(
        !format!("{ka:?}").contains(&ka.private),
        "a key pair's Debug shows its private key"
    );

    // Host a: boringtun configured by hand with `wg set` and `ip`.
    let started = Instant::now();
    let tunnel = Tunnel::start(&a, "wg0", dir.path())?;
    tunnel.configure(
        &a,
        &ka,
        51820,
        "fd77::1/128",
        &[PeerSpec {
            public_key: kb.public.clone(),
            endpoint: Some(format!("{}:51820", b.addr)),
            allowed_ips: vec!["fd77::2/128".into()],
        }],
        dir.path(),
    )?;
    // Host b: a wg-quick file, brought up by the real wg-quick.
    let config = format!(
        "[Interface]\nPrivateKey = {}\nAddress = fd77::2/128\nListenPort = 51820\n\n\
         [Peer]\nPublicKey = {}\nEndpoint = {}:51820\nAllowedIPs = fd77::1/128\n",
        kb.private, ka.public, a.addr
    );
    let _quick = WgQuick::up(&b, "wgq", &config, dir.path())?;
    println!(
        "two userspace WireGuard interfaces up: {:?}",
        started.elapsed()
    );

    // A TCP connection from a to b's overlay address crosses the tunnel.
    let listener = b.in_netns(|| TcpListener::bind("[::]:7000"))??;
    let server = std::thread::spawn(move || -> anyhow::Result<SocketAddr> {
        let (mut s, from) = listener.accept()?;
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello)?;
        ensure!(&hello == b"hello", "b read {hello:?}");
        s.write_all(b"world")?;
        Ok(from)
    });
    let connected = Instant::now();
    let reply = a.in_netns(|| -> anyhow::Result<[u8; 5]> {
        let to: SocketAddr = "[fd77::2]:7000".parse()?;
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .context("connecting to b through the tunnel")?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"hello")?;
        let mut reply = [0u8; 5];
        s.read_exact(&mut reply)?;
        Ok(reply)
    })??;
    println!(
        "TCP over the tunnel (handshake included): {:?}",
        connected.elapsed()
    );
    ensure!(&reply == b"world", "a read {reply:?}");
    let from = server
        .join()
        .map_err(|_| anyhow::anyhow!("the listener thread panicked"))??;
    ensure!(
        from.ip().to_string() == "fd77::1",
        "b saw the connection from {from}, not a's overlay address"
    );
    let transfer = a.run("wg", &["show", "wg0", "transfer"])?;
    let received: u64 = transfer
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ensure!(
        transfer.starts_with(&kb.public) && received > 0,
        "wg show on a: bytes received from b: {transfer:?}"
    );
    ensure!(
        b.addresses("wgq")?.contains(&"fd77::2/128".to_string()),
        "wg-quick put the address on b's interface: {:?}",
        b.addresses("wgq")?
    );

    // An interface taken down keeps its addresses (a dead holder's VIP stays
    // until its agent comes back and removes it).
    a.run("ip", &["link", "set", "wg0", "down"])?;
    ensure!(
        a.addresses("wg0")?.contains(&"fd77::1/128".to_string()),
        "the address went with the link: {:?}",
        a.addresses("wg0")?
    );

    // Everything goes with the values.
    let hosts = [a.netns().to_string(), b.netns().to_string()];
    drop(_quick);
    drop(tunnel);
    drop((a, b));
    drop(underlay);
    for ns in names.iter().chain(&hosts) {
        ensure!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} is still there after drop"
        );
    }
    Ok(())
}
