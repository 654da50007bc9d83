//! The skills service's tuning: flags (and `POWERNODE_*` variables) of
//! `powernode up` / `serve`. Every default is a constant here, used by both
//! clap and [`Default`], so the two cannot drift apart.

use std::time::Duration;

/// Default step timeout (milliseconds): ten minutes.
pub const DEFAULT_STEP_TIMEOUT_MS: u64 = 600_000;
/// Default timer tick (milliseconds).
pub const DEFAULT_TICK_MS: u64 = 1000;

/// Skill execution tuning (flags of `powernode up` / `serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct SkillsConfig {
    /// A running step with no outcome after this long fails (milliseconds).
    #[arg(
        long = "skill-step-timeout-ms",
        env = "POWERNODE_SKILL_STEP_TIMEOUT_MS",
        default_value_t = DEFAULT_STEP_TIMEOUT_MS
    )]
    pub step_timeout_ms: u64,
    /// How often the skills timer looks at running executions (timeouts,
    /// decisions a crash or a lost race left undone), in milliseconds.
    #[arg(
        long = "skill-tick-ms",
        env = "POWERNODE_SKILL_TICK_MS",
        default_value_t = DEFAULT_TICK_MS
    )]
    pub tick_ms: u64,
}

impl Default for SkillsConfig {
    fn default() -> Self {
        Self {
            step_timeout_ms: DEFAULT_STEP_TIMEOUT_MS,
            tick_ms: DEFAULT_TICK_MS,
        }
    }
}

impl SkillsConfig {
    /// The step timeout.
    pub fn step_timeout(&self) -> Duration {
        Duration::from_millis(self.step_timeout_ms.max(1))
    }

    /// The timer's tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms.max(10))
    }

    /// The step timeout in words (`600 s`, `1500 ms`).
    pub fn step_timeout_words(&self) -> String {
        let ms = self.step_timeout_ms.max(1);
        if ms.is_multiple_of(1000) {
            format!("{} s", ms / 1000)
        } else {
            format!("{ms} ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        skills: SkillsConfig,
    }

    #[test]
    fn clap_defaults_are_the_default() {
        let parsed = Cli::parse_from(["powernode"]).skills;
        let default = SkillsConfig::default();
        assert_eq!(parsed.step_timeout_ms, default.step_timeout_ms);
        assert_eq!(parsed.tick_ms, default.tick_ms);
        assert_eq!(default.step_timeout_words(), "600 s");
    }
}
