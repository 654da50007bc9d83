//! `recent_events` with `since` / `cluster` / `instance` and bad input,
//! and `GET /v1/events/stream` (server-sent events) on both log backends:
//! resuming with Last-Event-ID after a dropped connection, "from now",
//! refusals. Plus the JetStream subscription under the stream: "from now"
//! stays from now across a consumer reset and a nats-server restart.

use anyhow::{ensure, Context};
use futures::StreamExt;
use powernode_client::{EventStream, SseEvent};
use powernode_events::payloads::k3s::{
    ClusterActivated, HandshakeJoinRequest, JoinTokenIssued, K3sModule,
};
use powernode_events::{Actor, Envelope, EventPayload};
use powernode_log::{EventLog, Expect, Filter, StartAt};
use powernode_tests::api_support::Api;
use powernode_tests::bins::powernode_bin;
use powernode_tests::cli_support::{ok, powernode, text};
use powernode_tests::http::action;
use powernode_tests::jetstream_support::connect;
use powernode_tests::nats::{NatsOptions, NatsServer};
use powernode_tests::tail_support::{system_account, template_event};
use serde_json::{json, Value};
use std::time::Duration;

const STREAM: &str = "/v1/events/stream";

fn system_event(payload: impl Into<EventPayload>) -> Envelope {
    Envelope::new(system_account(), Actor::service("tail-test"), payload)
}

/// Appends `events` to the API's log; their seqs.
async fn append(api: &Api, events: &[Envelope]) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for e in events {
        seqs.push(api.log.append(e, Expect::Any).await?.seq);
    }
    Ok(seqs)
}

async fn templates(api: &Api, n: usize) -> anyhow::Result<Vec<u64>> {
    let account = system_account();
    let events: Vec<_> = (0..n)
        .map(|i| template_event(&account, &format!("t{i}")))
        .collect();
    append(api, &events).await
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

async fn recent(api: &Api, args: Value) -> anyhow::Result<Value> {
    ok(api.port, &api.admin, "recent_events", args).await
}

/// The next event within `wait`, or `None` if nothing came.
async fn next(stream: &mut EventStream, wait: Duration) -> anyhow::Result<Option<SseEvent>> {
    match tokio::time::timeout(wait, stream.next()).await {
        Ok(r) => r?.map(Some).context("the stream ended"),
        Err(_) => Ok(None),
    }
}

/// The seqs of the next `n` events that carry data.
async fn take(stream: &mut EventStream, n: usize) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = next(stream, Duration::from_secs(20))
            .await?
            .with_context(|| format!("only {} of {n} events arrived: {out:?}", out.len()))?;
        if e.data.is_some() {
            out.push(e.seq().context("an event without id")?);
        }
    }
    Ok(out)
}

async fn open(api: &Api, query: &str, last: Option<u64>) -> anyhow::Result<EventStream> {
    let url = format!("http://127.0.0.1:{}", api.port);
    let client = powernode_client::Api::new(&url, &api.admin)?;
    Ok(EventStream::open(&client, &format!("{STREAM}?{query}"), last).await?)
}

async fn recent_events_since_cluster_instance_and_bad_input(api: Api) -> anyhow::Result<()> {
    let u = uuid::Uuid::now_v7().simple().to_string();
    let (c1, c2, i1) = (format!("c1-{u}"), format!("c2-{u}"), format!("i1-{u}"));
    let before = templates(&api, 3).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mid = chrono::Utc::now();
    let s = append(
        &api,
        &[
            system_event(ClusterActivated {
                cluster_id: c1.clone(),
            }),
            system_event(ClusterActivated {
                cluster_id: c2.clone(),
            }),
            system_event(HandshakeJoinRequest {
                instance_id: i1.clone(),
                module_name: K3sModule::K3sAgent,
                target_cluster_id: Some(c1.clone()),
            }),
            system_event(JoinTokenIssued {
                instance_id: i1.clone(),
                cluster_id: c1.clone(),
                api_endpoint: "https://[fd00::100]:6443".into(),
                token_fingerprint: "sha256:00".into(),
            }),
        ],
    )
    .await?;
    let got = |v: &Value| seqs(v["events"].as_array().map_or(&[][..], |a| a));

    let by_cluster = recent(&api, json!({"cluster": c1})).await?;
    ensure!(got(&by_cluster) == [s[0], s[2], s[3]], "{by_cluster}");
    let by_instance = recent(&api, json!({"instance": i1})).await?;
    ensure!(got(&by_instance) == [s[2], s[3]], "{by_instance}");
    let both = recent(&api, json!({"instance": i1, "cluster": c2})).await?;
    ensure!(got(&both).is_empty(), "{both}");
    // The tutorial's prefix: a plain string prefix of the kind.
    let join = recent(
        &api,
        json!({"kind_prefix": "system.k3s.handshake.join", "cluster": c1}),
    )
    .await?;
    let kinds: Vec<&str> = join["events"].as_array().map_or(vec![], |a| {
        a.iter().filter_map(|e| e["kind"].as_str()).collect()
    });
    ensure!(
        kinds
            == [
                "system.k3s.handshake.join_request",
                "system.k3s.handshake.join_token_issued"
            ],
        "{join}"
    );

    // since: a sequence (paged with more/through), a time, a duration.
    let first = recent(
        &api,
        json!({"since": before[1], "limit": 2, "kind_prefix": "system.templ"}),
    )
    .await?;
    ensure!(
        got(&first) == before[1..3] && first["more"] == false,
        "{first}"
    );
    let page = recent(&api, json!({"since": before[0].to_string(), "limit": 2})).await?;
    ensure!(
        got(&page) == before[..2] && page["more"] == true && page["through"] == before[1],
        "{page}"
    );
    let rest = recent(&api, json!({"since": before[2], "limit": 1000})).await?;
    ensure!(
        got(&rest).first() == Some(&before[2]) && got(&rest).last() == Some(&s[3]),
        "{rest}"
    );
    ensure!(rest["more"] == false && rest["through"] == api.log.last_seq().await?);
    let by_time = recent(&api, json!({"since": mid.to_rfc3339()})).await?;
    ensure!(got(&by_time) == s, "since {mid}: {by_time}");
    let by_duration = recent(
        &api,
        json!({"since": "1h", "kind_prefix": "system.k3s.cluster"}),
    )
    .await?;
    ensure!(got(&by_duration) == s[..2], "{by_duration}");
    let future = recent(&api, json!({"since": "2999-01-01T00:00:00Z"})).await?;
    ensure!(
        got(&future).is_empty() && future["more"] == false,
        "{future}"
    );

    for (args, field) in [
        (json!({"since": "yesterday"}), "since: "),
        (json!({"since": true}), "since: "),
        (json!({"since": -3}), "since: "),
        (json!({"limit": 0}), "limit: "),
        (json!({"limit": 1001}), "limit: "),
        (json!({"limit": "ten"}), "limit: "),
        (json!({"kind_prefix": 5}), "kind_prefix: "),
        (json!({"cluster": ""}), "cluster: "),
        (json!({"instance": 7}), "instance: "),
        (json!({"bogus": 1}), "bogus"),
    ] {
        let a = action(api.port, Some(&api.admin), "recent_events", &args).await?;
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        ensure!(
            a.status == 400
                && a.body["error"]["code"] == "invalid_arguments"
                && message.contains(field),
            "{args} answered {} {}",
            a.status,
            a.body
        );
    }

    // The stream takes the same filters.
    let mut stream = open(&api, &format!("since=1&cluster={c1}"), None).await?;
    ensure!(take(&mut stream, 3).await? == [s[0], s[2], s[3]]);
    drop(stream);

    // The table needs no terminal and has no colour without one.
    let out = powernode(&powernode_bin()?)
        .args(["events", "tail", "--kind-prefix", "system.k3s"])
        .args(["--url", &format!("http://127.0.0.1:{}", api.port)])
        .args(["--token", &api.admin])
        .output()?;
    let table = text(&out.stdout);
    ensure!(out.status.success(), "{}", text(&out.stderr));
    ensure!(
        table.starts_with("SEQ") && table.contains("join_token_issued") && !table.contains('\x1b'),
        "{table:?}"
    );
    Ok(())
}

async fn stream_resumes_with_last_event_id(api: Api) -> anyhow::Result<()> {
    let first = templates(&api, 10).await?;
    let mut stream = open(&api, "kind_prefix=system.template&since=1", None).await?;
    let opening = next(&mut stream, Duration::from_secs(10)).await?;
    ensure!(
        opening
            .as_ref()
            .is_some_and(|e| e.data.is_none() && e.seq() == Some(0)),
        "the stream should open with its position: {opening:?}"
    );
    let seen = take(&mut stream, 4).await?;
    ensure!(seen == first[..4], "{seen:?}");
    drop(stream);
    let more = templates(&api, 5).await?;
    // Last-Event-ID wins over since.
    let mut stream = open(&api, "kind_prefix=system.template&since=1", Some(seen[3])).await?;
    let rest = take(&mut stream, 11).await?;
    let want: Vec<u64> = first[4..].iter().chain(&more).copied().collect();
    ensure!(rest == want, "resumed with {rest:?}, expected {want:?}");
    let extra = next(&mut stream, Duration::from_millis(500)).await?;
    ensure!(extra.is_none(), "more than expected: {extra:?}");
    drop(stream);

    // From now: the opening id is the log's end; only new events follow.
    let mut stream = open(&api, "kind_prefix=system.template", None).await?;
    let opening = next(&mut stream, Duration::from_secs(10)).await?;
    let last = api.log.last_seq().await?;
    ensure!(
        opening.as_ref().and_then(SseEvent::seq) == Some(last),
        "{opening:?} (last seq {last})"
    );
    let new = templates(&api, 2).await?;
    ensure!(take(&mut stream, 2).await? == new);
    let event = {
        let again = templates(&api, 1).await?;
        let e = next(&mut stream, Duration::from_secs(10))
            .await?
            .context("nothing")?;
        ensure!(e.seq() == Some(again[0]));
        e
    };
    let data: Value = serde_json::from_str(event.data.as_deref().unwrap_or_default())?;
    ensure!(
        event.event.as_deref() == Some("system.template.created")
            && data["kind"] == "system.template.created"
            && data["seq"] == json!(event.seq())
            && data["payload"]["name"] == "t0",
        "{event:?}"
    );
    drop(stream);

    // Refusals are JSON errors, before any stream.
    let url = format!("http://127.0.0.1:{}", api.port);
    for (query, token, last, status, code) in [
        (
            "since=yesterday",
            api.admin.as_str(),
            None,
            400,
            "invalid_arguments",
        ),
        (
            "bogus=1",
            api.admin.as_str(),
            None,
            400,
            "invalid_arguments",
        ),
        ("", "pn_wrong", None, 401, "unauthorized"),
    ] {
        let client = powernode_client::Api::new(&url, token)?;
        let e = EventStream::open(&client, &format!("{STREAM}?{query}"), last)
            .await
            .err()
            .context("refused stream opened")?;
        let a = e.refusal().with_context(|| format!("{e:#}"))?;
        ensure!(a.status == status && a.code == code, "{query}: {a}");
    }
    Ok(())
}

powernode_tests::api_both_backends!(
    recent_events_since_cluster_instance_and_bad_input,
    stream_resumes_with_last_event_id,
);

/// A subscription "from now" whose ordered consumer is deleted before it
/// delivered anything (async-nats then recreates it from the stream's
/// start), and one across a nats-server restart: only new events arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_now_survives_a_consumer_reset_and_a_server_restart() -> anyhow::Result<()> {
    let mut server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..NatsOptions::default()
    })?;
    let log = connect(&server.url()).await?;
    let account = system_account();
    for i in 0..200 {
        log.append(&template_event(&account, &format!("h{i}")), Expect::Any)
            .await?;
    }
    let filter = Filter {
        account: Some(account.clone()),
        kind_prefix: Some("system.template".into()),
    };
    let mut sub = log.subscribe(StartAt::New, filter.clone()).await?;
    // Delete every consumer of the stream under the subscription's feet.
    let js = async_nats::jetstream::new(log.client().clone());
    let stream = js.get_stream("PN_EVENTS").await?;
    let names: Vec<String> = stream
        .consumer_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    ensure!(!names.is_empty(), "no consumer to delete");
    for n in names {
        stream.delete_consumer(&n).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut want = Vec::new();
    for i in 0..3 {
        let e = template_event(&account, &format!("n{i}"));
        want.push(log.append(&e, Expect::Any).await?.seq);
    }
    let mut got = Vec::new();
    while got.len() < want.len() {
        let r = tokio::time::timeout(Duration::from_secs(45), sub.next())
            .await
            .context("no new event within 45 s")?
            .context("the subscription ended")??;
        got.push(r.seq);
    }
    ensure!(
        got == want,
        "after a consumer reset: {got:?}, expected {want:?}"
    );

    // A second "from now" subscription, a restart before it delivers anything.
    let mut sub = log.subscribe(StartAt::New, filter).await?;
    tokio::task::block_in_place(|| server.restart())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut want = Vec::new();
    for i in 0..3 {
        let e = template_event(&account, &format!("r{i}"));
        let seq = powernode_tests::tail_support::append_retrying(&log, &e, deadline).await?;
        want.push(seq);
    }
    let mut got = Vec::new();
    while got.len() < want.len() {
        let r = tokio::time::timeout(Duration::from_secs(45), sub.next())
            .await
            .context("no new event within 45 s after the restart")?
            .context("the subscription ended")??;
        got.push(r.seq);
    }
    ensure!(got == want, "after a restart: {got:?}, expected {want:?}");
    Ok(())
}
