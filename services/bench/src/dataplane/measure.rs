//! The figures' raw material: agents' apply lines, `wg` in a namespace,
//! probe results, and agents' peak RSS.

use super::fleet::Member;
use super::netlab::probe::{ProbeLoop, ProbeResult};
use super::netlab::wireguard::{KeyPair, Tunnel};
use super::netlab::Host;
use std::path::Path;
use std::time::{Duration, Instant};

/// What an agent logs when it applied a new revision (see
/// `agent/src/agent/dataplane.rs`).
const APPLIED: &str = "WireGuard config applied";

/// Every `(revision, wall-clock ms)` the agent logged applying, in order.
pub(super) fn applies(log: &Path) -> Vec<(u64, i64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(APPLIED))
        .filter_map(|l| Some((field(l, "revision=")?, field(l, "at_ms=")?)))
        .collect()
}

/// The number after `name` (e.g. `revision=`) in a log line.
fn field<T: std::str::FromStr>(line: &str, name: &str) -> Option<T> {
    let at = line.find(name)? + name.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// When `m`'s agent first applied a revision above `before`, not earlier
/// than `not_before_ms` (wall clock, ms).
pub(super) fn first_apply_after(m: &Member, before: u64, not_before_ms: i64) -> Option<i64> {
    applies(&m.log())
        .into_iter()
        .find(|(rev, at)| *rev > before && *at >= not_before_ms)
        .map(|(_, at)| at)
}

/// Whether `host`'s WireGuard `interface` routes `prefix` to `public_key`
/// (`wg show <if> allowed-ips`).
pub(super) fn routes_to(
    host: &Host,
    interface: &str,
    public_key: &str,
    prefix: &str,
) -> anyhow::Result<bool> {
    let out = host.run("wg", &["show", interface, "allowed-ips"])?;
    Ok(out.lines().any(|l| {
        let mut parts = l.split_whitespace();
        parts.next() == Some(public_key) && parts.any(|p| p == prefix)
    }))
}

/// The raw ceiling of an apply: `rounds` bare moves of an allowed IP on a
/// scratch `boringtun-cli` interface in `host`, each `wg set <if> peer K
/// remove` then `wg set <if> peer K allowed-ips <ip>` (boringtun 0.7 cannot
/// modify a peer in place; the agent does the same), through `nsenter` as
/// the agent runs `wg` as a child process; each move's milliseconds.
pub(super) fn wg_set_ceiling(host: &Host, dir: &Path, rounds: usize) -> anyhow::Result<Vec<f64>> {
    let tunnel = Tunnel::start(host, "pnceil0", dir)?;
    let (own, other) = (KeyPair::generate()?, KeyPair::generate()?);
    tunnel.configure(host, &own, 51899, "fdcc::1/128", &[], dir)?;
    let iface = tunnel.interface.as_str();
    let mut ms = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let ip = format!("fdcc::{}/128", 2 + i % 2);
        let t = Instant::now();
        if i > 0 {
            host.run("wg", &["set", iface, "peer", &other.public, "remove"])?;
        }
        host.run(
            "wg",
            &["set", iface, "peer", &other.public, "allowed-ips", &ip],
        )?;
        if i > 0 {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(ms)
}

/// The successful requests' round trips (ms) among `results`.
pub(super) fn round_trips(results: &[ProbeResult]) -> Vec<f64> {
    results
        .iter()
        .filter(|r| r.outcome.is_ok() && r.retried.is_none())
        .map(|r| r.took.as_secs_f64() * 1000.0)
        .collect()
}

/// When (since `from`) the first request sent after `from` was answered by
/// `instance`.
pub(super) fn first_answer_from(
    results: &[ProbeResult],
    from: Instant,
    instance: &str,
) -> Option<Duration> {
    results
        .iter()
        .find(|r| r.at >= from && r.outcome.as_ref().is_ok_and(|a| a.instance == instance))
        .map(|r| r.at + r.took - from)
}

/// Waits (blocking) until the loop's last result is an answer from
/// `instance`, at most `timeout`.
pub(super) fn wait_loop_answer(
    probes: &ProbeLoop,
    instance: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let last = probes.results().last().cloned();
        if let Some(r) = &last {
            if r.outcome.as_ref().is_ok_and(|a| a.instance == instance) {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            anyhow::bail!(
                "the probe loop saw no answer from instance {instance} in {timeout:?}; last: {last:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Peak resident set (`VmHWM`, MiB) of a running process.
pub(super) fn peak_rss_mib(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// SIGKILLs every `boringtun-cli` in `host`'s network namespace (its
/// interface goes with it); how many.
pub(super) fn kill_boringtun(host: &Host) -> anyhow::Result<usize> {
    let pids =
        super::netlab::run(std::process::Command::new("ip").args(["netns", "pids", host.netns()]))?;
    let mut killed = 0;
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim().starts_with("boringtun") {
            // SAFETY: kill has no memory preconditions; a gone pid fails with ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    Ok(killed)
}

/// `sorted`'s `p` quantile (nearest rank), rounded to 0.01.
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    crate::lifecycle::percentile(sorted, p)
}

/// `v` sorted.
pub(super) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// `x` rounded to 0.01.
pub(super) fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
