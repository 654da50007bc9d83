//! Bounds on everything an agent reports: a length limit and a character
//! check per field, and a cap on a whole submission. A refusal names the
//! field and the limit, never the value (it may be huge, or carry escape
//! sequences meant for a terminal).

use super::{refusal, Refusal};
use powernode_events::{Actor, Envelope, EventPayload};
use powernode_protocol::{BootstrapSecrets, EnrollRequest, Heartbeat, Submission};

/// Most bytes of one submission: the hex-encoded event plus its secrets.
pub const MAX_SUBMISSION_BYTES: usize = 64 * 1024;
/// Ids (instances, clusters, virtual IPs): `[A-Za-z0-9_-]`.
pub const MAX_ID: usize = 128;
/// Versions (`v1.30.5+k3s1`).
pub const MAX_VERSION: usize = 64;
/// Fingerprints (`sha256:<64 hex>`).
pub const MAX_FINGERPRINT: usize = 80;
/// Kubernetes node names (a DNS name).
pub const MAX_NODE_NAME: usize = 253;
/// A k3s node (join) token.
pub const MAX_NODE_TOKEN: usize = 512;
/// A kubeconfig (certificates included).
pub const MAX_KUBECONFIG: usize = 32 * 1024;
/// Virtual IPs one heartbeat may report holding.
pub const MAX_HELD_VIPS: usize = 256;
/// An address as text.
pub const MAX_ADDRESS: usize = 64;
/// Hex of an ed25519 key or signature.
pub const MAX_HEX_KEY: usize = 128;
/// Base64 of a WireGuard key (44 characters when well-formed).
pub const MAX_WIREGUARD_KEY: usize = 64;
/// WireGuard revisions one heartbeat may report (one per network).
pub const MAX_APPLIED_CONFIGS: usize = 64;
/// VIP probes one heartbeat may report.
pub const MAX_VIP_PROBES: usize = 256;
/// An enrollment credential.
pub const MAX_CREDENTIAL: usize = 256;

/// What characters a field may hold.
#[derive(Clone, Copy)]
enum Chars {
    /// `[A-Za-z0-9_-]`, the alphabet of every platform id.
    Id,
    /// Printable ASCII without spaces.
    Token,
    /// Printable UTF-8 and line breaks / tabs (a YAML document).
    Text,
}

fn invisible(c: char) -> bool {
    // Bidirectional overrides and zero-width / format characters can make
    // text read differently from what it is.
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn allowed(chars: Chars, c: char) -> bool {
    match chars {
        Chars::Id => c.is_ascii_alphanumeric() || c == '-' || c == '_',
        Chars::Token => c.is_ascii_graphic(),
        Chars::Text => matches!(c, '\n' | '\r' | '\t') || !(c.is_control() || invisible(c)),
    }
}

fn check(field: &str, value: &str, max: usize, chars: Chars) -> Result<(), Refusal> {
    if value.len() > max {
        return Err(refusal(
            "field_too_long",
            format!(
                "{field} is {} bytes, more than the {max} allowed",
                value.len()
            ),
        ));
    }
    if let Some(c) = value.chars().find(|c| !allowed(chars, *c)) {
        let what = match chars {
            Chars::Id => "only letters, digits, '-' and '_' are allowed",
            Chars::Token => "only printable ASCII without spaces is allowed",
            Chars::Text => "control characters and escape sequences are not allowed",
        };
        return Err(refusal(
            "bad_characters",
            format!(
                "{field} holds the character U+{:04X}: {what} (at most {max} bytes)",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// An id field (`[A-Za-z0-9_-]`, at most [`MAX_ID`] bytes).
pub fn id(field: &str, value: &str) -> Result<(), Refusal> {
    check(field, value, MAX_ID, Chars::Id)
}

/// The size of a whole submission, before anything is decoded (its
/// fields are checked once it is verified: [`event`], [`secrets`]).
pub fn submission(s: &Submission) -> Result<(), Refusal> {
    let secrets = s
        .secrets
        .as_ref()
        .map_or(0, |x| x.node_token.len() + x.kubeconfig.len());
    let total = s.event.len() + secrets;
    if total > MAX_SUBMISSION_BYTES {
        return Err(refusal(
            "submission_too_large",
            format!(
                "the submission is {total} bytes (hex event and secrets), more than the {MAX_SUBMISSION_BYTES} allowed"
            ),
        ));
    }
    Ok(())
}

/// The secrets of a submission, when it carries any.
pub fn secrets(s: Option<&BootstrapSecrets>) -> Result<(), Refusal> {
    let Some(s) = s else {
        return Ok(());
    };
    check(
        "secrets.node_token",
        &s.node_token,
        MAX_NODE_TOKEN,
        Chars::Token,
    )?;
    check(
        "secrets.kubeconfig",
        &s.kubeconfig,
        MAX_KUBECONFIG,
        Chars::Text,
    )
}

/// Every agent-reported string of a decoded (and verified) handshake event.
pub fn event(e: &Envelope) -> Result<(), Refusal> {
    if let Actor::Agent { instance_id } = &e.actor {
        id("actor.instance_id", instance_id)?;
    }
    id("account_id", e.account_id.as_str())?;
    id("aggregate.id", &e.aggregate.id)?;
    match &e.payload {
        EventPayload::RuntimeInstalling(p) => {
            id("payload.instance_id", &p.instance_id)?;
            check("payload.version", &p.version, MAX_VERSION, Chars::Token)
        }
        EventPayload::HandshakeBootstrap(p) => {
            id("payload.instance_id", &p.instance_id)?;
            check(
                "payload.k3s_version",
                &p.k3s_version,
                MAX_VERSION,
                Chars::Token,
            )?;
            check(
                "payload.node_token_fingerprint",
                &p.node_token_fingerprint,
                MAX_FINGERPRINT,
                Chars::Token,
            )?;
            check(
                "payload.kubeconfig_fingerprint",
                &p.kubeconfig_fingerprint,
                MAX_FINGERPRINT,
                Chars::Token,
            )
        }
        EventPayload::HandshakeJoinRequest(p) => {
            id("payload.instance_id", &p.instance_id)?;
            match &p.target_cluster_id {
                Some(t) => id("payload.target_cluster_id", t),
                None => Ok(()),
            }
        }
        EventPayload::HandshakeReady(p) => {
            id("payload.instance_id", &p.instance_id)?;
            id("payload.cluster_id", &p.cluster_id)?;
            check(
                "payload.node_name",
                &p.node_name,
                MAX_NODE_NAME,
                Chars::Token,
            )?;
            check(
                "payload.k3s_version",
                &p.k3s_version,
                MAX_VERSION,
                Chars::Token,
            )?;
            match &p.token_fingerprint {
                Some(f) => check(
                    "payload.token_fingerprint",
                    f,
                    MAX_FINGERPRINT,
                    Chars::Token,
                ),
                None => Ok(()),
            }
        }
        EventPayload::WireguardKeyRegistered(p) => {
            id("payload.instance_id", &p.instance_id)?;
            check(
                "payload.public_key",
                &p.public_key,
                MAX_WIREGUARD_KEY,
                Chars::Token,
            )?;
            check("payload.endpoint", &p.endpoint, MAX_ADDRESS, Chars::Token)
        }
        EventPayload::ModuleUpgraded(p) => {
            id("payload.instance_id", &p.instance_id)?;
            id("payload.execution_id", &p.execution_id)?;
            for v in [&p.from_version_id, &p.to_version_id].into_iter().flatten() {
                check("payload.version_id", v, MAX_ID, Chars::Token)?;
            }
            check(
                "payload.k3s_version",
                &p.k3s_version,
                MAX_VERSION,
                Chars::Token,
            )?;
            phases(&p.phases)
        }
        EventPayload::ModuleUpgradeFailed(p) => {
            id("payload.instance_id", &p.instance_id)?;
            id("payload.execution_id", &p.execution_id)?;
            for v in [&p.to_version_id, &p.running_version_id]
                .into_iter()
                .flatten()
            {
                check("payload.version_id", v, MAX_ID, Chars::Token)?;
            }
            check(
                "payload.k3s_version",
                &p.k3s_version,
                MAX_VERSION,
                Chars::Token,
            )?;
            check("payload.reason", &p.reason, MAX_REASON, Chars::Text)?;
            phases(&p.phases)
        }
        // Other kinds are refused by kind before their fields matter.
        _ => Ok(()),
    }
}

/// Longest reason or phase detail in an upgrade report (bytes).
pub const MAX_REASON: usize = 2048;
/// Most phases an upgrade report lists.
pub const MAX_PHASES: usize = 16;

/// The phases of an upgrade report.
fn phases(phases: &[powernode_events::payloads::skills::PhaseReport]) -> Result<(), Refusal> {
    count("payload.phases", phases.len(), MAX_PHASES)?;
    for p in phases {
        if let Some(d) = &p.detail {
            check("payload.phases[].detail", d, MAX_REASON, Chars::Text)?;
        }
    }
    Ok(())
}

/// Every field of a heartbeat.
pub fn heartbeat(hb: &Heartbeat) -> Result<(), Refusal> {
    id("instance_id", &hb.instance_id)?;
    check("signature", &hb.signature, MAX_HEX_KEY, Chars::Token)?;
    if hb.held_vips.len() > MAX_HELD_VIPS {
        return Err(refusal(
            "field_too_long",
            format!(
                "held_vips lists {} virtual IPs, more than the {MAX_HELD_VIPS} allowed",
                hb.held_vips.len()
            ),
        ));
    }
    for h in &hb.held_vips {
        id("held_vips[].virtual_ip_id", &h.virtual_ip_id)?;
        check("held_vips[].vip", &h.vip, MAX_ADDRESS, Chars::Token)?;
    }
    count(
        "wireguard_applied",
        hb.wireguard_applied.len(),
        MAX_APPLIED_CONFIGS,
    )?;
    for a in &hb.wireguard_applied {
        id("wireguard_applied[].network_id", &a.network_id)?;
    }
    count("vip_probes", hb.vip_probes.len(), MAX_VIP_PROBES)?;
    for p in &hb.vip_probes {
        id("vip_probes[].virtual_ip_id", &p.virtual_ip_id)?;
        check("vip_probes[].vip", &p.vip, MAX_ADDRESS, Chars::Token)?;
        if let Some(by) = &p.answered_by {
            id("vip_probes[].answered_by", by)?;
        }
    }
    Ok(())
}

/// A list of at most `max` entries.
fn count(field: &str, len: usize, max: usize) -> Result<(), Refusal> {
    if len > max {
        return Err(refusal(
            "field_too_long",
            format!("{field} lists {len} entries, more than the {max} allowed"),
        ));
    }
    Ok(())
}

/// Both fields of an enrollment request.
pub fn enroll(req: &EnrollRequest) -> Result<(), Refusal> {
    check("credential", &req.credential, MAX_CREDENTIAL, Chars::Token)?;
    check("public_key", &req.public_key, MAX_HEX_KEY, Chars::Token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeats_data_plane_reports_are_bounded() {
        use powernode_protocol::{AppliedConfig, VipProbe};
        let probe = |by: &str| VipProbe {
            virtual_ip_id: "vip-1".into(),
            vip: "fd00::100".into(),
            reached: true,
            answered_by: Some(by.into()),
            generation: Some(1),
            probed_at_ms: 0,
        };
        let mut hb = Heartbeat {
            instance_id: "inst-1".into(),
            sent_at_ms: 0,
            held_vips: Vec::new(),
            after_seq: None,
            wireguard_applied: vec![AppliedConfig {
                network_id: "net-1".into(),
                revision: 3,
            }],
            vip_probes: vec![probe("inst-2")],
            report: None,
            signature: "ab".into(),
        };
        assert!(heartbeat(&hb).is_ok());
        hb.vip_probes = vec![probe("inst\u{1b}[2J")];
        let e = heartbeat(&hb).unwrap_err();
        assert!(
            e.message.contains("vip_probes[].answered_by"),
            "{}",
            e.message
        );
        hb.vip_probes = vec![probe("inst-2"); MAX_VIP_PROBES + 1];
        let e = heartbeat(&hb).unwrap_err();
        assert_eq!(e.code, "field_too_long");
        assert!(e.message.contains("vip_probes"), "{}", e.message);
        hb.vip_probes.clear();
        hb.wireguard_applied = vec![
            AppliedConfig {
                network_id: "net-1".into(),
                revision: 1
            };
            MAX_APPLIED_CONFIGS + 1
        ];
        assert!(heartbeat(&hb)
            .unwrap_err()
            .message
            .contains("wireguard_applied"));
    }

    #[test]
    fn escapes_and_long_values_are_refused_naming_the_field() {
        assert!(id("x", "inst-0123_ab").is_ok());
        let e = id("payload.cluster_id", "clu\u{1b}[2J").unwrap_err();
        assert_eq!(e.code, "bad_characters");
        assert!(e.message.contains("payload.cluster_id") && e.message.contains("U+001B"));
        let e = id("payload.instance_id", &"a".repeat(MAX_ID + 1)).unwrap_err();
        assert_eq!(e.code, "field_too_long");
        assert!(e.message.contains("payload.instance_id") && e.message.contains("128"));
        assert!(check("k", "apiVersion: v1\n\tx: é\r\n", 100, Chars::Text).is_ok());
        for bad in ["a\u{1b}b", "a\u{7f}", "a\u{9b}1m", "a\u{202e}b", "a\u{0}"] {
            assert!(check("k", bad, 100, Chars::Text).is_err(), "{bad:?}");
        }
        assert!(check("v", "v1.30.5+k3s1", MAX_VERSION, Chars::Token).is_ok());
        assert!(check("v", "v1 30", MAX_VERSION, Chars::Token).is_err());
    }
}
