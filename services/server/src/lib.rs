//! # powernode-server — a powernode node
//!
//! Everything a node runs, on top of the log ([`powernode_log`]) and the
//! consumer runtime ([`powernode_runtime`]):
//!
//! * [`skills`] — the day-2 skills' inputs and plans (pure: no I/O);
//! * [`services`] — the services (provisioner, sdwan, sensor, failover, skills),
//!   each a reactor the runtime drives, runnable alone or together;
//! * [`intake`] — where agents enroll, beat and submit their signed events;
//! * [`liveness`] — when each agent was last heard;
//! * [`secrets`] — the sealed secret store (bootstrap tokens, kubeconfigs);
//! * [`api`] — the operator HTTP API: actions, the event stream, exports;
//! * [`natsauth`] — the auth callout that admits agents to NATS, and
//!   `powernode nats init`;
//! * [`sealer`] — the log's seals, signed with the platform's seal key;
//! * [`node`] — the wiring: which of these a process runs, on which log.
//!
//! Module order (each uses only those before it): `secrets`, `liveness`,
//! `natsauth` → `skills` → `services` → `intake` → `api` → `node`.
//!
//! Nothing here holds state that cannot be rebuilt from the log (secrets
//! aside, which the log only fingerprints). This crate never parses a
//! command line of its own beyond the node's options, and never prints:
//! diagnostics go through `tracing`.

pub mod api;
pub mod intake;
pub mod liveness;
pub mod metrics;
pub mod natsauth;
pub mod node;
pub mod sealer;
pub mod secrets;
pub mod services;
pub mod skills;
pub mod status;
pub mod tls;
pub mod ui;
