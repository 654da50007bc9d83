//! `agent_introspect` against a real nats-server: the whole platform in
//! this process, one more service replica as its own `powernode serve`
//! process, and a real `powernode-agent`.
//!
//! * `services` — a killed replica goes `stale` and shows the lag of what
//!   was appended after it stopped; `sdwan_manager_agent` answers the
//!   sdwan service; unknown ids are `not_found`, naming the services;
//! * `nodes` — a node agent's projection fields and last heartbeat;
//!   another account's instance is `not_found`.

mod nodes;
mod services;

use powernode_tests::lifecycle_support::{ActionError, Operator};
use serde_json::{json, Value};

/// `agent_introspect({agent_id})`.
async fn introspect(op: &Operator, agent_id: &str) -> Result<Value, ActionError> {
    op.action("agent_introspect", json!({ "agent_id": agent_id }))
        .await
}
