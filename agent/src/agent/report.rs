//! The agent's report of itself in every heartbeat (signed with it): its
//! version, runtime, capabilities, the modules it runs at which catalog
//! version, the last few errors it met, the upgrade step it runs, and the
//! fingerprint of the join token it holds.
//!
//! Errors are kept in a ring of [`MAX_RECENT_ERRORS`]; what goes in is a
//! driver's or the link's message, which never carries a secret (drivers
//! redact tokens from command errors; nothing else is recorded).

use super::Agent;
use crate::state::Phase;
use powernode_protocol::{AgentError, AgentReport, RunningModule, CAPABILITIES, MAX_RECENT_ERRORS};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Recent errors and the upgrade running, shared with background tasks.
#[derive(Debug, Default)]
pub struct Diagnostics {
    errors: Mutex<VecDeque<AgentError>>,
    upgrading: Mutex<Option<String>>,
}

impl Diagnostics {
    /// Remembers an error (the oldest goes beyond [`MAX_RECENT_ERRORS`]).
    pub fn error(&self, message: impl Into<String>) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let mut message: String = message.into();
        if message.len() > 500 {
            let mut cut = 500;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        errors.push_back(AgentError {
            at_ms: chrono::Utc::now().timestamp_millis(),
            message,
        });
        while errors.len() > MAX_RECENT_ERRORS {
            errors.pop_front();
        }
    }

    /// The errors, oldest first.
    pub fn recent(&self) -> Vec<AgentError> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// `<execution>/<step>/<phase>` while an upgrade runs.
    pub fn set_upgrading(&self, upgrading: Option<String>) {
        *self.upgrading.lock().unwrap_or_else(|e| e.into_inner()) = upgrading;
    }

    /// The upgrade running, if any.
    pub fn upgrading(&self) -> Option<String> {
        self.upgrading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Agent {
    /// What the next heartbeat says of this agent.
    pub fn self_report(&self) -> AgentReport {
        let (runtime, k3s_version, _) = self.runtime_info();
        let running = self
            .running_pin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let modules = match &self.state.plan {
            Some(plan) if self.state.phase >= Phase::Installed => vec![RunningModule {
                module_name: plan.module,
                module_version_id: running.map(|p| p.module_version_id),
                k3s_version,
            }],
            _ => Vec::new(),
        };
        AgentReport {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            runtime: runtime.to_owned(),
            capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
            modules,
            recent_errors: self.diagnostics.recent(),
            upgrading: self.diagnostics.upgrading(),
            join_token_fingerprint: match self.state.phase {
                Phase::Bootstrapped | Phase::Joined | Phase::Ready => {
                    self.state.token_fingerprint.clone()
                }
                _ => None,
            },
        }
    }
}
