//! `recent_events` by cluster or instance, served from the API's events
//! index, against a real nats-server and a `powernode serve api` process:
//! every answer equals one worked out here from a read of the whole log
//! (the account's records, decoded, kept when
//! [`powernode_archive::concerns`] says they are about the id), before and
//! after the index has caught up and with records appended past it; and
//! another account's cluster answers what it answered before the index
//! (nothing of the other account's).

use anyhow::{ensure, Context};
use powernode_archive::concerns;
use powernode_client::Api;
use powernode_events::payloads::k3s::{
    ClusterActivated, JoinTokenRotated, KubeconfigRetrieved, NodeRegistered, NodeRole,
};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{EventLog, Expect, Filter};
use powernode_tests::nats::NatsServer;
use powernode_tests::tail_support::{system_account, ApiProcess};
use serde_json::{json, Value};

fn event(account: &AccountId, i: usize) -> Envelope {
    let cluster = format!("cluster-{}", i % 3);
    let instance = format!("inst-{}", i % 5);
    let p: EventPayload = match i % 4 {
        0 => NodeRegistered {
            cluster_id: cluster,
            instance_id: instance,
            role: NodeRole::Worker,
        }
        .into(),
        1 => ClusterActivated {
            cluster_id: cluster,
        }
        .into(),
        2 => JoinTokenRotated {
            cluster_id: cluster,
            token_fingerprint: "sha256:00".into(),
        }
        .into(),
        _ => KubeconfigRetrieved {
            cluster_id: cluster,
            fingerprint: instance,
        }
        .into(),
    };
    Envelope::new(account.clone(), Actor::service("index-test"), p)
}

/// The answer worked out from the whole log: the seqs of the account's
/// records about the ids (and kind prefix), oldest first, from `since`;
/// the newest `limit` without `since`, the first `limit` and whether more
/// follow with it.
async fn expected(
    log: &JetStreamLog,
    account: &AccountId,
    args: &Value,
) -> anyhow::Result<(Vec<u64>, Option<bool>)> {
    let filter = Filter {
        account: Some(account.clone()),
        kind_prefix: args["kind_prefix"].as_str().map(str::to_string),
    };
    let records = log.read(1, 1_000_000, &filter).await?;
    let mut seqs = Vec::new();
    for r in records {
        let e = Envelope::decode(&r.bytes)?;
        let about = |field: &str| args[field].as_str().is_none_or(|id| concerns(&e, id));
        if about("cluster") && about("instance") {
            seqs.push(r.seq);
        }
    }
    let limit = args["limit"].as_u64().unwrap_or(20) as usize;
    Ok(match args["since"].as_u64() {
        None => (seqs[seqs.len().saturating_sub(limit)..].to_vec(), None),
        Some(since) => {
            let from: Vec<u64> = seqs.into_iter().filter(|s| *s >= since).collect();
            let more = from.len() > limit;
            (from.into_iter().take(limit).collect(), Some(more))
        }
    })
}

async fn check(api: &Api, log: &JetStreamLog, args: Value) -> anyhow::Result<usize> {
    let answer = api.call("recent_events", &args).await?;
    let got: Vec<u64> = answer["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    let (want, more) = expected(log, &system_account(), &args).await?;
    ensure!(got == want, "{args}: got {got:?}, want {want:?}");
    ensure!(
        answer["more"].as_bool() == more,
        "{args}: more {} want {more:?}",
        answer["more"]
    );
    Ok(got.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_answers_equal_a_read_of_the_whole_log() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let api_process = ApiProcess::start(&nats.url(), &dir.path().join("api")).await?;
    let log = JetStreamLog::connect(powernode_tests::nats::log_config(nats.url())).await?;
    let api = Api::new(&api_process.url, &api_process.token)?;
    let own = system_account();
    let other = AccountId::new("acct-other")?;
    let append = |account: &AccountId, i: usize| {
        let e = event(account, i);
        let log = &log;
        async move { log.append(&e, Expect::Any).await.map(|a| a.seq) }
    };
    for i in 0..240 {
        append(&own, i).await?;
        if i % 3 == 0 {
            // The other account's events name the same ids, and one of its own.
            append(&other, i).await?;
            let mut e = event(&other, i);
            if let EventPayload::ClusterActivated(p) = &mut e.payload {
                p.cluster_id = "cluster-other".into();
            }
            log.append(&e, Expect::Any).await?;
        }
    }
    let cases = |since: u64| {
        vec![
            json!({"cluster": "cluster-1"}),
            json!({"cluster": "cluster-2", "limit": 1000}),
            json!({"instance": "inst-3", "limit": 7}),
            json!({"cluster": "cluster-0", "instance": "inst-0", "limit": 1000}),
            json!({"cluster": "cluster-1", "kind_prefix": "system.k3s.kubeconfig", "limit": 5}),
            json!({"cluster": "cluster-1", "since": since, "limit": 10}),
            json!({"instance": "inst-4", "since": since, "limit": 1000}),
            json!({"cluster": "cluster-other"}),
            json!({"cluster": "cluster-nope", "since": 1}),
        ]
    };
    // The first filtered query starts the index; answers are exact meanwhile.
    let mut shown = 0;
    for args in cases(100) {
        shown += check(&api, &log, args).await?;
    }
    ensure!(shown > 100, "the cases show events ({shown})");
    // Caught up (the index folds the whole log within seconds), then more
    // records past it.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for i in 240..300 {
        append(&own, i).await?;
    }
    for args in cases(250) {
        check(&api, &log, args).await?;
    }
    // Another account's cluster: nothing of that account, no error, as
    // before the index.
    let answer = api
        .call("recent_events", &json!({"cluster": "cluster-other"}))
        .await?;
    ensure!(answer["events"] == json!([]), "{answer}");
    Ok(())
}
