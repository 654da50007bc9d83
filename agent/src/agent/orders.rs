//! What a heartbeat reply orders beyond the handshake: adopt a rotated
//! join token, and run an upgrade step in the background
//! ([`super::upgrade`]).

use super::upgrade::{self, UpgradeCtx};
use super::{role_of, Agent};
use crate::state::Phase;
use powernode_protocol::{fingerprint, HeartbeatReply};
use std::time::Duration;
use tracing::{info, warn};

impl Agent {
    /// `wait_ready` of an upgrade waits at most `timeout` (default
    /// [`upgrade::DEFAULT_READY_TIMEOUT`]).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Whether an upgrade step runs in this process now.
    pub fn upgrading(&self) -> bool {
        self.upgrade_task
            .as_ref()
            .is_some_and(|(_, _, task)| !task.is_finished())
    }

    /// Applies the reply's join token and upgrade order.
    pub(super) async fn take_orders(&mut self, hb: &HeartbeatReply) {
        if let Some(update) = &hb.join_token {
            self.adopt_token(update).await;
        }
        self.dispatch_upgrade(hb);
    }

    async fn adopt_token(&mut self, update: &powernode_protocol::JoinTokenUpdate) {
        // A node still joining is refused at `ready` and joins again.
        let joined = self.state.phase == Phase::Ready;
        let (Some(plan), Some(old)) = (self.state.plan.clone(), self.state.token.clone()) else {
            return;
        };
        if !joined
            || self.state.token_fingerprint.as_deref() == Some(update.fingerprint.as_str())
            || fingerprint(update.token.as_bytes()) != update.fingerprint
        {
            return;
        }
        let role = role_of(plan.module);
        let (new, rotate) = (update.token.clone(), update.rotate);
        match self
            .with_runtime(move |rt| rt.adopt_token(role, &old, &new, rotate))
            .await
        {
            Ok(()) => {
                info!(instance = %self.instance_id(), fingerprint = %update.fingerprint, rotate, "took the cluster's rotated join token");
                self.state.token = Some(update.token.clone());
                self.state.token_fingerprint = Some(update.fingerprint.clone());
                if let Err(e) = self.store.save(&self.state) {
                    warn!(error = %e, "could not save the rotated join token");
                }
                self.report_now = true;
            }
            Err(e) => {
                warn!(instance = %self.instance_id(), error = %e, "could not take the rotated join token; retrying with the next heartbeat");
                self.diagnostics
                    .error(format!("join token rotation failed: {e}"));
            }
        }
    }

    /// Starts the reply's upgrade order unless it runs or ran already; on
    /// the first reply after a restart, also submits an outcome a previous
    /// run signed but did not get answered.
    fn dispatch_upgrade(&mut self, hb: &HeartbeatReply) {
        if self.upgrading() {
            return;
        }
        let record = self.upgrades.load();
        let order = match (&hb.upgrade, &record) {
            (Some(order), record) if upgrade::wanted(record.as_ref(), order) => order.clone(),
            (_, Some(r)) if r.outcome.is_some() && !r.submitted => r.order.clone(),
            _ => return,
        };
        let Some(plan) = &self.state.plan else {
            return;
        };
        if record
            .as_ref()
            .is_some_and(|r| r.is(&order) && r.outcome.is_some())
        {
            info!(execution = %order.execution_id, step = order.step, "submitting the outcome of an upgrade step run before");
        }
        let ctx = UpgradeCtx {
            runtime: self.runtime.clone(),
            info: self.info.clone(),
            link: self.link.clone(),
            identity: self.identity.clone(),
            account_id: self.state.account_id.clone().unwrap_or_default(),
            instance_id: self.instance_id().to_owned(),
            role: role_of(plan.module),
            store: self.upgrades.clone(),
            diagnostics: self.diagnostics.clone(),
            ready_timeout: self.ready_timeout,
            running: self.running_pin.clone(),
        };
        let (execution, step) = (order.execution_id.clone(), order.step);
        self.upgrade_task = Some((execution, step, upgrade::spawn(ctx, order)));
    }
}
