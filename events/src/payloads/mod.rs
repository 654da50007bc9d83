//! Payload types, one file per domain. Every payload is a past-tense fact.
//!
//! Ids are strings of `[A-Za-z0-9_-]` (e.g. `cluster-<uuid>`); addresses and
//! prefixes are typed. Secrets never appear here: only a reference into the
//! secret store and a fingerprint (`sha256:<hex>`).

/// Wraps a payload struct or enum with the derives every payload needs.
macro_rules! payload {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        $vis struct $name { $($body)* }
    };
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(rename_all = "snake_case")]
        $vis enum $name { $($body)* }
    };
}

pub mod approvals;
pub mod fleet;
pub mod k3s;
pub mod log;
pub mod sdwan;
