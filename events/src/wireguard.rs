//! The data plane's vocabulary: a peer's desired WireGuard configuration as
//! the sdwan service folds it from the log, and the checks every WireGuard
//! key and endpoint must pass. Pure data; applying it is the agent's job.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::{Ipv6Addr, SocketAddr};

/// Keepalive every tunnel gets (seconds): keeps NAT state open and lets
/// the far side learn a roaming endpoint.
pub const PERSISTENT_KEEPALIVE_SECS: u16 = 25;

/// The interface a network's tunnel uses on every peer.
pub fn interface_name(handle: &str) -> String {
    format!("wg-sdwan-{handle}")
}

/// One peer's desired WireGuard configuration on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WireguardConfig {
    /// Network id.
    pub network_id: String,
    /// The interface, `wg-sdwan-<handle>`.
    pub interface: String,
    /// The peer's own overlay /128.
    #[cfg_attr(feature = "schema", schemars(with = "String"))]
    pub address: Ipv6Addr,
    /// UDP port to listen on (from the registered endpoint).
    pub listen_port: u16,
    /// Revision: the sequence of the last event that changed this
    /// network's data plane. Monotonic; the agent reports the one it applied.
    pub revision: u64,
    /// Whether this peer forwards between other peers (a gateway: access
    /// grants and, under `hub` routing, every spoke go through it).
    pub forwarding: bool,
    /// Every other peer this one has a tunnel to.
    pub peers: Vec<WireguardPeer>,
}

/// One `[Peer]` of a [`WireguardConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WireguardPeer {
    /// The platform peer id (`peer-…`) or access grant id (`grant-…`).
    pub id: String,
    /// Base64 of its x25519 public key.
    pub public_key: String,
    /// Underlay `address:port`; none for an access grant (it dials in).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Keepalive interval in seconds.
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
    /// What is routed to it: its /128, the VIPs it holds at their newest
    /// generation, its nodes' pod /24s, its LAN subnets (and, for a
    /// gateway, what lies behind it).
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub allowed_ips: Vec<IpNet>,
}

/// Why a WireGuard key or endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireguardInputError {
    /// Not base64 of exactly 32 bytes.
    #[error("public_key must be base64 of a 32-byte x25519 key: {0}")]
    BadPublicKey(String),
    /// Not an `address:port`.
    #[error("endpoint must be address:port (IPv6 in brackets), got {0:?}")]
    BadEndpoint(String),
}

/// Checks that `key` is standard base64 (with padding) of 32 bytes, as `wg
/// genkey | wg pubkey` prints it.
pub fn check_public_key(key: &str) -> Result<(), WireguardInputError> {
    let bytes = decode_base64(key)
        .ok_or_else(|| WireguardInputError::BadPublicKey("not valid base64".into()))?;
    if bytes.len() != 32 {
        return Err(WireguardInputError::BadPublicKey(format!(
            "{} bytes, not 32",
            bytes.len()
        )));
    }
    Ok(())
}

/// Parses an underlay endpoint (`10.0.0.2:51820`, `[2001:db8::1]:51820`).
/// Port 0 is refused: nobody can send to it.
pub fn parse_endpoint(endpoint: &str) -> Result<SocketAddr, WireguardInputError> {
    match endpoint.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(WireguardInputError::BadEndpoint(endpoint.to_string())),
    }
}

/// Standard base64 with padding, strict (no whitespace), as WireGuard
/// tools print keys.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut b = [0u8; 3];
        b[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_named() {
        let key = encode_base64(&[7u8; 32]);
        assert_eq!(key.len(), 44);
        assert_eq!(decode_base64(&key).as_deref(), Some(&[7u8; 32][..]));
        assert!(check_public_key(&key).is_ok());
        assert!(matches!(
            check_public_key(&encode_base64(&[1u8; 31])),
            Err(WireguardInputError::BadPublicKey(m)) if m.contains("31 bytes")
        ));
        assert!(check_public_key("not base64!").is_err());
        assert!(check_public_key("").is_err());
        for n in 0..8usize {
            let v: Vec<u8> = (0..n as u8).collect();
            assert_eq!(decode_base64(&encode_base64(&v)).unwrap_or_default(), v);
        }
    }

    #[test]
    fn endpoints_are_address_and_port() {
        assert!(parse_endpoint("10.0.0.2:51820").is_ok());
        assert!(parse_endpoint("[fd00::2]:51820").is_ok());
        for bad in ["10.0.0.2", "host:51820", "10.0.0.2:0", "fd00::2:51820", ""] {
            assert!(parse_endpoint(bad).is_err(), "{bad} accepted");
        }
    }
}
