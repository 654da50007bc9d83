//! Day-2 operations on a real node: pinned installs, the phases of an
//! upgrade and join-token rotation.
//!
//! * install a catalog version: the installer with
//!   `INSTALL_K3S_VERSION=<k3s_version>` (and `INSTALL_K3S_SKIP_START`,
//!   `INSTALL_K3S_SKIP_ENABLE`: the agent starts k3s itself); an upgrade
//!   then runs `systemctl restart k3s` (or `k3s-agent`);
//! * cordon / drain / uncordon: `k3s kubectl cordon|drain|uncordon <node>`.
//!   A server uses its admin kubeconfig (k3s's default); a worker has no
//!   admin credentials and uses `--kubeconfig
//!   /var/lib/rancher/k3s/agent/kubelet.kubeconfig`. The node authorizer
//!   may refuse a kubelet's own credentials to patch or evict: the phase
//!   then fails and its error says so, nothing is pretended;
//! * readiness: `k3s kubectl get node <node>` polled until its `STATUS`
//!   column reads `Ready`;
//! * re-stamp: the server config rewritten with the new flags, k3s restarted;
//! * token rotation: `k3s token rotate --token <old> --new-token <new>` on
//!   the one server told to, then on every node the stored token is
//!   rewritten in place (`config.yaml` and the drop-in of a server, the
//!   drop-in's `K3S_TOKEN` of a worker) without a restart.

use super::{
    read_optional, role_word, token_password, write_file, K3sRuntime, AGENT_DROP_IN, CONFIG_FILE,
    K3S_BIN, SERVER_DROP_IN,
};
use crate::driver::{ModuleVersionPin, Role, Runtime, RuntimeError};
use std::time::{Duration, Instant};

/// A worker's own kubeconfig (the kubelet's credentials).
pub const WORKER_KUBECONFIG: &str = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig";

/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(500);

impl K3sRuntime {
    fn unit(role: Role) -> &'static str {
        match role {
            Role::Server => "k3s",
            Role::Agent => "k3s-agent",
        }
    }

    /// `k3s kubectl [--kubeconfig <kubelet's>] <args…>`, its stdout.
    fn kubectl(&mut self, role: Role, args: &[&str]) -> Result<String, RuntimeError> {
        let kubeconfig = self.path(WORKER_KUBECONFIG).display().to_string();
        let mut all: Vec<&str> = vec!["kubectl"];
        if role == Role::Agent {
            all.extend(["--kubeconfig", kubeconfig.as_str()]);
        }
        all.extend(args);
        self.run_output(K3S_BIN, &all, &[])
            .map_err(|e| match (role, e) {
                (Role::Agent, RuntimeError::Command { command, detail }) => RuntimeError::Command {
                    command,
                    detail: format!(
                        "{detail} (a worker acts with its kubelet's credentials, which the node \
                     authorizer may not allow to cordon or evict)"
                    ),
                },
                (_, e) => e,
            })
    }

    pub(super) fn install_pinned(
        &mut self,
        role: Role,
        pin: Option<&ModuleVersionPin>,
    ) -> Result<(), RuntimeError> {
        if let Some(pin) = pin {
            self.version = pin.k3s_version.clone();
        }
        self.install(role)
    }

    pub(super) fn cordon_node(&mut self, role: Role) -> Result<(), RuntimeError> {
        let node = self.node_name.clone();
        self.kubectl(role, &["cordon", &node]).map(drop)
    }

    pub(super) fn uncordon_node(&mut self, role: Role) -> Result<(), RuntimeError> {
        let node = self.node_name.clone();
        self.kubectl(role, &["uncordon", &node]).map(drop)
    }

    pub(super) fn drain_node(&mut self, role: Role, timeout: Duration) -> Result<(), RuntimeError> {
        let node = self.node_name.clone();
        let timeout = format!("--timeout={}s", timeout.as_secs().max(1));
        self.kubectl(
            role,
            &[
                "drain",
                &node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                &timeout,
            ],
        )
        .map(drop)
    }

    pub(super) fn upgrade_node(
        &mut self,
        role: Role,
        pin: Option<&ModuleVersionPin>,
    ) -> Result<(), RuntimeError> {
        self.install_pinned(role, pin)?;
        self.run("systemctl", &["restart", Self::unit(role)], &[])
    }

    pub(super) fn wait_node_ready(
        &mut self,
        role: Role,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let node = self.node_name.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.kubectl(role, &["get", "node", &node, "--no-headers"]) {
                Ok(out) if node_is_ready(&out) => return Ok(()),
                Ok(out) => format!("node status: {}", out.trim()),
                Err(e) => e.to_string(),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(RuntimeError::Unexpected(format!(
                    "node {node} was not Ready within {timeout:?} ({last})"
                )));
            }
            std::thread::sleep(READY_POLL.min(deadline - now));
        }
    }

    /// A worker's re-stamp: its per-node flags (`--flannel-iface`) go to
    /// `/etc/rancher/k3s/config.yaml` (k3s agent reads it too) and
    /// `k3s-agent` restarts.
    pub(super) fn restamp_agent(&mut self, extra_flags: &[String]) -> Result<(), RuntimeError> {
        let flags = super::config::ExtraFlags::parse(&[], extra_flags)?;
        let config = super::config::agent_config(&flags);
        super::write_file(&self.path(super::CONFIG_FILE), &config, 0o600)?;
        self.apply("k3s-agent", super::AGENT_APPLIED, &[&config])
    }

    pub(super) fn restamp_server(&mut self, extra_flags: &[String]) -> Result<(), RuntimeError> {
        let mut plan = self.last_server.clone().ok_or_else(|| {
            RuntimeError::Unexpected(
                "cannot re-stamp: this agent has not started the k3s server since it started \
                 (the plan to rewrite is unknown)"
                    .into(),
            )
        })?;
        plan.extra_flags = extra_flags.to_vec();
        self.start_server(&plan)
    }

    pub(super) fn adopt_join_token(
        &mut self,
        role: Role,
        old: &str,
        new: &str,
        rotate: bool,
    ) -> Result<(), RuntimeError> {
        self.remember_secret(old);
        self.remember_secret(new);
        if rotate {
            if role != Role::Server {
                return Err(RuntimeError::Unexpected(
                    "only a server can rotate the cluster's token; this node is a worker".into(),
                ));
            }
            self.run(
                K3S_BIN,
                &["token", "rotate", "--token", old, "--new-token", new],
                &[],
            )?;
        }
        let files: &[&str] = match role {
            Role::Server => &[CONFIG_FILE, SERVER_DROP_IN],
            Role::Agent => &[AGENT_DROP_IN],
        };
        // A server's config holds the token it was started with: the full
        // `K10…::server:<password>` node token or only its password.
        let password = token_password(old);
        let mut rewritten = 0;
        for file in files {
            let path = self.path(file);
            let Some(text) = read_optional(&path)? else {
                continue;
            };
            let held = [old, password]
                .into_iter()
                .find(|t| !t.is_empty() && text.contains(*t));
            if let Some(held) = held {
                write_file(&path, &text.replace(held, new), 0o600)?;
                rewritten += 1;
            } else if text.contains(new) {
                rewritten += 1;
            }
        }
        if let Some(plan) = self.last_server.as_mut() {
            plan.token = new.to_owned();
        }
        if rewritten == 0 {
            return Err(RuntimeError::Unexpected(format!(
                "no {} configuration holds the node's join token; nothing was rewritten",
                role_word(role)
            )));
        }
        Ok(())
    }
}

/// Whether `kubectl get node <n> --no-headers` says `Ready` (not
/// `NotReady`, and `Ready,SchedulingDisabled` counts: a cordoned node is
/// ready).
pub fn node_is_ready(output: &str) -> bool {
    output
        .split_whitespace()
        .nth(1)
        .is_some_and(|status| status.split(',').any(|s| s == "Ready"))
}

#[cfg(test)]
mod tests {
    use super::node_is_ready;

    #[test]
    fn readiness_reads_the_status_column() {
        assert!(node_is_ready(
            "n1   Ready    control-plane   5m   v1.31.0+k3s1\n"
        ));
        assert!(node_is_ready(
            "n1 Ready,SchedulingDisabled <none> 5m v1.31.0+k3s1"
        ));
        assert!(!node_is_ready("n1 NotReady <none> 5m v1.31.0+k3s1"));
        assert!(!node_is_ready(""));
    }
}
