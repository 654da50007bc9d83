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

/// Serde helpers that keep addresses and prefixes as text (`"fd00::1"`,
/// `"10.42.0.0/16"`) in every format, CBOR included, so the wire form is the
/// one the JSON Schemas in `schemas/` describe.
/// Floats are written in the shortest width that keeps them (`0.5` as a
/// half): read any width, and integers, as an `f64` (a decoder that reads
/// an `f64` only as a double would refuse the shorter forms).
pub(crate) mod float {
    use serde::de::{Deserializer, Error, Visitor};

    struct AnyWidth;

    impl Visitor<'_> for AnyWidth {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_f32<E: Error>(self, v: f32) -> Result<f64, E> {
            Ok(f64::from(v))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
    }

    pub fn any_width<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(AnyWidth)
    }
}

pub(crate) mod text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    fn parse<T: FromStr, E: serde::de::Error>(s: &str) -> Result<T, E>
    where
        T::Err: Display,
    {
        s.parse().map_err(|e| E::custom(format!("{s:?}: {e}")))
    }

    /// `T` as text.
    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// `T` from text.
    pub fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(d: D) -> Result<T, D::Error>
    where
        T::Err: Display,
    {
        parse(&String::deserialize(d)?)
    }

    /// `Option<T>` as optional text.
    pub mod option {
        use super::*;

        /// Serializes.
        pub fn serialize<T: Display, S: Serializer>(
            v: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&v.to_string()),
                None => s.serialize_none(),
            }
        }

        /// Deserializes.
        pub fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<T>, D::Error>
        where
            T::Err: Display,
        {
            Option::<String>::deserialize(d)?
                .map(|s| parse(&s))
                .transpose()
        }
    }

    /// `Vec<T>` as a list of text.
    pub mod list {
        use super::*;
        use serde::ser::SerializeSeq;

        /// Serializes.
        pub fn serialize<T: Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for item in v {
                seq.serialize_element(&item.to_string())?;
            }
            seq.end()
        }

        /// Deserializes.
        pub fn deserialize<'de, T: FromStr, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error>
        where
            T::Err: Display,
        {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|s| parse(s))
                .collect()
        }
    }
}

pub mod approvals;
pub mod fleet;
pub mod k3s;
pub mod log;
pub mod mcp;
pub mod sdwan;
pub mod skills;
