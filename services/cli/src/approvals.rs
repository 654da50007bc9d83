//! `powernode approvals …` (failover proposals waiting for an operator) and
//! `powernode vip failover` (dry run or forced promotion of a VIP).

use super::confirm::{confirm, Target};
use super::output::{cell, field, line, print_json, Ctx, Table};
use crate::ApiArgs;
use anyhow::bail;
use chrono::{DateTime, Utc};
use powernode_actions::ActionName;
use powernode_client::Refusal;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `powernode approvals`.
#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

/// Subcommands of `powernode approvals`.
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests and, for waiting ones, the failover candidates
    /// with their scores (system_list_approvals).
    List {
        /// Which ones (default: `requested`, those waiting for a decision).
        #[arg(long, value_enum)]
        status: Option<StatusFilter>,
    },
    /// Approve a request: the failover service promotes the proposed
    /// candidate (system_approve; permission system.sdwan_failover).
    Approve {
        /// Approval id (`appr-…`, from `approvals list`).
        approval_id: String,
        /// Wait until the new holder's agent applied the VIP.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (default: --timeout, else 2m).
        #[arg(long, value_parser = crate::api_args::parse_duration, value_name = "DURATION")]
        wait_timeout: Option<Duration>,
    },
    /// Reject a request: the VIP stays where it is (system_reject;
    /// permission system.sdwan_failover).
    Reject {
        /// Approval id (`appr-…`, from `approvals list`).
        approval_id: String,
        /// Why (required; recorded with the rejection).
        #[arg(long, required = true, value_name = "TEXT", value_parser = non_blank)]
        reason: String,
    },
}

/// `approvals list --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    /// Waiting for an operator.
    Requested,
    /// Approved.
    Granted,
    /// Rejected by an operator.
    Rejected,
    /// Nobody decided in time.
    Expired,
    /// The VIP moved on before anyone decided.
    Superseded,
    /// Every request.
    All,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Granted => "granted",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
            Self::All => "all",
        }
    }
}

fn non_blank(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("a rejection needs a reason; say why the failover is refused".into())
    } else {
        Ok(s.trim().to_string())
    }
}

/// Runs `powernode approvals …`.
pub async fn run(api: &ApiArgs, args: ApprovalsArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(api)?;
    match args.command {
        ApprovalsCommand::List { status } => {
            let query = match status {
                Some(s) => json!({ "status": s.as_str() }),
                None => json!({}),
            };
            let data = ctx
                .api
                .call(ActionName::ListApprovals.as_str(), &query)
                .await?;
            let waiting_only = matches!(status, None | Some(StatusFilter::Requested));
            ctx.show(&data, |d| render_approvals(d, Utc::now(), waiting_only));
        }
        ApprovalsCommand::Approve {
            approval_id,
            wait,
            wait_timeout,
        } => {
            let before = find_approval(&ctx, &approval_id).await?;
            approve(&ctx, &approval_id).await?;
            if let (true, Some(a)) = (wait, before) {
                let (vip, generation) = (field(&a, "virtual_ip_id"), a["generation"].as_u64());
                let t = crate::kube::wait_timeout(wait_timeout, api);
                let v = crate::kube::wait::vip_applied(&ctx.api, &vip, generation.unwrap_or(0), t)
                    .await?;
                if !ctx.json() {
                    line(&format!(
                        "VIP {vip} applied by its holder at generation {}",
                        field(&v, "generation")
                    ));
                }
            }
        }
        ApprovalsCommand::Reject {
            approval_id,
            reason,
        } => {
            let before = if ctx.json() {
                None
            } else {
                find_approval(&ctx, &approval_id).await?
            };
            let data = ctx
                .api
                .call(
                    ActionName::Reject.as_str(),
                    &json!({ "approval_id": approval_id, "reason": reason }),
                )
                .await?;
            ctx.show(&data, |d| {
                // The answer no longer carries the closed proposal; what
                // the list showed before does.
                let a = before.as_ref().unwrap_or(&d["approval"]);
                format!(
                    "rejected {approval_id} ({reason}); VIP {} stays with {} at generation {}\n",
                    field(a, "virtual_ip_id"),
                    field(a, "current_holder"),
                    field(a, "generation"),
                )
            });
        }
    }
    Ok(())
}

/// How long `approvals approve` waits to see the promotion land.
const PROMOTION_WAIT: Duration = Duration::from_secs(5);

/// The approval `id` as `approvals list --status all` shows it.
async fn find_approval(ctx: &Ctx, id: &str) -> anyhow::Result<Option<Value>> {
    let all = ctx
        .api
        .call(
            ActionName::ListApprovals.as_str(),
            &json!({ "status": "all" }),
        )
        .await?;
    Ok(all["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["id"] == id)
        .cloned())
}

async fn approve(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    if ctx.json() {
        let data = ctx
            .api
            .call(ActionName::Approve.as_str(), &json!({ "approval_id": id }))
            .await?;
        print_json(&data);
        return Ok(());
    }
    // The proposal as it stands before the decision: once the promotion
    // lands the VIP no longer carries it.
    let before = find_approval(ctx, id).await?;
    let data = ctx
        .api
        .call(ActionName::Approve.as_str(), &json!({ "approval_id": id }))
        .await?;
    let a = before.as_ref().unwrap_or(&data["approval"]);
    line(&format!(
        "approved {id}: promote {} to hold VIP {} (replacing {} at generation {})",
        field(a, "proposed_peer"),
        field(a, "virtual_ip_id"),
        field(a, "current_holder"),
        field(a, "generation"),
    ));
    // The failover service carries the approval out; show its outcome.
    let (Some(vip_id), Some(generation)) = (a["virtual_ip_id"].as_str(), a["generation"].as_u64())
    else {
        return Ok(());
    };
    let start = Instant::now();
    loop {
        let vip = ctx
            .api
            .call(ActionName::GetVirtualIp.as_str(), &json!({ "id": vip_id }))
            .await?;
        let v = &vip["virtual_ip"];
        if v["generation"].as_u64().is_some_and(|g| g > generation) {
            line(&format!(
                "VIP {vip_id} is now held by {} (peer {}) at generation {}",
                field(v, "holders"),
                field(v, "holder_peer_id"),
                field(v, "generation"),
            ));
            return Ok(());
        }
        if let Some(x) = find_approval(ctx, id)
            .await?
            .filter(|x| x["status"] == "superseded")
        {
            bail!(
                "approval {id} was granted but not carried out: superseded ({})",
                field(&x, "reason")
            );
        }
        if start.elapsed() >= PROMOTION_WAIT {
            line(&format!(
                "the promotion has not landed yet; follow it with `powernode vip get --id {vip_id}`"
            ));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `{approvals:[…]}` as a table, then the candidates of each waiting one.
/// `waiting_only`: the list holds waiting requests only (for the empty text).
pub fn render_approvals(data: &Value, now: DateTime<Utc>, waiting_only: bool) -> String {
    let approvals: Vec<&Value> = data["approvals"].as_array().into_iter().flatten().collect();
    let mut t = Table::new(&[
        "ID",
        "VIP",
        "HOLDER",
        "PROPOSED",
        "BEST-SCORE",
        "STATUS",
        "EXPIRES-IN",
    ]);
    for a in &approvals {
        t.row(vec![
            field(a, "id"),
            field(a, "virtual_ip_id"),
            field(a, "current_holder"),
            field(a, "proposed_peer"),
            best_score(a),
            field(a, "status"),
            expires_in(a, now),
        ]);
    }
    let mut out = t.render(if waiting_only {
        "No approvals waiting for a decision."
    } else {
        "No approvals."
    });
    for a in approvals.iter().filter(|a| a["status"] == "requested") {
        out.push('\n');
        out.push_str(&format!("{}: {}\n", field(a, "id"), field(a, "summary")));
        out.push_str(&render_candidates(&a["candidates"], 2));
    }
    out
}

/// The best candidate score of an approval, two decimals.
fn best_score(a: &Value) -> String {
    a["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["score"].as_f64())
        .reduce(f64::max)
        .map_or_else(|| "-".into(), |s| format!("{s:.2}"))
}

/// Time left to decide: `14m32s`, `expired`, or `-` once decided.
fn expires_in(a: &Value, now: DateTime<Utc>) -> String {
    match a["status"].as_str() {
        Some("expired") => "expired".into(),
        Some("requested") => {
            let Some(at) = a["expires_at"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            else {
                return field(a, "expires_at");
            };
            let left = at.with_timezone(&Utc) - now;
            match left.to_std() {
                Ok(d) if !d.is_zero() => duration_text(d),
                _ => "expired".into(),
            }
        }
        _ => "-".into(),
    }
}

/// `45s`, `14m32s`, `2h05m09s`.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Candidates `[{peer, instance_id, score, reasons, heard_within_threshold?}]`
/// as a table indented by `indent`.
pub fn render_candidates(candidates: &Value, indent: usize) -> String {
    let list: Vec<&Value> = candidates.as_array().into_iter().flatten().collect();
    let heard = list
        .iter()
        .any(|c| c.get("heard_within_threshold").is_some());
    let mut header = vec!["PEER", "INSTANCE", "SCORE"];
    if heard {
        header.push("HEARD");
    }
    header.push("REASONS");
    let mut t = Table::new(&header);
    for c in list {
        let mut row = vec![
            field(c, "peer"),
            field(c, "instance_id"),
            c["score"]
                .as_f64()
                .map_or_else(|| field(c, "score"), |s| format!("{s:.2}")),
        ];
        if heard {
            row.push(match c["heard_within_threshold"].as_bool() {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            });
        }
        let reasons: Vec<String> = c["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        row.push(if reasons.is_empty() {
            "-".into()
        } else {
            reasons.join(", ")
        });
        t.row(row);
    }
    t.render_indented(
        indent,
        "No candidates (no other ready k3s-server in the cluster).",
    )
}

/// `powernode vip failover`.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// Virtual IP id (`vip get` shows it).
    pub virtual_ip_id: String,
    /// Only show the holder, generation and scored candidates; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Promote this peer instead of the best candidate.
    #[arg(long = "to", value_name = "PEER_ID")]
    pub to: Option<String>,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Runs `powernode vip failover …`.
pub async fn failover(ctx: &Ctx, a: FailoverArgs) -> anyhow::Result<()> {
    let id = a.virtual_ip_id.as_str();
    let plan = ctx
        .api
        .call(
            ActionName::FailoverVirtualIp.as_str(),
            &json!({ "virtual_ip_id": id, "dry_run": true }),
        )
        .await?;
    let choice = chosen(&plan, a.to.as_deref());
    if a.dry_run {
        if let Choice::NotACandidate(peer) = &choice {
            bail!(not_a_candidate(id, peer, &plan));
        }
        ctx.show(&plan, |d| render_plan(d, &choice));
        return Ok(());
    }
    if !a.yes {
        let vip = ctx
            .api
            .call(ActionName::GetVirtualIp.as_str(), &json!({ "id": id }))
            .await?;
        let v = &vip["virtual_ip"];
        if v["status"] == "released" {
            bail!(
                "virtual IP {id} was released ({}); there is nothing to fail over",
                field(v, "release_reason")
            );
        }
        let target = match &choice {
            Choice::Peer(c) => format!(
                "{} (instance {}, score {})",
                field(c, "peer"),
                field(c, "instance_id"),
                score_text(c)
            ),
            Choice::NotACandidate(peer) => bail!(not_a_candidate(id, peer, &plan)),
            Choice::Nobody => bail!(Refusal {
                status: 409,
                code: "no_candidate".into(),
                message: format!(
                    "virtual IP {id} has no ready candidate heard lately (single-server cluster?)"
                ),
            }),
        };
        let address = field(v, "vip");
        confirm(
            &Target {
                verb: "fail over",
                kind: "VIP",
                id,
                name: &address,
                name_label: "address",
                details: vec![
                    format!("address:     {address} (cluster {})", field(v, "cluster_id")),
                    format!(
                        "holder:      {} (peer {}{})",
                        field(v, "holders"),
                        field(v, "holder_peer_id"),
                        if v["holder_silent"] == true {
                            ", silent"
                        } else {
                            ""
                        }
                    ),
                    format!("generation:  {}", field(v, "generation")),
                    format!("promote:     {target}"),
                    "the old holder is fenced: it releases the address when it hears the new generation"
                        .into(),
                ],
            },
            a.yes,
        )?;
    }
    let mut args = json!({ "virtual_ip_id": id });
    if let Some(to) = &a.to {
        args["to_peer_id"] = json!(to);
    }
    let data = ctx
        .api
        .call(ActionName::FailoverVirtualIp.as_str(), &args)
        .await?;
    ctx.show(&data, |d| {
        let v = &d["virtual_ip"];
        format!(
            "VIP {id} failed over: now held by {} (peer {}) at generation {} (was peer {} at generation {})\n",
            field(v, "holders"),
            field(v, "holder_peer_id"),
            field(v, "generation"),
            field(&plan, "current_holder"),
            field(&plan, "generation"),
        )
    });
    Ok(())
}

/// Whom a failover would promote.
enum Choice {
    /// This candidate (from the dry run's list).
    Peer(Value),
    /// `--to` names no candidate.
    NotACandidate(String),
    /// No candidate heard within the silence threshold.
    Nobody,
}

fn chosen(plan: &Value, to: Option<&str>) -> Choice {
    let mut candidates = plan["candidates"].as_array().into_iter().flatten();
    match to {
        Some(peer) => candidates.find(|c| c["peer"] == peer).map_or_else(
            || Choice::NotACandidate(peer.to_string()),
            |c| Choice::Peer(c.clone()),
        ),
        // The action promotes the best candidate heard within the threshold.
        None => candidates
            .find(|c| c["heard_within_threshold"] != false)
            .map_or(Choice::Nobody, |c| Choice::Peer(c.clone())),
    }
}

fn not_a_candidate(id: &str, peer: &str, plan: &Value) -> Refusal {
    let known: Vec<String> = plan["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| field(c, "peer"))
        .collect();
    Refusal {
        status: 422,
        code: "not_a_candidate".into(),
        message: format!(
            "peer {peer} is not a failover candidate of virtual IP {id}; candidates: [{}]",
            known.join(", ")
        ),
    }
}

fn score_text(c: &Value) -> String {
    c["score"]
        .as_f64()
        .map_or_else(|| field(c, "score"), |s| format!("{s:.2}"))
}

/// A dry run: holder, generation, the candidates and whom it would promote.
fn render_plan(d: &Value, choice: &Choice) -> String {
    let mut out = format!(
        "VIP {}: holder {}{}, generation {}\n\n",
        field(d, "virtual_ip_id"),
        field(d, "current_holder"),
        if d["holder_silent"] == true {
            " (silent)"
        } else {
            ""
        },
        field(d, "generation"),
    );
    out.push_str(&render_candidates(&d["candidates"], 0));
    out.push('\n');
    out.push_str(&match choice {
        Choice::Peer(c) => format!(
            "Would promote {} (instance {}, score {}) to generation {}. Nothing changed (dry run).\n",
            field(c, "peer"),
            field(c, "instance_id"),
            score_text(c),
            d["generation"].as_u64().map_or_else(|| "-".into(), |g| (g + 1).to_string()),
        ),
        Choice::Nobody => {
            "Would promote nobody: no candidate heard within the silence threshold (a failover now is refused with no_candidate). Nothing changed (dry run).\n".into()
        }
        Choice::NotACandidate(_) => String::new(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(status: &str, expires_at: &str) -> Value {
        json!({
            "id": "appr-1",
            "virtual_ip_id": "vip-1",
            "current_holder": "peer-a",
            "proposed_peer": "peer-b",
            "status": status,
            "summary": "promote peer-b",
            "expires_at": expires_at,
            "candidates": [
                {"peer": "peer-b", "instance_id": "inst-b", "score": 0.95,
                 "reasons": ["ready k3s-server", "heartbeat 0.4 s ago"]},
                {"peer": "peer-c", "instance_id": "inst-c", "score": 0.3,
                 "reasons": ["ready k3s-server", "no heartbeat heard yet"]},
            ],
        })
    }

    #[test]
    fn durations_read_like_clocks() {
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
        assert_eq!(duration_text(Duration::from_secs(14 * 60 + 32)), "14m32s");
        assert_eq!(duration_text(Duration::from_secs(7509)), "2h05m09s");
    }

    #[test]
    fn waiting_approvals_show_their_candidates() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let data = json!({ "approvals": [approval("requested", "2024-05-01T10:14:32Z")] });
        let text = render_approvals(&data, now, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(
            lines[1].contains("0.95") && lines[1].ends_with("14m32s"),
            "{text}"
        );
        assert!(text.contains("appr-1: promote peer-b"), "{text}");
        assert!(
            text.contains("  peer-b  inst-b    0.95   ready k3s-server, heartbeat 0.4 s ago"),
            "{text}"
        );
        let later = now + chrono::Duration::hours(1);
        assert!(render_approvals(&data, later, true)
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("expired"));
        // Decided ones: no countdown, no candidates.
        let data = json!({ "approvals": [approval("granted", "2024-05-01T10:14:32Z")] });
        let text = render_approvals(&data, now, false);
        assert!(text.lines().nth(1).unwrap().ends_with(" -"), "{text}");
        assert!(!text.contains("inst-b"), "{text}");
        assert_eq!(
            render_approvals(&json!({"approvals": []}), now, true),
            "No approvals waiting for a decision.\n"
        );
    }

    #[test]
    fn the_plan_follows_the_action() {
        let plan = json!({
            "virtual_ip_id": "vip-1", "current_holder": "peer-a", "generation": 3,
            "holder_silent": true,
            "candidates": [
                {"peer": "peer-c", "instance_id": "inst-c", "score": 0.5,
                 "reasons": [], "heard_within_threshold": false},
                {"peer": "peer-b", "instance_id": "inst-b", "score": 0.4,
                 "reasons": [], "heard_within_threshold": true},
            ],
        });
        let Choice::Peer(c) = chosen(&plan, None) else {
            panic!("a candidate was heard")
        };
        assert_eq!(c["peer"], "peer-b");
        assert!(matches!(chosen(&plan, Some("peer-c")), Choice::Peer(_)));
        assert!(matches!(
            chosen(&plan, Some("peer-x")),
            Choice::NotACandidate(_)
        ));
        let text = render_plan(&plan, &chosen(&plan, None));
        assert!(
            text.starts_with("VIP vip-1: holder peer-a (silent), generation 3\n"),
            "{text}"
        );
        assert!(text.contains("HEARD"), "{text}");
        assert!(
            text.contains("Would promote peer-b (instance inst-b, score 0.40) to generation 4"),
            "{text}"
        );
    }
}
