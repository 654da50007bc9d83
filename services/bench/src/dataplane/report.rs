//! The figures as one JSON object or a table, each beside its raw ceiling.

use super::measure::r2;
use super::phases::{p, Figures};
use super::DataplaneArgs;
use serde_json::{json, Value};

/// `a / b` rounded to 0.01 (0 when `b` is 0).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        r2(a / b)
    } else {
        0.0
    }
}

/// The figures as JSON.
fn figures_json(args: &DataplaneArgs, bring_up_s: f64, f: &Figures) -> Value {
    let (prop50, prop99) = (p(&f.propagation_ms, 0.5), p(&f.propagation_ms, 0.99));
    let (wg50, wg99) = (p(&f.wg_set_ms, 0.5), p(&f.wg_set_ms, 0.99));
    let (rtt50, rtt99) = (p(&f.probe_rtt_ms, 0.5), p(&f.probe_rtt_ms, 0.99));
    let beyond = f.unplanned_raw_ms - args.silence_threshold_ms as f64;
    let rss_max = f.rss_mib.iter().copied().fold(0.0, f64::max);
    let rss_mean = if f.rss_mib.is_empty() {
        0.0
    } else {
        f.rss_mib.iter().sum::<f64>() / f.rss_mib.len() as f64
    };
    json!({
        "bench": "dataplane",
        "peers": args.peers,
        "servers": 2,
        "workers": args.peers - 2,
        "rounds": args.rounds,
        "heartbeat_ms": args.heartbeat_ms,
        "probe_interval_ms": args.probe_interval_ms,
        "bring_up_s": r2(bring_up_s),
        "config_propagation_p50_ms": prop50,
        "config_propagation_p99_ms": prop99,
        "config_apply_per_peer_p50_ms": p(&f.peer_apply_ms, 0.5),
        "config_apply_per_peer_p99_ms": p(&f.peer_apply_ms, 0.99),
        "wg_set_ceiling_p50_ms": wg50,
        "wg_set_ceiling_p99_ms": wg99,
        "config_propagation_ratio_p50": ratio(prop50, wg50),
        "config_propagation_ratio_p99": ratio(prop99, wg99),
        "silence_threshold_ms": args.silence_threshold_ms,
        "unplanned_downtime_raw_ms": r2(f.unplanned_raw_ms),
        "unplanned_downtime_ms": r2(beyond),
        "unplanned_failed_requests": f.unplanned_failed,
        "unplanned_requests": f.unplanned_requests,
        "unplanned_probe_every_ms": 10,
        "unplanned_probe_timeout_ms": args.outage_probe_timeout_ms,
        "probe_rtt_floor_p50_ms": rtt50,
        "probe_rtt_floor_p99_ms": rtt99,
        "unplanned_downtime_ratio": ratio(beyond, rtt50),
        "drain_failed_requests": f.drain_failed,
        "drain_requests": f.drain_requests,
        "drain_retried_after_reset": f.drain_retried,
        "drain_moved_ms": r2(f.drain_moved_ms),
        "drain_completed": f.drain_error.is_none(),
        "drain_error": f.drain_error,
        "peak_rss_mib_max": r2(rss_max),
        "peak_rss_mib_mean": r2(rss_mean),
        "agents_measured": f.rss_mib.len(),
    })
}

/// Prints the figures: one JSON line with `--json`, else a table.
pub(super) fn print(args: &DataplaneArgs, bring_up_s: f64, f: &Figures) -> anyhow::Result<()> {
    let j = figures_json(args, bring_up_s, f);
    if args.json {
        println!("{j}");
        return Ok(());
    }
    let g = |k: &str| j[k].to_string();
    println!(
        "bench dataplane: {} agents (2 servers, {} workers) in namespaces, up in {} s",
        args.peers,
        args.peers - 2,
        g("bring_up_s")
    );
    println!(
        "{:<44} {:>12} {:>20} {:>8}",
        "figure", "value", "raw ceiling", "ratio"
    );
    let rows = [
        (
            "config propagation p50 (ms)",
            g("config_propagation_p50_ms"),
            format!("wg set {}", g("wg_set_ceiling_p50_ms")),
            g("config_propagation_ratio_p50"),
        ),
        (
            "config propagation p99 (ms)",
            g("config_propagation_p99_ms"),
            format!("wg set {}", g("wg_set_ceiling_p99_ms")),
            g("config_propagation_ratio_p99"),
        ),
        (
            "unplanned downtime beyond threshold (ms)",
            g("unplanned_downtime_ms"),
            format!("probe rtt {}", g("probe_rtt_floor_p50_ms")),
            g("unplanned_downtime_ratio"),
        ),
        (
            "unplanned downtime raw (ms)",
            g("unplanned_downtime_raw_ms"),
            format!("threshold {}", g("silence_threshold_ms")),
            String::new(),
        ),
        (
            "drain failed requests",
            format!("{}/{}", g("drain_failed_requests"), g("drain_requests")),
            String::new(),
            String::new(),
        ),
        (
            "peak RSS per agent max / mean (MiB)",
            format!("{} / {}", g("peak_rss_mib_max"), g("peak_rss_mib_mean")),
            String::new(),
            String::new(),
        ),
    ];
    for (name, value, ceiling, ratio) in rows {
        println!("{name:<44} {value:>12} {ceiling:>20} {ratio:>8}");
    }
    Ok(())
}
