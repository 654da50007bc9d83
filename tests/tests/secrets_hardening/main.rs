//! The secret store's side of issue 13, against real nodes:
//!
//! * a bootstrap re-sent with its original id cannot replace a cluster's
//!   secrets (write-once), an identical retry is still answered, and a
//!   decommissioned cluster's secrets are never written again;
//! * 50 concurrent join-token rotations leave the stored token matching the
//!   fingerprint the log (and so the API) reports, on both log backends;
//! * decommission deletes the cluster's join token and kubeconfig;
//! * secrets are sealed at rest: neither sled's files nor the nats-server's
//!   JetStream files hold a plaintext value, and a store opened with another
//!   key file cannot read them.
//!
//! `cargo nextest run -p powernode-tests --test secrets_hardening`
//!
//! * `write_once` — re-sent bootstraps and decommissioned clusters;
//! * `node` — a node of either backend with a key file of its own;
//! * `rotation` — concurrent rotations;
//! * `at_rest` — deletion on decommission, sealing at rest, the key file.

use anyhow::{ensure, Context as _};
use powernode_events::payloads::k3s::{HandshakeBootstrap, HandshakeReady};
use powernode_events::{AccountId, EventPayload};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::SharedLog;
use powernode_protocol::{fingerprint, BootstrapSecrets};
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::secrets::embedded::{EmbeddedSecrets, DEFAULT_DIR};
use powernode_server::secrets::jetstream::{JetStreamSecrets, DEFAULT_BUCKET};
use powernode_server::secrets::{SecretError, SecretKey, SecretStore, SharedSecrets};
use powernode_server::services::ServiceName;
use powernode_tests::http::action;
use powernode_tests::lifecycle_support::*;
use powernode_tests::nats::NatsServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const REJECTED: &str = "system.agent.submission_rejected";

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (recursively) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| contains(&b, needle)) {
                found.push(path);
            }
        }
    }
    Ok(found)
}

fn kubeconfig(ca: &str) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:6443\n  name: default\n"
    )
}

mod at_rest;
mod node;
mod rotation;
mod write_once;
