//! # powernode-agent — the on-node agent
//!
//! Today: the agent's identity ([`identity`]), the ed25519 key it enrolls with
//! and signs every event it reports with. Enrollment, heartbeat, module
//! reconcile, handshakes and runtime drivers build on it.
//!
//! The agent must stay lean: it never links the services or projections.

pub mod identity;
