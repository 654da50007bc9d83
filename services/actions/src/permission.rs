//! The permissions an operator token may carry.

use serde::{Deserialize, Serialize};

/// Declares [`Permission`] from one list: variant, wire name, doc.
macro_rules! permissions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// A permission an operator token may carry. Tokens hold them as
        /// their wire names (`system.kubernetes_provision`); the admin's
        /// ([`Permission::Admin`]) grants every other.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum Permission {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )*
        }

        impl Permission {
            /// Every permission, in declaration order.
            pub const ALL: &'static [Permission] = &[ $( Permission::$variant, )* ];
            /// Every permission's wire name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[ $( $name, )* ];

            /// The wire name, e.g. `system.admin`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Permission::$variant => $name, )*
                }
            }
        }

        impl std::str::FromStr for Permission {
            type Err = UnknownPermission;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $name => Ok(Permission::$variant), )*
                    _ => Err(UnknownPermission(s.to_string())),
                }
            }
        }
    };
}

permissions! {
    /// Everything, in every account (the bootstrap admin).
    Admin = "system.admin",
    /// Create templates, nodes, instances, networks; assign modules.
    KubernetesProvision = "system.kubernetes_provision",
    /// Decommission clusters.
    KubernetesDecommission = "system.kubernetes_decommission",
    /// Retrieve kubeconfigs.
    KubernetesKubeconfig = "system.kubernetes_kubeconfig",
    /// Approve or reject failovers, force a VIP failover, drain holders.
    SdwanFailover = "system.sdwan_failover",
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`Permission`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPermission(pub String);

impl std::fmt::Display for UnknownPermission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown permission {:?}; known: {}",
            self.0,
            Permission::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownPermission {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_serialize_as_themselves() {
        assert_eq!(Permission::ALL.len(), Permission::NAMES.len());
        for (p, name) in Permission::ALL.iter().zip(Permission::NAMES) {
            assert_eq!(p.as_str(), *name);
            assert_eq!(name.parse::<Permission>(), Ok(*p));
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<Permission>(serde_json::json!(name)).unwrap(),
                *p
            );
        }
        assert!("system.root".parse::<Permission>().is_err());
    }
}
