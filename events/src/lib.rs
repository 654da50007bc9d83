//! # powernode-events — the vocabulary of the control plane
//!
//! Every fact powernode knows is an [`Envelope`] around a typed [`EventPayload`].
//! This crate defines them and nothing else:
//!
//! * [`ids`] — account ids, aggregate references and actors;
//! * [`envelope`] — the envelope every event travels in;
//! * [`kinds`] — the one table that binds each payload type to its kind string,
//!   schema version and aggregate (the kind string is written there and nowhere
//!   else), and the fieldless [`EventKind`] generated from it;
//! * [`payloads`] — the payload types, grouped by domain;
//! * [`error`] — the typed encoding and decoding errors;
//! * [`codec`] — canonical CBOR encoding and decoding (`decode` is its fast path);
//! * [`upcast`] — migration of older schema versions on read;
//! * [`signing`] — ed25519 signatures of agent events over the canonical bytes
//!   (the [`Signature`](signing::Signature) value itself lives in a leaf module);
//! * [`seal`] — the sealed log: the hash chain over stored records and the
//!   platform-signed seals over it ([`seal::SealVerifier`]);
//! * [`subject`] — the mapping from (account, aggregate, kind) to a NATS subject;
//! * [`text`] — which characters a name or argument may hold;
//! * [`examples`] — one realistic example per kind (tests, schemas, benchmarks).
//!
//! The modules import each other without cycles. Outside its tests, each
//! module uses only the modules named after its dash:
//!
//! * `error`, `ids`, `payloads`, `signature` — nothing in the crate;
//! * `kinds` — error, ids, payloads;
//! * `subject` — ids;
//! * `envelope` — ids, kinds, signature;
//! * `upcast` — error, kinds, payloads;
//! * `decode` — envelope, error, ids, kinds, signature, upcast;
//! * `codec` — decode, envelope, error, ids, kinds, signature, upcast;
//! * `signing` — codec, envelope, signature;
//! * `examples` — envelope, ids, kinds, payloads;
//! * `seal` — codec, envelope, ids, kinds, payloads, signing.
//!
//! `Envelope`'s encoding and signing methods are defined in `codec` and
//! `signing`, so that `envelope` need not know either.
//!
//! This crate must never do I/O: no files, no network, no clock reads outside
//! [`Envelope::new`]'s default timestamp, no tokio.

#![warn(missing_docs)]

pub mod codec;
mod decode;
pub mod envelope;
pub mod error;
pub mod examples;
pub mod ids;
pub mod kinds;
#[macro_use]
pub mod payloads;
pub mod seal;
mod signature;
pub mod signing;
pub mod subject;
pub mod text;
pub mod upcast;
pub mod wireguard;

pub use codec::RawEnvelope;
pub use envelope::Envelope;
pub use error::{DecodeError, EncodeError, UnknownKindError};
pub use ids::{AccountId, Actor, AggregateRef, AggregateType, IdError};
pub use kinds::{EventKind, EventPayload, KindInfo, Payload, ALL_KINDS};
pub use signing::{SignatureError, SigningKey, VerifyingKey};
