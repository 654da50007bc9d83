//! Issue 16's end-to-end tests: rolling module upgrades, failure
//! injection, pause and resume across a restart of the services, dry runs,
//! the quorum rule, the VIP during an upgrade, `provision_cluster` and
//! `agent_introspect` — with a real nats-server, every powernode service,
//! and real `powernode-agent --runtime simulated` processes (no mocks).
//!
//! * `full_upgrade` — the runbook's cluster (3 servers, 3 workers) upgraded
//!   template by template with `batch_pct: 50`; along the way the checks of
//!   `dry_run` (the plan that runs), `quorum` (no two servers mid-step at
//!   once), `vip` (every probe of the recorded holder answers; the VIP
//!   moves before its holder's step) and `introspect` (an upgraded node
//!   agent as it reports itself);
//! * `failure` — an injected failure on one worker stops the rollout;
//! * `pause_restart` — paused, every service restarted, resumed;
//! * `provision` — `provision_cluster` from idle enrolled agents.

mod dry_run;
mod failure;
mod full_upgrade;
mod introspect;
mod pause_restart;
mod provision;
mod quorum;
mod vip;
mod world;
