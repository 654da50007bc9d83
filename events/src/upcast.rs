//! Upcasting: old payload versions are migrated on read, one version step at
//! a time. A stored event is never rewritten.
//!
//! To bump a kind's version: keep the old type in [`legacy`], raise the
//! version in the kind table, and add the step to [`step`].

use crate::error::DecodeError;
use crate::kinds::{kind_info, Payload};
use crate::payloads::sdwan::VirtualIpAllocated;
use ciborium::Value;

/// Payload types of older schema versions, kept for upcasting tests and
/// schema generation.
pub mod legacy {
    use std::net::Ipv6Addr;

    payload! {
        /// `system.sdwan.virtual_ip.allocated` v1: before `purpose` existed
        /// (every VIP was a k3s API endpoint).
        pub struct VirtualIpAllocatedV1 {
            /// Virtual IP id.
            pub virtual_ip_id: String,
            /// Network it belongs to.
            pub network_id: String,
            /// The address.
            #[serde(with = "crate::payloads::text")]
            #[cfg_attr(feature = "schema", schemars(with = "Ipv6Addr"))]
            pub vip: Ipv6Addr,
            /// The cluster whose endpoint it is.
            pub cluster_id: String,
            /// The first holder.
            pub primary_holder_peer_id: String,
        }
    }

    /// JSON Schemas of legacy versions: `(kind, version, schema)`.
    #[cfg(feature = "schema")]
    pub fn legacy_schemas() -> Vec<(&'static str, u16, schemars::Schema)> {
        use crate::kinds::Payload;
        vec![(
            crate::payloads::sdwan::VirtualIpAllocated::KIND,
            1,
            schemars::schema_for!(VirtualIpAllocatedV1),
        )]
    }
}

/// Migrates `value` of `kind` from version `from` to the current version.
pub fn upcast(kind: &str, from: u16, mut value: Value) -> Result<Value, DecodeError> {
    let current = kind_info(kind)
        .ok_or_else(|| DecodeError::UnknownKind(kind.to_string()))?
        .version;
    let mut version = from;
    while version < current {
        value = step(kind, version, value)?;
        version += 1;
    }
    Ok(value)
}

/// One step: `from` → `from + 1`.
fn step(kind: &str, from: u16, value: Value) -> Result<Value, DecodeError> {
    match (kind, from) {
        (VirtualIpAllocated::KIND, 1) => {
            let Value::Map(mut fields) = value else {
                return Err(DecodeError::Payload {
                    kind: kind.to_string(),
                    reason: "v1 payload is not a map".into(),
                });
            };
            // Every v1 VIP was a k3s API endpoint; insert after `vip` to keep field order.
            let at = fields
                .iter()
                .position(|(k, _)| k.as_text() == Some("vip"))
                .map_or(fields.len(), |i| i + 1);
            fields.insert(
                at,
                (
                    Value::Text("purpose".into()),
                    Value::Text("k3s_api_endpoint".into()),
                ),
            );
            Ok(Value::Map(fields))
        }
        _ => Err(DecodeError::NoUpcaster {
            kind: kind.to_string(),
            from,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::legacy::VirtualIpAllocatedV1;
    use crate::examples::example_envelope;
    use crate::payloads::sdwan::{VipPurpose, VirtualIpAllocated};
    use crate::{DecodeError, EventPayload, RawEnvelope};

    fn v1_raw() -> RawEnvelope {
        let v2 = VirtualIpAllocated {
            virtual_ip_id: "vip-1".into(),
            network_id: "net-1".into(),
            vip: "fd00:abcd:1::100".parse().unwrap(),
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id: "cluster-1".into(),
            primary_holder_peer_id: "peer-1".into(),
        };
        let mut raw = example_envelope(v2.clone()).to_raw().unwrap();
        raw.schema_version = 1;
        raw.payload = ciborium::Value::serialized(&VirtualIpAllocatedV1 {
            virtual_ip_id: v2.virtual_ip_id,
            network_id: v2.network_id,
            vip: v2.vip,
            cluster_id: v2.cluster_id,
            primary_holder_peer_id: v2.primary_holder_peer_id,
        })
        .unwrap();
        raw
    }

    #[test]
    fn v1_vip_allocation_is_upcast_with_purpose() {
        let bytes = v1_raw().to_bytes().unwrap();
        let env = crate::Envelope::decode(&bytes).unwrap();
        let EventPayload::VirtualIpAllocated(p) = &env.payload else {
            panic!("wrong payload")
        };
        assert_eq!(p.purpose, VipPurpose::K3sApiEndpoint);
        assert_eq!(env.payload.schema_version(), 2);
    }

    #[test]
    fn old_version_without_upcaster_is_refused() {
        let mut raw = v1_raw();
        raw.kind = "system.k3s.module.assigned".into();
        raw.schema_version = 0;
        assert!(matches!(
            raw.into_envelope(),
            Err(DecodeError::NoUpcaster { .. })
        ));
    }
}
