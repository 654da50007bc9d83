//! # powernode-tests — shared test support
//!
//! * [`nats`] — the one harness that starts a real `nats-server -js` on a free
//!   loopback port with a temporary store and tears it down;
//! * [`conformance`] — the event-log conformance suite every backend must pass;
//! * [`jetstream_support`] — helpers shared by the JetStream tests;
//! * [`http`] — a minimal HTTP client for API tests;
//! * [`api_support`] — a running API node for action tests;
//! * [`lifecycle_support`] — the whole platform and real agents, for the K3s lifecycle tests;
//! * [`failover_support`] — HA clusters, events, approvals and forged beats for the VIP failover tests;
//! * [`failover_replica`] — a second service replica as a `powernode serve` process, and its durable cursor;
//! * [`ui_support`] — the dashboard's browser test: the platform, the offline dashboard, the Selenium script;
//! * [`netns`] — network namespaces, an underlay bridge, processes and hand-made WireGuard tunnels in them, for the data-plane test.
//!
//! The integration tests themselves live in `tests/tests/`.

pub mod api_support;
pub mod bins;
pub mod cli_support;
pub mod conformance;
pub mod export_support;
pub mod failover_replica;
pub mod failover_support;
pub mod http;
pub mod jetstream_support;
pub mod lifecycle_support;
pub mod nats;
pub mod netns;
pub mod replay_support;
pub mod tail_support;
pub mod tls_support;
pub mod ui_support;
