//! The error codes operators are answered with:
//! `{"error": {"code": "<code>", "message": "..."}}` and the code's status.

use serde::{Deserialize, Serialize};

/// Declares [`ErrorCode`] from one list: variant, wire code, HTTP status, doc.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $status:literal; )*) => {
        /// A stable, machine-readable reason an action (or another operator
        /// route: the event stream, the export, `/healthz`) was refused or
        /// failed. Serializes to its wire code, e.g. `"invalid_arguments"`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum ErrorCode {
            $( $(#[$doc])* #[serde(rename = $code)] $variant, )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The wire code, e.g. `invalid_arguments`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $code, )*
                }
            }

            /// The HTTP status answered with this code.
            pub const fn status(self) -> u16 {
                match self {
                    $( ErrorCode::$variant => $status, )*
                }
            }
        }

        impl std::str::FromStr for ErrorCode {
            type Err = UnknownErrorCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $code => Ok(ErrorCode::$variant), )*
                    _ => Err(UnknownErrorCode(s.to_string())),
                }
            }
        }
    };
}

error_codes! {
    // Authentication (every operator route).
    /// 401: no `Authorization: Bearer` header, or an unknown token.
    Unauthorized = "unauthorized", 401;
    /// 401: the token was revoked.
    TokenRevoked = "token_revoked", 401;
    /// 401: the token's `expires_at` has passed.
    TokenExpired = "token_expired", 401;
    /// 403: the token lacks a permission, or the account asked for.
    Forbidden = "forbidden", 403;
    // The request itself.
    /// 404: no action of that name.
    UnknownAction = "unknown_action", 404;
    /// 400: the body is not JSON, or an object in it repeats a key.
    MalformedJson = "malformed_json", 400;
    /// 400: the body could not be read.
    MalformedBody = "malformed_body", 400;
    /// 413: the body is over the limit.
    BodyTooLarge = "body_too_large", 413;
    /// 400: the arguments are refused (unknown or missing field, wrong
    /// type, control character, out of range); the message names the field.
    InvalidArguments = "invalid_arguments", 400;
    /// 404: an unknown id (another account's ids do not exist for you).
    NotFound = "not_found", 404;
    // The log.
    /// 409: something else was appended to the object meanwhile; nothing changed.
    Conflict = "conflict", 409;
    /// 409: the event id belongs to a different event.
    IdTaken = "id_taken", 409;
    /// 400: the log refused the event as invalid.
    InvalidEvent = "invalid_event", 400;
    /// 503: the log (or the secret store) is unreachable or slow; retry.
    Unavailable = "unavailable", 503;
    /// 503 (`/healthz`): the log did not answer.
    LogUnavailable = "log_unavailable", 503;
    /// 500: the log failed in a way a retry does not fix.
    LogError = "log_error", 500;
    // One action's own refusals.
    /// 400: `ovn_kubernetes` asked for on a node too small for it.
    CniProfileMismatch = "CniProfileMismatchError", 400;
    /// 409: the cluster is already decommissioned; nothing changed.
    AlreadyDecommissioned = "already_decommissioned", 409;
    /// 409: the cluster is decommissioned.
    ClusterDecommissioned = "cluster_decommissioned", 409;
    /// 409: the cluster has no kubeconfig yet.
    KubeconfigUnavailable = "kubeconfig_unavailable", 409;
    /// 409: several live virtual IPs match the name.
    Ambiguous = "ambiguous", 409;
    /// 409: a prefix overlaps one the account already uses.
    PrefixOverlap = "prefix_overlap", 409;
    /// 409: the network's `pod_subnet_prefix` is in use by a live cluster.
    PodSubnetPrefixImmutable = "pod_subnet_prefix_immutable", 409;
    /// 409: the account has no free overlay /64 left.
    Exhausted = "exhausted", 409;
    /// 409: the approval was already granted or rejected.
    AlreadyDecided = "already_decided", 409;
    /// 409: the approval (or the access grant) expired.
    Expired = "expired", 409;
    /// 409: what the approval was about changed before anyone decided.
    Superseded = "superseded", 409;
    /// 409: the virtual IP was released.
    Released = "released", 409;
    /// 422: the peer asked for cannot hold the virtual IP.
    NotACandidate = "not_a_candidate", 422;
    /// 409: the virtual IP has no ready candidate heard lately.
    NoCandidate = "no_candidate", 409;
    /// 409: no peer of the network has registered a WireGuard key yet, so
    /// an access grant has no gateway to end at.
    NoGateway = "no_gateway", 409;
    /// 409: the access grant was already revoked; nothing changed.
    AlreadyRevoked = "already_revoked", 409;
    /// 409: that module already has that version.
    ModuleVersionExists = "module_version_exists", 409;
    /// 404: no skill has that name.
    UnknownSkill = "unknown_skill", 404;
    /// 422: the version belongs to another module.
    VersionOfAnotherModule = "version_of_another_module", 422;
    /// 409: every instance already runs the target version; nothing to do.
    NothingToUpgrade = "nothing_to_upgrade", 409;
    /// 409: another execution is running on the same template or cluster
    /// (the message names it).
    ExecutionInProgress = "execution_in_progress", 409;
    /// 409: the execution has finished (completed or aborted).
    ExecutionFinished = "execution_finished", 409;
    /// 409: the templates do not hold enough idle enrolled instances.
    NotEnoughInstances = "not_enough_instances", 409;
    // The dashboard.
    /// 409: this API serves a read-only view (an export file, or the fleet
    /// as of a past sequence): an action that changes the fleet, or records
    /// an audit event, is refused and nothing is appended; the message
    /// names the action and why the view is read-only.
    ReadOnly = "read_only", 409;
}

impl ErrorCode {
    /// What every action may be refused with, whatever it does: the
    /// authentication codes, and the codes of a body or arguments that
    /// cannot be read. An action's own [`crate::Action::ERRORS`] come on top.
    pub const ANY_ACTION: &'static [ErrorCode] = &[
        ErrorCode::Unauthorized,
        ErrorCode::TokenRevoked,
        ErrorCode::TokenExpired,
        ErrorCode::MalformedJson,
        ErrorCode::MalformedBody,
        ErrorCode::BodyTooLarge,
        ErrorCode::InvalidArguments,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code that is no [`ErrorCode`] (e.g. from a newer server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownErrorCode(pub String);

impl std::fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown error code {:?}", self.0)
    }
}

impl std::error::Error for UnknownErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_code_round_trips_through_serde_as_its_string() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::json!(code.as_str()), "{code:?}");
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), *code);
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert!("teapot".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!((400..600).contains(&code.status()), "{code:?}");
        }
    }
}
