//! The live and offline backends, in-process, through the trait.

use anyhow::Context;
use futures::StreamExt;
use powernode_actions::ActionName;
use powernode_server::api::ApiState;
use powernode_server::ui::live::LiveBackend;
use powernode_server::ui::offline::{NoSecrets, OfflineBackend};
use powernode_server::ui::{At, Backend, EventQuery, Principal};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::support::*;
use super::Built;

/// The live backend over the stopped node's log and projection.
pub(crate) async fn live(data: &Path, built: &Built) -> anyhow::Result<()> {
    let log = powernode_log::embedded::EmbeddedLog::open_shared(&data.join("log"))?;
    let source = powernode_archive::Source::Log(log.clone());
    let folded =
        powernode_inspect::replay::fold(&source, powernode_archive::Bound::End, true, false)
            .await?;
    let fleet: powernode_runtime::Shared<powernode_projections::FleetState> = Default::default();
    *fleet.state.write().await = folded.state;
    let api = ApiState {
        log: log.clone(),
        fleet,
        secrets: Arc::new(NoSecrets),
        on_provision: None,
        liveness: Arc::default(),
        failover: Default::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        status: powernode_server::status::StatusBoard::shared(),
        https: false,
        read_only: None,
        events_index: Default::default(),
    };
    let ui = LiveBackend::new(api.clone(), false);
    let head = log.last_seq().await?;
    let who_a = Principal::Token(built.token_a.clone());
    let who_b = Principal::Token(built.token_b.clone());

    let e = refused(
        ui.call(
            &Principal::Token("pn_nope".into()),
            At::Head,
            ActionName::ListNetworks,
            json!({}),
        )
        .await,
    );
    assert!(e.needs_login(), "{e}");
    assert_eq!(ui.head(&who_a).await?.last_seq, head);

    // Time travel.
    let now = ui
        .call(&who_a, At::Head, ActionName::ListNetworks, json!({}))
        .await?;
    assert_eq!(networks(&now), ["first", "second"], "{now}");
    let then = ui
        .call(
            &who_a,
            At::Seq(built.early),
            ActionName::ListNetworks,
            json!({}),
        )
        .await?;
    assert_eq!(networks(&then), ["first"], "{then}");
    let e = refused(
        ui.call(
            &who_a,
            At::Seq(head + 5),
            ActionName::ListNetworks,
            json!({}),
        )
        .await,
    );
    assert_eq!((e.status, e.code.as_str()), (422, "invalid_arguments"));
    assert_eq!(
        e.message,
        format!("seq {} is beyond the head {head}", head + 5)
    );
    let e = refused(
        ui.call(
            &who_a,
            At::Seq(built.early),
            ActionName::CreateNetwork,
            json!({"name": "late"}),
        )
        .await,
    );
    assert_eq!((e.status, e.code.as_str()), (409, "read_only"), "{e}");
    assert!(e.message.contains("system_sdwan_create_network"), "{e}");

    // Another account's cluster: not found, nothing appended.
    let e = refused(
        ui.call(
            &who_a,
            At::Head,
            ActionName::DecommissionCluster,
            json!({"cluster_id": built.cluster_b}),
        )
        .await,
    );
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"), "{e}");
    assert_eq!(log.last_seq().await?, head, "nothing was appended");

    // One event: the account's only.
    let mut mine = None;
    let mut theirs = None;
    for seq in 1..=head {
        match ui.event(&who_b, seq).await {
            Ok(v) if theirs.is_none() => theirs = Some((seq, v)),
            _ => {}
        }
        if mine.is_none() {
            if let Ok(v) = ui.event(&who_a, seq).await {
                mine = Some((seq, v));
            }
        }
    }
    let (seq_b, ev_b) = theirs.context("B has events")?;
    assert_eq!(ev_b["seq"], seq_b);
    assert_eq!(ev_b["account_id"], built.b.as_str(), "{ev_b}");
    let e = refused(ui.event(&who_a, seq_b).await);
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"));
    let e = refused(ui.event(&who_a, head + 1).await);
    assert_eq!(e.status, 404);
    assert!(mine.is_some());

    // Explain: the account's objects only.
    let x = ui.explain(&who_a, &built.net_a).await?;
    assert_eq!(x["object"]["id"], built.net_a.as_str(), "{x}");
    let steps = x["events"].as_array().context("steps")?;
    assert!(!steps.is_empty());
    assert!(
        steps.iter().all(|s| s["account_id"] == built.a.as_str()),
        "{x}"
    );
    assert!(x["why"]["answer"].is_string());
    for id in [built.cluster_b.as_str(), "cluster-nope"] {
        let e = refused(ui.explain(&who_a, id).await);
        assert_eq!((e.status, e.code.as_str()), (404, "not_found"), "{id}: {e}");
        assert!(e.message.contains("in this account"), "{e}");
    }
    let x = ui.explain(&who_b, &built.cluster_b).await?;
    assert_eq!(x["object"]["type"], "cluster", "{x}");

    // What changed: A's events only, the early one's network among them.
    let d = ui.diff(&who_a, 0, head).await?;
    let events = d["events"].as_array().context("events")?;
    assert!(
        events.iter().all(|e| e["account"] == built.a.as_str()),
        "{d}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "system.sdwan.network.created"
                || e["kind"].as_str().is_some_and(|k| k.contains("network"))),
        "{d}"
    );
    let e = refused(ui.diff(&who_a, 0, head + 1).await);
    assert_eq!((e.status, e.code.as_str()), (422, "invalid_arguments"));
    let e = refused(ui.diff(&who_a, 5, 4).await);
    assert_eq!(e.status, 422);

    // The feed: catch-up from the start, A's events only, and it stays
    // open (nothing more comes).
    let d_total = events.len();
    let feed = ui
        .events(
            &who_a,
            EventQuery {
                after: Some(0),
                ..Default::default()
            },
        )
        .await?;
    let items = take(feed, d_total).await?;
    assert_eq!(items.len(), d_total);
    assert!(items.iter().all(|i| i["account_id"] == built.a.as_str()));
    let filtered = ui
        .events(
            &who_a,
            EventQuery {
                after: Some(0),
                kind_prefix: Some("system.sdwan".into()),
                ..Default::default()
            },
        )
        .await?;
    let items = take(filtered, 2).await?;
    assert!(items.iter().all(|i| i["kind"]
        .as_str()
        .is_some_and(|k| k.starts_with("system.sdwan"))));
    Ok(())
}

/// The offline backend over the export.
pub(crate) async fn offline(export: &Path, built: &Built) -> anyhow::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let (ui, loaded) = OfflineBackend::open(export, Some(&built.a), stop).await?;
    assert!(!loaded.renumbered);
    assert_eq!(ui.accounts()[0], built.a);
    assert!(ui.accounts().contains(&built.b));
    let who = Principal::Offline {
        account: built.a.clone(),
    };
    let now = ui
        .call(&who, At::Head, ActionName::ListNetworks, json!({}))
        .await?;
    assert_eq!(networks(&now), ["first", "second"], "{now}");
    let then = ui
        .call(
            &who,
            At::Seq(built.early),
            ActionName::ListNetworks,
            json!({}),
        )
        .await?;
    assert_eq!(networks(&then), ["first"]);
    let who_b = Principal::Offline {
        account: built.b.clone(),
    };
    for (action, args) in [
        (ActionName::CreateNetwork, json!({"name": "x"})),
        (
            ActionName::DecommissionCluster,
            json!({"cluster_id": built.cluster_b}),
        ),
        (ActionName::Approve, json!({"approval_id": "appr-1"})),
        (
            ActionName::GetKubeconfig,
            json!({"cluster_id": built.cluster_b}),
        ),
    ] {
        let e = refused(ui.call(&who_b, At::Head, action, args).await);
        assert_eq!(
            (e.status, e.code.as_str()),
            (409, "read_only"),
            "{action}: {e}"
        );
        assert!(e.message.contains("export.pnx read-only"), "{e}");
        assert!(e.message.contains(action.as_str()), "{e}");
    }
    let e = refused(
        ui.call(
            &Principal::Token("t".into()),
            At::Head,
            ActionName::ListNetworks,
            json!({}),
        )
        .await,
    );
    assert_eq!(e.status, 401);
    let x = ui.explain(&who_b, &built.cluster_b).await?;
    assert_eq!(x["object"]["id"], built.cluster_b.as_str());
    assert_eq!(
        refused(ui.explain(&who, &built.cluster_b).await).status,
        404
    );
    // The feed ends at the export's last record.
    let feed = ui
        .events(
            &who,
            EventQuery {
                after: Some(0),
                ..Default::default()
            },
        )
        .await?;
    let items = tokio::time::timeout(Duration::from_secs(10), feed.collect::<Vec<_>>()).await?;
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| i["account_id"] == built.a.as_str()));
    Ok(())
}
