//! Operator access grants against a real nats-server: creation with and
//! without the caller's key (a platform-made private key only in the
//! answer, in no record of the log), the wg-quick file, concurrent
//! creations, list, revoke, expiry (once, across a restart and two sdwan
//! replicas), bad input that appends nothing, and the CLI.
//!
//! The gateway needs a registered WireGuard key: the harness writes
//! `system.sdwan.wireguard_key.registered` straight to the log (what the
//! intake appends when an agent submits it signed).
//!
//! * `world` — the node, the account, the network and its peers; helpers;
//! * `create` — create, list, revoke;
//! * `bad_input` — refusals that append nothing;
//! * `expiry` — expiry once, across a restart and two replicas;
//! * `cli` — `powernode networks grant | grants | revoke-grant`.

mod bad_input;
mod cli;
mod create;
mod expiry;
mod world;
