//! The upgrade bench's figures, read from the log's own store times: how
//! long the executor takes from a batch's last outcome to the next step it
//! starts, from an agent's report to the step's outcome, and how long a
//! step takes as a whole.

use chrono::{DateTime, Utc};
use powernode_events::EventPayload;
use std::collections::HashMap;

/// What one execution's events say, in log order.
#[derive(Debug, Default)]
struct Timeline {
    started: Option<DateTime<Utc>>,
    last_outcome: Option<DateTime<Utc>>,
    first_step: bool,
    step_started: HashMap<u32, DateTime<Utc>>,
    reported: HashMap<u32, DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
}

/// The figures (milliseconds), unsorted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Figures {
    /// A step's outcome stored → the next step of that execution started
    /// (the executor's scheduling overhead between batches).
    pub overhead_ms: Vec<f64>,
    /// `…execution.started` → its first step started.
    pub first_step_ms: Vec<f64>,
    /// The agent's report stored → the step's outcome stored.
    pub report_to_outcome_ms: Vec<f64>,
    /// A step started → its outcome stored (the node's upgrade, the order's
    /// delivery and the report's way back included).
    pub step_ms: Vec<f64>,
    /// The first execution started → the last one finished.
    pub span_ms: f64,
    /// Executions completed / aborted.
    pub completed: usize,
    /// Executions aborted.
    pub aborted: usize,
    /// Steps that failed.
    pub failed_steps: usize,
}

fn ms(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// Folds `(stored_at, payload)` pairs, in log order, into the figures.
pub fn figures<'a>(events: impl IntoIterator<Item = (DateTime<Utc>, &'a EventPayload)>) -> Figures {
    let mut f = Figures::default();
    let mut runs: HashMap<String, Timeline> = HashMap::new();
    for (at, payload) in events {
        match payload {
            EventPayload::SkillExecutionStarted(p) => {
                runs.entry(p.execution_id.clone()).or_default().started = Some(at);
            }
            EventPayload::SkillStepStarted(p) => {
                let t = runs.entry(p.execution_id.clone()).or_default();
                if let Some(o) = t.last_outcome {
                    f.overhead_ms.push(ms(at - o));
                } else if !t.first_step {
                    if let Some(s) = t.started {
                        f.first_step_ms.push(ms(at - s));
                    }
                }
                t.first_step = true;
                t.step_started.insert(p.step, at);
            }
            EventPayload::ModuleUpgraded(p) => {
                let t = runs.entry(p.execution_id.clone()).or_default();
                t.reported.insert(p.step, at);
            }
            EventPayload::ModuleUpgradeFailed(p) => {
                let t = runs.entry(p.execution_id.clone()).or_default();
                t.reported.insert(p.step, at);
            }
            EventPayload::SkillStepSucceeded(p) => {
                outcome(
                    &mut f,
                    runs.entry(p.execution_id.clone()).or_default(),
                    p.step,
                    at,
                );
            }
            EventPayload::SkillStepFailed(p) => {
                f.failed_steps += 1;
                outcome(
                    &mut f,
                    runs.entry(p.execution_id.clone()).or_default(),
                    p.step,
                    at,
                );
            }
            EventPayload::SkillExecutionCompleted(p) => {
                f.completed += 1;
                runs.entry(p.execution_id.clone()).or_default().finished = Some(at);
            }
            EventPayload::SkillExecutionAborted(p) => {
                f.aborted += 1;
                runs.entry(p.execution_id.clone()).or_default().finished = Some(at);
            }
            _ => {}
        }
    }
    let first = runs.values().filter_map(|t| t.started).min();
    let last = runs.values().filter_map(|t| t.finished).max();
    if let (Some(a), Some(b)) = (first, last) {
        f.span_ms = ms(b - a);
    }
    f
}

fn outcome(f: &mut Figures, t: &mut Timeline, step: u32, at: DateTime<Utc>) {
    if let Some(r) = t.reported.get(&step) {
        f.report_to_outcome_ms.push(ms(at - *r));
    }
    if let Some(s) = t.step_started.get(&step) {
        f.step_ms.push(ms(at - *s));
    }
    t.last_outcome = Some(at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_events::payloads::skills::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    fn started(step: u32) -> EventPayload {
        EventPayload::SkillStepStarted(SkillStepStarted {
            execution_id: "e".into(),
            step,
            instance_id: format!("i{step}"),
        })
    }

    fn ok(step: u32) -> EventPayload {
        EventPayload::SkillStepSucceeded(SkillStepSucceeded {
            execution_id: "e".into(),
            step,
            instance_id: format!("i{step}"),
            running_version_id: None,
        })
    }

    #[test]
    fn overhead_runs_from_a_batch_s_last_outcome_to_the_next_start() {
        let exec = EventPayload::SkillExecutionStarted(SkillExecutionStarted {
            execution_id: "e".into(),
            skill: SkillName::RollingModuleUpgrade,
            inputs: Box::default(),
            scope: "template/t".into(),
            steps: vec![],
            max_consecutive_failures: 1,
        });
        let done = EventPayload::SkillExecutionCompleted(SkillExecutionCompleted {
            execution_id: "e".into(),
            succeeded: 3,
            failed: 0,
            cluster_id: None,
        });
        // Batch 1: steps 0 and 1 start together; batch 2: step 2.
        let events = [
            (at(0), exec),
            (at(4), started(0)),
            (at(5), started(1)),
            (at(200), ok(0)),
            (at(230), ok(1)),
            (at(236), started(2)),
            (at(440), ok(2)),
            (at(441), done),
        ];
        let f = figures(events.iter().map(|(t, p)| (*t, p)));
        assert_eq!(f.first_step_ms, vec![4.0]);
        assert_eq!(f.overhead_ms, vec![6.0]);
        assert_eq!(f.step_ms, vec![196.0, 225.0, 204.0]);
        assert_eq!(f.span_ms, 441.0);
        assert_eq!((f.completed, f.aborted, f.failed_steps), (1, 0, 0));
    }
}
