//! The campaign's results: one row per fault, a table per fault type
//! (count, invariant checks passed/failed, recovery time p50/max) and every
//! violation with its details; as text and as JSON.

use super::invariants::INVARIANTS;
use super::schedule::{Fault, Kind};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One invariant broken after one fault.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The fault's number in the schedule (0: before the first fault).
    pub fault: usize,
    /// The fault's kind and target.
    pub during: String,
    /// Which invariant.
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

/// What one fault did and what was checked after it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The fault.
    pub fault: Fault,
    /// What injecting it did.
    pub detail: String,
    /// Heal → converged (ms), when it converged.
    pub recovery_ms: Option<u64>,
    /// Fault → a live holder for the downed holder's VIP (ms), when the
    /// fault took a VIP holder down for longer than the bound.
    pub failover_ms: Option<u64>,
    /// Each invariant checked: passed or not.
    pub checks: Vec<(&'static str, bool)>,
}

/// The whole campaign.
#[derive(Debug, Default)]
pub struct Campaign {
    /// Per fault.
    pub outcomes: Vec<Outcome>,
    /// Every violation.
    pub violations: Vec<Violation>,
}

fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
}

impl Campaign {
    /// The per-kind table.
    pub fn table(&self) -> Vec<Value> {
        let mut rows = Vec::new();
        for kind in Kind::ALL {
            let of: Vec<&Outcome> = self
                .outcomes
                .iter()
                .filter(|o| o.fault.kind == kind)
                .collect();
            if of.is_empty() {
                continue;
            }
            let checks = of.iter().flat_map(|o| o.checks.iter());
            let passed = checks.clone().filter(|c| c.1).count();
            let failed = checks.filter(|c| !c.1).count();
            let mut rec: Vec<u64> = of.iter().filter_map(|o| o.recovery_ms).collect();
            rec.sort_unstable();
            let mut fo: Vec<u64> = of.iter().filter_map(|o| o.failover_ms).collect();
            fo.sort_unstable();
            rows.push(json!({
                "fault": kind.name(),
                "count": of.len(),
                "checks_passed": passed,
                "checks_failed": failed,
                "recovery_p50_ms": quantile(&rec, 0.5),
                "recovery_max_ms": rec.last(),
                "failovers": fo.len(),
                "failover_p50_ms": quantile(&fo, 0.5),
                "failover_max_ms": fo.last(),
            }));
        }
        rows
    }

    /// Failed checks by invariant.
    pub fn by_invariant(&self) -> BTreeMap<&'static str, (usize, usize)> {
        let mut m: BTreeMap<&'static str, (usize, usize)> =
            INVARIANTS.iter().map(|i| (*i, (0, 0))).collect();
        for (name, ok) in self.outcomes.iter().flat_map(|o| o.checks.iter()) {
            let e = m.entry(name).or_default();
            if *ok {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        m
    }

    /// Prints the table and every violation.
    pub fn print(&self) {
        let fmt = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
        println!("\n== chaos: per fault type");
        println!(
            "{:<18} {:>5} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "fault", "count", "passed", "failed", "rec p50", "rec max", "fo p50", "fo max"
        );
        for r in self.table() {
            println!(
                "{:<18} {:>5} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
                r["fault"].as_str().unwrap_or_default(),
                fmt(&r["count"]),
                fmt(&r["checks_passed"]),
                fmt(&r["checks_failed"]),
                fmt(&r["recovery_p50_ms"]),
                fmt(&r["recovery_max_ms"]),
                fmt(&r["failover_p50_ms"]),
                fmt(&r["failover_max_ms"]),
            );
        }
        println!("(recovery: heal → rig converged, ms; fo: holder down → live holder, ms)");
        println!("\n== chaos: per invariant (passed/failed)");
        for (name, (ok, bad)) in self.by_invariant() {
            println!("{name:<27} {ok:>5} {bad:>5}");
        }
        println!("\n== chaos: {} violation(s)", self.violations.len());
        for v in &self.violations {
            println!(
                "  fault #{} ({}): {}: {}",
                v.fault, v.during, v.invariant, v.detail
            );
        }
    }

    /// As JSON.
    pub fn to_json(&self, seed: u64, extra: Value) -> Value {
        json!({
            "seed": seed,
            "faults": self.outcomes.len(),
            "table": self.table(),
            "invariants": self.by_invariant().into_iter().map(|(k, (ok, bad))| (k.to_string(), json!({"passed": ok, "failed": bad}))).collect::<serde_json::Map<_, _>>(),
            "violations": self.violations.iter().map(|v| json!({
                "fault": v.fault, "during": v.during, "invariant": v.invariant, "detail": v.detail,
            })).collect::<Vec<_>>(),
            "per_fault": self.outcomes.iter().map(|o| json!({
                "n": o.fault.n,
                "fault": o.fault.kind.name(),
                "target": o.fault.target,
                "down_ms": o.fault.down.as_millis() as u64,
                "detail": o.detail,
                "recovery_ms": o.recovery_ms,
                "failover_ms": o.failover_ms,
                "failed": o.checks.iter().filter(|c| !c.1).map(|c| c.0).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "run": extra,
        })
    }
}
