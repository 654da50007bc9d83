//! Sensor and failover tuning: the flags (and `POWERNODE_*` variables) of
//! `powernode up` / `serve`. Every default is a constant here, used by both
//! clap and [`Default`], so the two cannot drift apart.

use super::candidates::Scoring;
use chrono::{DateTime, Utc};
use powernode_projections::fleet::VirtualIp;
use std::time::Duration;

/// Default silence threshold (milliseconds).
pub const DEFAULT_SILENCE_THRESHOLD_MS: u64 = 3000;
/// Default approval TTL (seconds).
pub const DEFAULT_APPROVAL_TTL_SECS: u64 = 900;
/// Default cooldown between automatic promotions of one VIP (seconds).
pub const DEFAULT_COOLDOWN_SECS: u64 = 30;
/// Default maximum of promotions of one VIP per window.
pub const DEFAULT_MAX_PROMOTIONS: usize = 3;
/// Default damping window (seconds).
pub const DEFAULT_WINDOW_SECS: u64 = 600;

/// What happens when a holder goes silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailoverPolicy {
    /// Propose, and promote only once an operator approves.
    #[default]
    RequireApproval,
    /// Promote the best candidate at once.
    Auto,
}

/// Sensor and failover tuning (flags of `powernode up` / `serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverConfig {
    /// A VIP holder not heard for this long is silent (milliseconds).
    #[arg(
        long = "silence-threshold-ms",
        env = "POWERNODE_SILENCE_THRESHOLD_MS",
        default_value_t = DEFAULT_SILENCE_THRESHOLD_MS
    )]
    pub silence_threshold_ms: u64,
    /// What a silence leads to.
    #[arg(
        long = "failover-policy",
        env = "POWERNODE_FAILOVER_POLICY",
        value_enum,
        default_value_t = FailoverPolicy::default()
    )]
    pub policy: FailoverPolicy,
    /// How long a failover approval request stays approvable (seconds).
    #[arg(
        long = "approval-ttl-secs",
        env = "POWERNODE_APPROVAL_TTL_SECS",
        default_value_t = DEFAULT_APPROVAL_TTL_SECS
    )]
    pub approval_ttl_secs: u64,
    /// No automatic promotion of a VIP within this long of its last one (seconds).
    #[arg(
        long = "failover-cooldown-secs",
        env = "POWERNODE_FAILOVER_COOLDOWN_SECS",
        default_value_t = DEFAULT_COOLDOWN_SECS
    )]
    pub cooldown_secs: u64,
    /// At most this many promotions of one VIP per window…
    #[arg(
        long = "max-promotions",
        env = "POWERNODE_MAX_PROMOTIONS",
        default_value_t = DEFAULT_MAX_PROMOTIONS
    )]
    pub max_promotions: usize,
    /// …of this many seconds.
    #[arg(
        long = "promotion-window-secs",
        env = "POWERNODE_PROMOTION_WINDOW_SECS",
        default_value_t = DEFAULT_WINDOW_SECS
    )]
    pub window_secs: u64,
    /// Name this replica reports as observer (default: `sensor@<hostname>`).
    #[arg(long = "observer", env = "POWERNODE_OBSERVER")]
    pub observer: Option<String>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            silence_threshold_ms: DEFAULT_SILENCE_THRESHOLD_MS,
            policy: FailoverPolicy::default(),
            approval_ttl_secs: DEFAULT_APPROVAL_TTL_SECS,
            cooldown_secs: DEFAULT_COOLDOWN_SECS,
            max_promotions: DEFAULT_MAX_PROMOTIONS,
            window_secs: DEFAULT_WINDOW_SECS,
            observer: None,
        }
    }
}

impl FailoverConfig {
    /// The silence threshold.
    pub fn threshold(&self) -> Duration {
        Duration::from_millis(self.silence_threshold_ms.max(1))
    }

    /// The damping window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// Scoring parameters at `now`.
    pub fn scoring<'a>(
        &self,
        liveness: &'a crate::liveness::Liveness,
        now: DateTime<Utc>,
    ) -> Scoring<'a> {
        Scoring {
            liveness,
            threshold: self.threshold(),
            window: self.window(),
            now,
        }
    }

    /// Why flap damping holds back an automatic promotion of `vip` now, if it does.
    pub fn damped(&self, vip: &VirtualIp, now: DateTime<Utc>) -> Option<String> {
        if let Some(last) = vip.promotions.last() {
            let since = (now - last.at).to_std().unwrap_or_default();
            if since < Duration::from_secs(self.cooldown_secs) {
                return Some(format!(
                    "cooldown: last promotion {:.1} s ago (min {} s)",
                    since.as_secs_f64(),
                    self.cooldown_secs
                ));
            }
        }
        let window_start = now - chrono::Duration::from_std(self.window()).unwrap_or_default();
        let recent = vip
            .promotions
            .iter()
            .filter(|p| p.at >= window_start)
            .count();
        (recent >= self.max_promotions).then(|| {
            format!(
                "{recent} promotions in the last {} s (max {})",
                self.window_secs, self.max_promotions
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        failover: FailoverConfig,
    }

    #[test]
    fn clap_defaults_are_the_default() {
        let parsed = Cli::parse_from(["powernode"]).failover;
        let default = FailoverConfig::default();
        assert_eq!(parsed.silence_threshold_ms, default.silence_threshold_ms);
        assert_eq!(parsed.policy, default.policy);
        assert_eq!(parsed.approval_ttl_secs, default.approval_ttl_secs);
        assert_eq!(parsed.cooldown_secs, default.cooldown_secs);
        assert_eq!(parsed.max_promotions, default.max_promotions);
        assert_eq!(parsed.window_secs, default.window_secs);
        assert_eq!(parsed.observer, default.observer);
    }
}
