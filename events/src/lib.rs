//! # powernode-events — the vocabulary of the control plane
//!
//! Every fact powernode knows is an [`Envelope`] around a typed [`EventPayload`].
//! This crate defines them and nothing else:
//!
//! * [`ids`] — account ids, aggregate references and actors;
//! * [`envelope`] — the envelope every event travels in;
//! * [`kinds`] — the one table that binds each payload type to its kind string,
//!   schema version and aggregate (the kind string is written there and nowhere else);
//! * [`payloads`] — the payload types, grouped by domain;
//! * [`codec`] — canonical CBOR encoding and decoding, with typed errors;
//! * [`upcast`] — migration of older schema versions on read;
//! * [`signing`] — ed25519 signatures of agent events over the canonical bytes;
//! * [`subject`] — the mapping from (account, aggregate, kind) to a NATS subject;
//! * [`text`] — which characters a name or argument may hold;
//! * [`examples`] — one realistic example per kind (tests, schemas, benchmarks).
//!
//! This crate must never do I/O: no files, no network, no clock reads outside
//! [`Envelope::new`]'s default timestamp, no tokio.

pub mod codec;
mod decode;
pub mod envelope;
pub mod examples;
pub mod ids;
pub mod kinds;
#[macro_use]
pub mod payloads;
pub mod signing;
pub mod subject;
pub mod text;
pub mod upcast;

pub use codec::{DecodeError, EncodeError, RawEnvelope};
pub use envelope::Envelope;
pub use ids::{AccountId, Actor, AggregateRef, AggregateType, IdError};
pub use kinds::{EventPayload, KindInfo, Payload, ALL_KINDS};
pub use signing::{SignatureError, SigningKey, VerifyingKey};
