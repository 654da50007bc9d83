//! Issue 16's end-to-end tests: rolling module upgrades, failure
//! injection, pause and resume across a restart of the services, dry runs,
//! the quorum rule, the VIP during an upgrade, `provision_cluster` and
//! `agent_introspect` — with a real nats-server, every powernode service,
//! and real `powernode-agent --runtime simulated` processes (no mocks).
//! One file per scenario, each with its own test on its own platform:
//!
//! * `full_upgrade` — the runbook's cluster (3 servers, 3 workers) upgraded
//!   template by template with `batch_pct: 50`, running the checks of the
//!   other scenarios on the way;
//! * `failure` — an injected failure on one worker stops the rollout;
//! * `pause_restart` — paused, every service restarted, resumed;
//! * `dry_run` — the dry run's plan is the one that runs;
//! * `quorum` — no two of three servers mid-step at once (from the log);
//! * `vip` — every probe of the recorded VIP holder answers; the VIP moves
//!   before its holder's step;
//! * `provision` — `provision_cluster` from idle enrolled agents;
//! * `introspect` — an upgraded node agent as `agent_introspect` shows it.

mod dry_run;
mod failure;
mod full_upgrade;
mod introspect;
mod pause_restart;
mod provision;
mod quorum;
mod vip;
mod world;
