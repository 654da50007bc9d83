//! Agents taking part in day-2 operations, against a real nats-server, the
//! platform's services and real `powernode-agent` processes (simulated
//! runtime):
//!
//! * `token_rotation` — a join token rotated through the API reaches every
//!   node of the cluster: the bootstrap server runs the rotation, every
//!   other node rewrites its stored token, and every agent reports the new
//!   fingerprint from then on.
//! * `restamp` — setting a network's `pod_subnet_prefix` under a running
//!   flannel cluster re-stamps its nodes batch by batch.

mod restamp;
mod token_rotation;
