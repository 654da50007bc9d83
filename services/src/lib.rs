//! # powernode-services — the log, the consumer runtime, the services, the binary
//!
//! * [`log`] — the [`log::EventLog`] trait with its JetStream and embedded (sled) backends;
//! * [`runtime`] — the one consumer loop every service runs: durable cursor,
//!   checkpoint, skip-what-was-applied, ack after success, graceful shutdown;
//! * [`services`] — the services themselves, each runnable alone or together;
//! * [`api`] — the operator HTTP surface (health for now);
//! * [`cli`] — the `powernode` command line (the binary in `src/bin` only calls it);
//! * [`bench`] — `powernode bench …`;
//! * [`natsauth`] — who may use the platform's NATS server: the platform's
//!   credentials, the auth callout that admits agents, `powernode nats init`.
//!
//! Nothing here holds state that cannot be rebuilt from the log.

pub mod api;
pub mod archive;
pub mod bench;
pub mod cli;
pub mod inspect;
pub mod intake;
pub mod liveness;
pub mod log;
pub mod natsauth;
pub mod runtime;
pub mod secrets;
pub mod services;
pub mod sim;
