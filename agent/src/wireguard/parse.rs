//! Reading what `ip` and `wg` print: the few facts the data plane needs.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

/// `wg show <if> peers`: one base64 public key per line.
pub(super) fn peers(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `ip link show <if>`: whether the flags say `UP`.
pub(super) fn link_up(output: &str) -> bool {
    let flags = output
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(flags, _)| flags)
        .unwrap_or_default();
    flags.split(',').any(|f| f == "UP")
}

/// One route `ip route show dev <if>` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Route {
    /// Its destination.
    pub net: IpNet,
    /// Whether the kernel made it (`proto kernel`: an address's prefix
    /// route, link-local): never removed.
    pub kernel: bool,
}

/// `ip -6 route show dev <if>` / `ip -4 …`: the destination of each line
/// (`fd00::2`, `10.42.1.0/24`, `default`) and whether the kernel made it.
pub(super) fn routes(output: &str, v6: bool) -> Vec<Route> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mut dst = words.next()?;
            // `unreachable fd00::/64 …` and friends: the type comes first.
            if ["unicast", "local", "broadcast", "unreachable", "blackhole"].contains(&dst) {
                dst = words.next()?;
            }
            let net = match dst {
                "default" if v6 => IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).ok()?,
                "default" => IpNet::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0).ok()?,
                d if d.contains('/') => d.parse::<IpNet>().ok()?,
                d => IpNet::from(d.parse::<IpAddr>().ok()?),
            };
            let kernel = line.contains(" proto kernel");
            Some(Route {
                net: net.trunc(),
                kernel,
            })
        })
        .collect()
}

/// `ip -6 addr show dev <if>`: every address of global scope.
pub(super) fn global_v6(output: &str) -> Vec<Ipv6Addr> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("inet6 ")?;
            if !rest.contains("scope global") {
                return None;
            }
            let cidr = rest.split_whitespace().next()?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_links_routes_and_addresses() {
        assert!(link_up(
            "5: wg-sdwan-a: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1420"
        ));
        assert!(!link_up(
            "5: wg-sdwan-a: <POINTOPOINT,NOARP> mtu 1420 state DOWN"
        ));
        assert!(!link_up(""));
        let r = routes(
            "fd00:abcd::2 metric 1024 pref medium\nfe80::/64 proto kernel metric 256 pref medium\nfd00:abcd::100 proto kernel metric 256\ndefault metric 1024\n",
            true,
        );
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].net.to_string(), "fd00:abcd::2/128");
        assert!(!r[0].kernel && r[1].kernel && r[2].kernel);
        assert_eq!(r[3].net.to_string(), "::/0");
        let r4 = routes("10.42.1.0/24 scope link \n", false);
        assert_eq!(r4[0].net.to_string(), "10.42.1.0/24");
        let a = global_v6(
            "5: wg: <UP>\n    inet6 fd00:abcd::100/128 scope global \n       valid_lft forever\n    inet6 fe80::1/64 scope link\n",
        );
        assert_eq!(a, vec!["fd00:abcd::100".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(peers("abc=\n\ndef=\n"), vec!["abc=", "def="]);
    }
}
