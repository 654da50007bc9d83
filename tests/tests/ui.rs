//! The dashboard (issue 18) in a real browser: headless Debian chromium
//! driven by Selenium (`tests/python/ui_browser.py`; `scripts/test`
//! installs chromium, chromium-driver and `selenium==4.27.1`) against
//! `powernode up --simulate-agents` over https and `powernode ui --file`
//! over its export. The platform is built here through the API: a
//! one-server cluster, then (after the sequence the time-travel check
//! goes back to) an HA cluster of two servers. The script checks, each a
//! named entry of its JSON report asserted here:
//! * sign-in (a wrong token is an alert); ten live pages in a row each
//!   load (a page left must not keep its event stream open); the fleet
//!   listing both clusters; a cluster made while the page is open appears without reload;
//! * the HA holder's instance terminated, its failover waits on
//!   `/ui/approvals`; reject needs a reason (the browser keeps an empty
//!   form, the server refuses a forged one and posts without CSRF token);
//!   approving in the UI promotes the VIP, and the cluster page shows the
//!   new holder and generation 2 (checked against the API here too);
//! * time travel to before the HA cluster lacks it; a seq beyond the head
//!   is refused; the diff lists changes;
//! * the VIP's explain graph names the approval; an unknown id is refused;
//! * the event tail, its filter and pause, one event's envelope; skills and
//!   agents;
//! * the offline dashboard refuses an action (`read_only`);
//! * a session whose token expired goes back to the login page with the
//!   reason;
//! * no page logs a JavaScript error, and every page fits 390 px.
//!
//! Screenshots of every page (1280x800, and at phone width) are saved under
//! `target/ui-screenshots/` (or `$POWERNODE_TEST_OUT/ui-screenshots/`).

use anyhow::Context;
use powernode_tests::ui_support::{run_browser, screenshot_dir, Offline, UiPlatform};
use serde_json::json;

/// The checks the script must report, all passed.
const CHECKS: &[&str] = &[
    "login",
    "many_pages_in_a_row",
    "fleet_lists_clusters",
    "new_cluster_without_reload",
    "approval_waits",
    "reject_needs_reason",
    "approval_promotes_vip",
    "time_travel_early_seq",
    "explain_names_approval",
    "events_and_envelope",
    "skills_and_agents",
    "offline_refuses_action",
    "expired_token_to_login",
    "no_js_errors",
    "phone_width",
];

/// How long the expiring token lives: past the login check, before the
/// expiry check (the script waits for it if it is quicker).
const EXPIRING_TTL_SECS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() -> anyhow::Result<()> {
    let p = UiPlatform::start().await?;

    // A one-server cluster; the sequence before the HA one exists; the HA
    // cluster, its second server a failover candidate.
    let net_a = p.network("ui-single").await?;
    p.server(&net_a, "single-1", None).await?;
    let single = p.active_cluster(&net_a).await?;
    let seq_before_ha = p.head().await?;
    let net_b = p.network("ui-ha").await?;
    let first = p.server(&net_b, "ha-1", None).await?;
    let ha = p.active_cluster(&net_b).await?;
    let second = p.server(&net_b, "ha-2", Some(&ha)).await?;
    let vip = p
        .vip_until(&ha, "the second server as candidate", |v| {
            v["holders"][0] == first.as_str()
                && v["failover_candidates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["instance_id"] == second.as_str())
        })
        .await?;
    let vip_id = vip["id"].as_str().context("no VIP id")?.to_string();
    let names = name_of(&p, &[&single, &ha]).await?;

    // The export and the offline dashboard over it.
    let offline = match p.export().await {
        Ok(file) => Offline::start(&file).await,
        Err(e) => Err(e),
    };
    let (offline_url, offline_error) = match &offline {
        Ok(o) => (Some(o.url.clone()), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };

    let (expiring, expiring_at) = p.expiring_token(EXPIRING_TTL_SECS).await?;
    let shots = screenshot_dir();
    let config = json!({
        "url": p.up.url(),
        "ca": p.up.ca(),
        "token": p.token,
        "wrong_token": "pn_this-is-not-a-token",
        "account": p.account,
        "expiring_token": expiring,
        "expiring_at": expiring_at,
        "clusters": {
            "single": { "id": single, "name": names[0] },
            "ha": { "id": ha, "name": names[1], "vip": vip_id, "servers": [first, second] },
        },
        "seq_before_ha": seq_before_ha,
        "offline_url": offline_url,
        "offline_error": offline_error,
        "screenshots": shots,
    });
    let (report, exited_ok, stderr) = run_browser(config).await?;

    let checks = &report["checks"];
    eprintln!(
        "browser checks ({} s in the browser):",
        report["elapsed_secs"]
    );
    for c in CHECKS {
        eprintln!(
            "  {c}: {} ({} s)",
            if checks[*c]["ok"] == true {
                "ok"
            } else {
                "FAILED"
            },
            checks[*c]["secs"]
        );
    }
    let failed: Vec<String> = CHECKS
        .iter()
        .filter(|c| checks[**c]["ok"] != true)
        .map(|c| {
            format!(
                "{c}: {}",
                checks[*c]["detail"].as_str().unwrap_or("missing")
            )
        })
        .collect();
    assert!(
        failed.is_empty() && exited_ok,
        "browser checks failed:\n{}\n\nscript stderr:\n{stderr}\nnode log tail:\n{}",
        failed.join("\n\n"),
        tail(&p.up.log_text(), 40)
    );

    // What the UI showed is what the API says.
    let v = p
        .call("system_sdwan_get_virtual_ip", json!({ "id": vip_id }))
        .await?;
    let v = &v["virtual_ip"];
    assert_eq!(v["generation"], 2, "{v}");
    assert_eq!(v["holders"][0], second.as_str(), "{v}");
    let shown = report["observed"]["ui_holder"].as_str().unwrap_or_default();
    assert!(
        shown.contains(&second) || shown.contains(v["holder_peer_id"].as_str().unwrap_or("?")),
        "the UI showed holder {shown:?}; the API: {v}"
    );
    let approval = report["observed"]["approval"]
        .as_str()
        .context("no approval")?;
    let granted = p
        .call("system_list_approvals", json!({ "status": "granted" }))
        .await?;
    assert!(
        granted["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["id"] == approval),
        "{approval} is not granted: {granted}"
    );
    let live = report["observed"]["live_cluster"]
        .as_str()
        .context("no live cluster")?;
    let list = p.call("kubernetes_list_clusters", json!({})).await?;
    assert!(
        list["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["id"] == live),
        "{list}"
    );
    for page in [
        "login",
        "fleet",
        "cluster",
        "approvals",
        "events",
        "event",
        "travel",
        "diff",
        "explain",
        "skills",
        "agents",
        "offline",
    ] {
        let file = shots.join(format!("{page}.png"));
        let len = std::fs::metadata(&file)
            .with_context(|| format!("no screenshot {}", file.display()))?
            .len();
        assert!(len > 1000, "{} is {len} bytes", file.display());
    }
    Ok(())
}

/// The clusters' names, as the API lists them.
async fn name_of(p: &UiPlatform, ids: &[&str]) -> anyhow::Result<Vec<String>> {
    let list = p.call("kubernetes_list_clusters", json!({})).await?;
    ids.iter()
        .map(|id| {
            list["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["id"] == *id)
                .and_then(|c| c["name"].as_str())
                .map(str::to_string)
                .with_context(|| format!("no cluster {id} in {list}"))
        })
        .collect()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
