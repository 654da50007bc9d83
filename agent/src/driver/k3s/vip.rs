//! Virtual IPs on a real node: the holder of a VIP has it as a `/128` on
//! the SD-WAN's WireGuard interface.
//!
//! * hold: `ip -6 addr replace <vip>/128 dev <iface>` (idempotent; holding
//!   again at a newer generation runs the same command);
//! * release: `ip -6 addr del <vip>/128 dev <iface>`; an address that is not
//!   there ("Cannot assign requested address") or an interface that does
//!   not exist ("Cannot find device") is already released, not an error.
//!   Any other failure (e.g. "Operation not permitted", also exit status 2)
//!   is an error: the address may still be on the node.

use super::{bare_host, invalid, K3sRuntime};
use crate::driver::RuntimeError;

/// The interface virtual IPs go on unless told otherwise.
pub const DEFAULT_VIP_INTERFACE: &str = "wg0";

/// What `ip` prints when the address to delete is not on the interface.
const NOT_THERE: &[&str] = &["Cannot assign requested address", "Cannot find device"];

impl K3sRuntime {
    /// `ip -6 addr replace <vip>/128 dev <iface>`.
    pub(super) fn add_vip(&mut self, vip: &str, generation: u64) -> Result<(), RuntimeError> {
        let (address, interface) = self.vip_args(vip)?;
        tracing::info!(vip = %address, %interface, generation, "adding virtual IP");
        self.run(
            "ip",
            &["-6", "addr", "replace", &address, "dev", &interface],
            &[],
        )
    }

    /// `ip -6 addr del <vip>/128 dev <iface>`; not there is released.
    pub(super) fn del_vip(&mut self, vip: &str) -> Result<(), RuntimeError> {
        let (address, interface) = self.vip_args(vip)?;
        match self.run(
            "ip",
            &["-6", "addr", "del", &address, "dev", &interface],
            &[],
        ) {
            Err(RuntimeError::Command { detail, .. })
                if NOT_THERE.iter().any(|m| detail.contains(m)) =>
            {
                tracing::debug!(vip = %address, %interface, "virtual IP was not on the node");
                Ok(())
            }
            Ok(()) => {
                tracing::info!(vip = %address, %interface, "removed virtual IP");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `<vip>/128` and the interface, both checked (an address that is not
    /// IPv6, or an interface name the kernel would refuse, is an error
    /// before anything runs).
    fn vip_args(&self, vip: &str) -> Result<(String, String), RuntimeError> {
        let bare = bare_host(vip);
        let bare = bare.strip_suffix("/128").unwrap_or(bare);
        let address: std::net::Ipv6Addr = bare
            .parse()
            .map_err(|_| invalid(format!("virtual IP {vip:?} is not an IPv6 address")))?;
        let interface = self.vip_interface.clone();
        let valid = !interface.is_empty()
            && interface.len() < 16
            && !interface.starts_with('-')
            && interface
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !valid {
            return Err(invalid(format!(
                "{interface:?} is not a network interface name"
            )));
        }
        Ok((format!("{address}/128"), interface))
    }
}
