//! The agent's data plane: the node's WireGuard key ([`key`]), and
//! [`DataPlane`], which applies each network's desired
//! [`WireguardConfig`] with the standard tools (`wg`, `ip`, `sysctl`) and
//! puts the virtual IPs this node holds on the network's interface.
//!
//! Every command goes through a [`CommandRunner`], so tests record them
//! ([`crate::driver::runner::RecordingRunner`]) and a node runs them
//! ([`runner::QuickRunner`]). The interface is a kernel WireGuard link
//! when the kernel has the module, else a userspace implementation
//! (`boringtun-cli`) started by the agent; `wg` talks to either.
//!
//! Applying is idempotent and incremental: the first apply of a network in
//! this process sets everything (and removes what does not belong: stale
//! peers, routes and addresses); later revisions only run the commands for
//! what changed since the last applied config (a VIP moving between peers
//! is one `wg set`). A revision already applied, on an interface that is
//! still up, runs nothing but the check.

mod apply;
pub mod key;
mod parse;
pub mod runner;
pub mod simulated;

pub use key::{KeyError, WireguardKey};

use crate::driver::runner::CommandRunner;
use crate::driver::RuntimeError;
use powernode_events::wireguard::WireguardConfig;
use powernode_protocol::AppliedConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// Where userspace WireGuard implementations put their UAPI sockets.
pub const DEFAULT_SOCKET_DIR: &str = "/run/wireguard";

/// Why applying failed.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// A command failed.
    #[error(transparent)]
    Command(#[from] RuntimeError),
    /// The interface could not be made with either method.
    #[error("cannot create WireGuard interface {interface}: `ip link add {interface} type wireguard` failed ({detail}) and no userspace WireGuard is configured: load the kernel module or pass --wireguard-userspace boringtun-cli (env POWERNODE_WG_USERSPACE)")]
    NoWireguard {
        /// The interface.
        interface: String,
        /// Why the kernel link failed.
        detail: String,
    },
    /// The userspace implementation started but its socket never appeared.
    #[error("userspace WireGuard `{command}` for {interface} did not create {socket} within 2 s")]
    UserspaceSilent {
        /// The command.
        command: String,
        /// The interface.
        interface: String,
        /// The UAPI socket expected.
        socket: String,
    },
    /// A virtual IP that is not an IPv6 address.
    #[error("virtual IP {0:?} is not an IPv6 address")]
    BadVip(String),
}

/// The data plane of one node: its key, its endpoint, and what it applied.
pub struct DataPlane {
    key: WireguardKey,
    endpoint: String,
    userspace: Option<String>,
    socket_dir: PathBuf,
    runner: Box<dyn CommandRunner>,
    /// Per network id: the config last applied in this process.
    applied: BTreeMap<String, WireguardConfig>,
    /// The networks the last reply listed (only those are reported).
    listed: BTreeSet<String>,
    /// Per network id: its interface, from the newest desired config.
    interfaces: BTreeMap<String, String>,
    /// The virtual IPs this node holds, with their network when known.
    local_vips: BTreeMap<Ipv6Addr, Option<String>>,
    /// (interface, VIP) addresses put on an interface by this process.
    on_interface: BTreeSet<(String, Ipv6Addr)>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("public_key", &self.key.public_key())
            .field("endpoint", &self.endpoint)
            .field("userspace", &self.userspace)
            .field("applied", &self.applied_revisions())
            .finish_non_exhaustive()
    }
}

impl DataPlane {
    /// A data plane with `key`, reachable at the underlay `endpoint`
    /// (`address:port`, already checked), running commands with `runner`.
    pub fn new(key: WireguardKey, endpoint: String, runner: Box<dyn CommandRunner>) -> Self {
        Self {
            key,
            endpoint,
            userspace: None,
            socket_dir: PathBuf::from(DEFAULT_SOCKET_DIR),
            runner,
            applied: BTreeMap::new(),
            listed: BTreeSet::new(),
            interfaces: BTreeMap::new(),
            local_vips: BTreeMap::new(),
            on_interface: BTreeSet::new(),
        }
    }

    /// Starts `command <interface>` (e.g. `boringtun-cli`, run as
    /// `WG_SUDO=1 boringtun-cli --disable-drop-privileges <if>`) when the
    /// kernel cannot make a WireGuard link.
    pub fn with_userspace(mut self, command: impl Into<String>) -> Self {
        self.userspace = Some(command.into()).filter(|c: &String| !c.trim().is_empty());
        self
    }

    /// Where the userspace implementation's UAPI socket appears
    /// (default [`DEFAULT_SOCKET_DIR`]).
    pub fn with_socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.socket_dir = dir.into();
        self
    }

    /// The node's key.
    pub fn key(&self) -> &WireguardKey {
        &self.key
    }

    /// The underlay endpoint the node registers.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The revision applied on each network's interface, as a heartbeat
    /// reports it.
    pub fn applied_revisions(&self) -> Vec<AppliedConfig> {
        self.applied
            .values()
            .filter(|c| self.listed.contains(&c.network_id))
            .map(|c| AppliedConfig {
                network_id: c.network_id.clone(),
                revision: c.revision,
            })
            .collect()
    }

    /// Applies every desired config of a heartbeat reply; a network that
    /// fails is logged, not reported as applied, and tried again with the
    /// next reply. Networks no longer listed are no longer reported (their
    /// interface stays as it is: a reply from a lagging replica may omit
    /// them). Returns whether anything was (re)applied.
    pub fn apply_all(&mut self, configs: &[WireguardConfig]) -> bool {
        self.listed = configs.iter().map(|c| c.network_id.clone()).collect();
        let mut changed = false;
        for config in configs {
            match self.apply(config) {
                Ok(did) => changed |= did,
                Err(e) => {
                    self.applied.remove(&config.network_id);
                    tracing::warn!(network = %config.network_id, interface = %config.interface, revision = config.revision, error = %e, "could not apply the WireGuard config; retrying with the next heartbeat");
                }
            }
        }
        changed
    }

    /// Puts `vip` (held by this node) on the interface of `network_id`
    /// (or of the only network when the duty names none). Before that
    /// interface is configured the address waits and is added by the
    /// network's first apply.
    pub fn hold_vip(&mut self, network_id: Option<&str>, vip: &str) -> Result<(), DataPlaneError> {
        let addr: Ipv6Addr = vip
            .parse()
            .map_err(|_| DataPlaneError::BadVip(vip.to_owned()))?;
        let network = network_id.map(str::to_owned);
        self.local_vips.insert(addr, network.clone());
        let Some(interface) = self.interface_of(network.as_deref()) else {
            return Ok(());
        };
        if !self.applied.values().any(|c| c.interface == interface) {
            return Ok(());
        }
        self.add_vip_address(&interface, addr)
    }

    /// Takes `vip` off the interface of `network_id` (absent is fine).
    pub fn release_vip(
        &mut self,
        network_id: Option<&str>,
        vip: &str,
    ) -> Result<(), DataPlaneError> {
        let addr: Ipv6Addr = vip
            .parse()
            .map_err(|_| DataPlaneError::BadVip(vip.to_owned()))?;
        let known = self.local_vips.remove(&addr).flatten();
        let network = network_id.map(str::to_owned).or(known);
        let Some(interface) = self.interface_of(network.as_deref()) else {
            // Not configured yet: the first apply removes any address
            // no held VIP accounts for.
            return Ok(());
        };
        self.del_vip_address(&interface, addr)
    }

    /// The interface of `network_id`, or of the only known network.
    fn interface_of(&self, network_id: Option<&str>) -> Option<String> {
        match network_id {
            Some(id) => self.interfaces.get(id).cloned(),
            None if self.interfaces.len() == 1 => self.interfaces.values().next().cloned(),
            None => None,
        }
    }

    /// The VIPs this node holds on `network_id`'s interface.
    fn vips_of(&self, network_id: &str) -> BTreeSet<Ipv6Addr> {
        let only = self.interfaces.len() == 1;
        self.local_vips
            .iter()
            .filter(|(_, n)| match n {
                Some(n) => n == network_id,
                None => only,
            })
            .map(|(a, _)| *a)
            .collect()
    }

    /// Runs one command (`program` and `args`).
    fn run(&mut self, program: &str, args: &[&str]) -> Result<String, RuntimeError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Ok(self.runner.run(program, &args, &[])?.stdout)
    }

    fn add_vip_address(&mut self, interface: &str, addr: Ipv6Addr) -> Result<(), DataPlaneError> {
        let cidr = format!("{addr}/128");
        self.run("ip", &["-6", "addr", "replace", &cidr, "dev", interface])?;
        self.on_interface.insert((interface.to_owned(), addr));
        Ok(())
    }

    fn del_vip_address(&mut self, interface: &str, addr: Ipv6Addr) -> Result<(), DataPlaneError> {
        let cidr = format!("{addr}/128");
        match self.run("ip", &["-6", "addr", "del", &cidr, "dev", interface]) {
            Ok(_) => {}
            // Already gone, or the interface is gone: nothing to remove.
            Err(RuntimeError::Command { detail, .. })
                if detail.contains("Cannot assign requested address")
                    || detail.contains("does not exist")
                    || detail.contains("Cannot find device") => {}
            Err(e) => return Err(e.into()),
        }
        self.on_interface.remove(&(interface.to_owned(), addr));
        Ok(())
    }
}
