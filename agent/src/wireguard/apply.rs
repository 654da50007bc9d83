//! Applying one network's [`WireguardConfig`]: make the interface if it is
//! missing, then either set everything (the first apply in this process,
//! or after the interface came back) or only what changed since the config
//! applied last.

use super::{parse, DataPlane, DataPlaneError};
use crate::driver::RuntimeError;
use ipnet::IpNet;
use powernode_events::wireguard::{WireguardConfig, WireguardPeer};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The UDP port a handshake-starting datagram goes to (discard).
const KICK_PORT: u16 = 9;

/// How long a userspace WireGuard may take to create its UAPI socket.
const USERSPACE_WAIT: Duration = Duration::from_secs(2);

impl DataPlane {
    /// Applies one network's `cfg` (see [`DataPlane::apply_all`] for a
    /// whole reply); `Ok(true)` when commands changed anything.
    pub fn apply(&mut self, cfg: &WireguardConfig) -> Result<bool, DataPlaneError> {
        let iface = cfg.interface.clone();
        self.interfaces
            .insert(cfg.network_id.clone(), cfg.interface.clone());
        let mut link = self.link_state(&iface);
        let prev = self
            .applied
            .get(&cfg.network_id)
            .filter(|p| p.interface == cfg.interface)
            .cloned();
        if let (Some(true), Some(p)) = (link, &prev) {
            if p.revision >= cfg.revision {
                if p.revision > cfg.revision {
                    tracing::debug!(network = %cfg.network_id, applied = p.revision, offered = cfg.revision, "ignoring an older WireGuard config");
                }
                self.ensure_vips(cfg)?;
                return Ok(false);
            }
        }
        if link.is_some() && prev.is_none() && self.userspace.is_some() && !self.reachable(&iface) {
            // A userspace interface whose UAPI socket this process cannot
            // see (its implementation died, or runs in another mount
            // namespace): make it again.
            tracing::warn!(interface = %iface, "the interface exists but `wg` cannot reach it; recreating it");
            self.run("ip", &["link", "del", &iface])?;
            link = None;
        }
        if link.is_none() {
            self.create(&iface)?;
            self.on_interface.retain(|(i, _)| *i != iface);
        }
        let started = Instant::now();
        match (link, prev) {
            (Some(true), Some(prev)) => self.update(&prev, cfg)?,
            _ => self.full(cfg)?,
        }
        self.applied.insert(cfg.network_id.clone(), cfg.clone());
        self.ensure_vips(cfg)?;
        tracing::info!(network = %cfg.network_id, interface = %iface, revision = cfg.revision, peers = cfg.peers.len(), elapsed_ms = started.elapsed().as_millis() as u64, "applied WireGuard config");
        Ok(true)
    }

    /// `None` when the interface does not exist, else whether it is up.
    fn link_state(&mut self, iface: &str) -> Option<bool> {
        self.run("ip", &["link", "show", iface])
            .ok()
            .map(|out| parse::link_up(&out))
    }

    /// Whether `wg` can talk to `iface` (kernel, or a visible UAPI socket).
    fn reachable(&mut self, iface: &str) -> bool {
        self.run("wg", &["show", iface, "listen-port"]).is_ok()
    }

    /// Makes the interface: a kernel link, else the userspace command.
    fn create(&mut self, iface: &str) -> Result<(), DataPlaneError> {
        let kernel = match self.run("ip", &["link", "add", iface, "type", "wireguard"]) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let Some(command) = self.userspace.clone() else {
            return Err(DataPlaneError::NoWireguard {
                interface: iface.to_owned(),
                detail: kernel.to_string(),
            });
        };
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or_default().to_owned();
        let mut args: Vec<String> = words.map(str::to_owned).collect();
        args.extend(["--disable-drop-privileges".to_owned(), iface.to_owned()]);
        let socket = self.socket_dir.join(format!("{iface}.sock"));
        // A socket left by an implementation that died is not the new one.
        let _ = std::fs::remove_file(&socket);
        self.runner
            .run(&program, &args, &[("WG_SUDO".to_owned(), "1".to_owned())])?;
        let deadline = Instant::now() + USERSPACE_WAIT;
        while !socket.exists() {
            if Instant::now() >= deadline {
                return Err(DataPlaneError::UserspaceSilent {
                    command,
                    interface: iface.to_owned(),
                    socket: socket.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!(interface = %iface, %command, "started userspace WireGuard");
        Ok(())
    }

    /// Sets everything and removes what does not belong.
    fn full(&mut self, cfg: &WireguardConfig) -> Result<(), DataPlaneError> {
        let iface = cfg.interface.as_str();
        let current = parse::peers(&self.run("wg", &["show", iface, "peers"])?);
        let desired: BTreeSet<&str> = cfg.peers.iter().map(|p| p.public_key.as_str()).collect();
        let port = cfg.listen_port.to_string();
        let key_file = self.key.path().display().to_string();
        let head = vec![
            "listen-port".to_owned(),
            port,
            "private-key".to_owned(),
            key_file,
        ];
        let userspace = self.is_userspace(iface);
        // A userspace peer is never modified in place: it is removed and
        // added again (see `set_peers`).
        let removals: Vec<String> = current
            .into_iter()
            .filter(|k| userspace || !desired.contains(k.as_str()))
            .collect();
        let adds: Vec<(&WireguardPeer, Option<&WireguardPeer>)> =
            cfg.peers.iter().map(|p| (p, None)).collect();
        self.set_peers(iface, head, removals, adds)?;
        let own = format!("{}/128", cfg.address);
        self.run("ip", &["-6", "addr", "replace", &own, "dev", iface])?;
        let keep = self.vips_of(&cfg.network_id);
        let addrs = parse::global_v6(&self.run("ip", &["-6", "addr", "show", "dev", iface])?);
        for addr in addrs {
            if addr != cfg.address && !keep.contains(&addr) {
                tracing::info!(interface = %iface, %addr, "removing an address no held VIP accounts for");
                self.del_vip_address(iface, addr)?;
            }
        }
        self.run("ip", &["link", "set", iface, "up"])?;
        let wanted = routes_of(cfg);
        let mut present = BTreeSet::new();
        for (family, v6) in [("-6", true), ("-4", false)] {
            let shown = self.run("ip", &[family, "route", "show", "dev", iface])?;
            for route in parse::routes(&shown, v6) {
                if route.kernel || self.is_local(cfg, &route.net) {
                    continue;
                }
                if wanted.contains(&route.net) {
                    present.insert(route.net);
                } else {
                    self.del_route(iface, &route.net)?;
                }
            }
        }
        for net in wanted.difference(&present) {
            self.replace_route(iface, net)?;
        }
        if cfg.forwarding {
            self.forwarding(wanted.iter().any(|n| matches!(n, IpNet::V4(_))))?;
        }
        if userspace {
            Self::kick(&cfg.peers.iter().collect::<Vec<_>>());
        }
        Ok(())
    }

    /// Runs only the commands for what changed from `prev` to `cfg`.
    fn update(
        &mut self,
        prev: &WireguardConfig,
        cfg: &WireguardConfig,
    ) -> Result<(), DataPlaneError> {
        let iface = cfg.interface.as_str();
        let before: BTreeMap<&str, &WireguardPeer> = prev
            .peers
            .iter()
            .map(|p| (p.public_key.as_str(), p))
            .collect();
        let after: BTreeSet<&str> = cfg.peers.iter().map(|p| p.public_key.as_str()).collect();
        let userspace = self.is_userspace(iface);
        let mut head = Vec::new();
        if prev.listen_port != cfg.listen_port {
            head.extend(["listen-port".to_owned(), cfg.listen_port.to_string()]);
        }
        let removals: Vec<String> = before
            .keys()
            .filter(|k| !after.contains(*k))
            .map(|k| (*k).to_owned())
            .collect();
        let mut readded = Vec::new();
        if userspace {
            readded = self.update_userspace(iface, head, removals, &before, cfg)?;
        } else {
            let mut adds = Vec::new();
            for peer in &cfg.peers {
                let old = before.get(peer.public_key.as_str()).copied();
                if old != Some(peer) {
                    adds.push((peer, old));
                }
            }
            self.set_peers(iface, head, removals, adds)?;
        }
        if prev.address != cfg.address {
            let own = format!("{}/128", cfg.address);
            self.run("ip", &["-6", "addr", "replace", &own, "dev", iface])?;
            self.del_vip_address(iface, prev.address)?;
        }
        let (old, new) = (routes_of(prev), routes_of(cfg));
        for net in old.difference(&new) {
            if !self.is_local(cfg, net) {
                self.del_route(iface, net)?;
            }
        }
        for net in new.difference(&old) {
            self.replace_route(iface, net)?;
        }
        let v4 = |routes: &BTreeSet<IpNet>| routes.iter().any(|n| matches!(n, IpNet::V4(_)));
        if cfg.forwarding && (!prev.forwarding || (v4(&new) && !v4(&old))) {
            self.forwarding(v4(&new))?;
        }
        Self::kick(&readded);
        Ok(())
    }

    /// The peer changes on a userspace interface, which cannot modify a
    /// peer in place: each changed peer is removed and added back on its
    /// own. Peers that gain an address go first: while one is re-added,
    /// what it gains is still routed to the peer it comes from (a moving
    /// VIP stays with its old holder, which still answers, until the new
    /// holder's peer is back). Then peers that only lose addresses, then
    /// the settings and the peers that are gone.
    fn update_userspace<'c>(
        &mut self,
        iface: &str,
        head: Vec<String>,
        removals: Vec<String>,
        before: &BTreeMap<&str, &WireguardPeer>,
        cfg: &'c WireguardConfig,
    ) -> Result<Vec<&'c WireguardPeer>, DataPlaneError> {
        let gains = |peer: &WireguardPeer| match before.get(peer.public_key.as_str()) {
            None => true,
            Some(old) => peer
                .allowed_ips
                .iter()
                .any(|ip| !old.allowed_ips.contains(ip)),
        };
        let changed: Vec<&WireguardPeer> = cfg
            .peers
            .iter()
            .filter(|p| before.get(p.public_key.as_str()).copied() != Some(*p))
            .collect();
        let (gaining, losing): (Vec<&WireguardPeer>, Vec<&WireguardPeer>) =
            changed.into_iter().partition(|p| gains(p));
        let mut readded = Vec::new();
        for peer in gaining.into_iter().chain(losing) {
            if before.contains_key(peer.public_key.as_str()) {
                self.set_peers(iface, Vec::new(), vec![peer.public_key.clone()], Vec::new())?;
            }
            self.set_peers(iface, Vec::new(), Vec::new(), vec![(peer, None)])?;
            readded.push(peer);
        }
        self.set_peers(iface, head, removals, Vec::new())?;
        Ok(readded)
    }

    /// Starts a handshake with each of `peers` now: a re-added userspace
    /// peer has lost its session on this side only, and the far side keeps
    /// sending with the old one (which this side can no longer decrypt)
    /// until its own rekey timers fire, seconds later. One datagram to the
    /// peer's address makes this side handshake at once. Best effort.
    fn kick(peers: &[&WireguardPeer]) {
        for peer in peers {
            let Some(IpNet::V6(net)) = peer
                .allowed_ips
                .iter()
                .find(|n| matches!(n, IpNet::V6(v) if v.prefix_len() == 128))
            else {
                continue;
            };
            let target = std::net::SocketAddr::from((net.addr(), KICK_PORT));
            let sent = std::net::UdpSocket::bind("[::]:0").and_then(|s| s.send_to(b"", target));
            if let Err(e) = sent {
                tracing::debug!(peer = %peer.id, error = %e, "could not start a handshake");
            }
        }
    }

    /// Whether a userspace implementation serves `iface` (its UAPI socket
    /// exists).
    fn is_userspace(&self, iface: &str) -> bool {
        self.socket_dir.join(format!("{iface}.sock")).exists()
    }

    /// Runs `wg set` for interface settings (`head`), peer removals and
    /// peer additions or changes. The kernel takes it all in one command.
    /// A userspace implementation (boringtun 0.7) cannot modify an existing
    /// peer, and within one command carries a peer's `remove`, endpoint
    /// and keepalive over to the peers after it; so there the settings and
    /// removals go first, then one command per added peer.
    fn set_peers(
        &mut self,
        iface: &str,
        head: Vec<String>,
        removals: Vec<String>,
        adds: Vec<(&WireguardPeer, Option<&WireguardPeer>)>,
    ) -> Result<(), RuntimeError> {
        let start = || vec!["set".to_owned(), iface.to_owned()];
        let mut args = start();
        args.extend(head);
        for key in removals {
            args.extend(["peer".to_owned(), key, "remove".to_owned()]);
        }
        if self.is_userspace(iface) {
            if args.len() > 2 {
                self.run_owned("wg", args)?;
            }
            for (peer, old) in adds {
                let mut one = start();
                one.extend(peer_args(peer, old));
                self.run_owned("wg", one)?;
            }
            return Ok(());
        }
        for (peer, old) in adds {
            args.extend(peer_args(peer, old));
        }
        if args.len() > 2 {
            self.run_owned("wg", args)?;
        }
        Ok(())
    }

    /// Adds the held VIPs of `cfg`'s network not yet on its interface.
    fn ensure_vips(&mut self, cfg: &WireguardConfig) -> Result<(), DataPlaneError> {
        for vip in self.vips_of(&cfg.network_id) {
            if !self.on_interface.contains(&(cfg.interface.clone(), vip)) {
                self.add_vip_address(&cfg.interface, vip)?;
            }
        }
        Ok(())
    }

    /// Whether `net` is this node's own address or a VIP it holds (its
    /// route is the address's, never removed here).
    fn is_local(&self, cfg: &WireguardConfig, net: &IpNet) -> bool {
        match net {
            IpNet::V6(n) if n.prefix_len() == 128 => {
                n.addr() == cfg.address || self.local_vips.contains_key(&n.addr())
            }
            _ => false,
        }
    }

    fn replace_route(&mut self, iface: &str, net: &IpNet) -> Result<(), RuntimeError> {
        let (family, dst) = route_words(net);
        self.run("ip", &[family, "route", "replace", &dst, "dev", iface])
            .map(drop)
    }

    fn del_route(&mut self, iface: &str, net: &IpNet) -> Result<(), RuntimeError> {
        let (family, dst) = route_words(net);
        match self.run("ip", &[family, "route", "del", &dst, "dev", iface]) {
            Err(RuntimeError::Command { detail, .. }) if detail.contains("No such process") => {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    fn forwarding(&mut self, v4: bool) -> Result<(), RuntimeError> {
        self.run("sysctl", &["-w", "net.ipv6.conf.all.forwarding=1"])?;
        if v4 {
            self.run("sysctl", &["-w", "net.ipv4.ip_forward=1"])?;
        }
        Ok(())
    }

    fn run_owned(&mut self, program: &str, args: Vec<String>) -> Result<String, RuntimeError> {
        Ok(self.runner.run(program, &args, &[])?.stdout)
    }
}

/// Every allowed IP of every peer: the routes the interface carries.
fn routes_of(cfg: &WireguardConfig) -> BTreeSet<IpNet> {
    cfg.peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().map(IpNet::trunc))
        .collect()
}

/// `-6` or `-4`, and the destination as `ip` takes it.
fn route_words(net: &IpNet) -> (&'static str, String) {
    let family = match net.addr() {
        IpAddr::V6(_) => "-6",
        IpAddr::V4(_) => "-4",
    };
    (family, net.to_string())
}

/// `peer <key> [endpoint E] [persistent-keepalive K|off] allowed-ips a,b`
/// (an empty list clears the peer's allowed IPs).
fn peer_args(peer: &WireguardPeer, old: Option<&WireguardPeer>) -> Vec<String> {
    let mut args = vec!["peer".to_owned(), peer.public_key.clone()];
    if let Some(endpoint) = &peer.endpoint {
        args.extend(["endpoint".to_owned(), endpoint.clone()]);
    }
    match (
        peer.persistent_keepalive,
        old.and_then(|o| o.persistent_keepalive),
    ) {
        (Some(k), _) => args.extend(["persistent-keepalive".to_owned(), k.to_string()]),
        (None, Some(_)) => args.extend(["persistent-keepalive".to_owned(), "off".to_owned()]),
        (None, None) => {}
    }
    let ips: Vec<String> = peer
        .allowed_ips
        .iter()
        .map(|n| n.trunc().to_string())
        .collect();
    args.extend(["allowed-ips".to_owned(), ips.join(",")]);
    args
}
