//! The trust boundary on NATS (issue 13, finding 1), against a real
//! nats-server running powernode's auth setup and the API's auth callout:
//!
//! * an anonymous client cannot connect at all, so it can neither forge a
//!   `system.operator_token.issued` on `pn.evt.…`, nor read the secrets
//!   bucket, nor subscribe to `>`;
//! * a client with an NKey that enrolled nothing is refused;
//! * an agent admitted with its enrollment credential (and later with its
//!   enrolled key alone) may use only its own request subjects and inbox:
//!   publishing on `pn.evt.>`, reading `$KV`/`$JS.API`, subscribing to
//!   `>` or to another agent's subjects is refused by the server;
//! * a terminated instance's key is refused on its next connect;
//! * powernode refuses a server that lets anonymous clients use JetStream
//!   (unless `--allow-anonymous-nats`), and speaks `tls://` with a CA file.
//!
//! `cargo nextest run -p powernode-tests --test nats_auth`.

use anyhow::{ensure, Context};
use futures::StreamExt;
use powernode_agent::identity::Identity;
use powernode_agent::link::NatsAuth;
use powernode_log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_log::{EventLog, LogError};
use powernode_protocol::{subjects, EnrollReply, Reply};
use powernode_tests::api_support::Api;
use powernode_tests::http::action;
use powernode_tests::nats::{NatsOptions, NatsServer};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PROVISION: &str = "system.kubernetes_provision";

/// Server errors (permission violations) a connection was told about.
type Errors = Arc<Mutex<Vec<String>>>;

/// Connects as an agent would (identity key as NKey, optional token),
/// recording the server's errors.
async fn connect_agent(
    url: &str,
    identity: &Identity,
    token: Option<&str>,
) -> Result<(async_nats::Client, Errors), async_nats::ConnectError> {
    let auth = NatsAuth::from_identity(identity, token.map(str::to_string));
    let errors: Errors = Arc::default();
    let seen = errors.clone();
    async_nats::ConnectOptions::new()
        .nkey(auth.nkey_seed.clone().expect("identity seed"))
        .custom_inbox_prefix(auth.inbox_prefix().expect("inbox"))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(Some(0))
        .event_callback(move |e| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(e) = e {
                    seen.lock().unwrap().push(e.to_string());
                }
            }
        })
        .token(token.unwrap_or_default().to_string())
        .connect(url)
        .await
        .map(|c| (c, errors))
}

/// Waits (briefly) until the server has reported an error containing `what`.
async fn violation(errors: &Errors, what: &str) -> bool {
    for _ in 0..40 {
        if errors.lock().unwrap().iter().any(|e| e.contains(what)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An API on an authenticated server, an operator token, and a
/// provisioned instance: (api, token, instance id, enrollment credential).
async fn platform_with_instance() -> anyhow::Result<(Api, String, String, String)> {
    let api = Api::jetstream().await?;
    let (_, token) = api.account_with_token("acme", &[PROVISION]).await?;
    let t = action(
        api.port,
        Some(&token),
        "system_create_template",
        &json!({"name": "srv"}),
    )
    .await?;
    let template = t.body["data"]["template"]["id"]
        .as_str()
        .context("template id")?
        .to_string();
    let n = action(
        api.port,
        Some(&token),
        "system_create_node",
        &json!({"hostname": "node-1", "node_template_id": template, "memory_mb": 2048}),
    )
    .await?;
    let node = n.body["data"]["node"]["id"]
        .as_str()
        .context("node id")?
        .to_string();
    let p = action(
        api.port,
        Some(&token),
        "system_provision_instance",
        &json!({"node_id": node}),
    )
    .await?;
    ensure!(p.status == 200, "provision: {:?}", p.body);
    let instance = p.body["data"]["id"].as_str().context("id")?.to_string();
    let credential = p.body["data"]["enrollment_credential"]
        .as_str()
        .context("credential")?
        .to_string();
    Ok((api, token, instance, credential))
}

/// Enrolls `identity` with `credential` over the agent's own connection;
/// the intake's answer.
async fn enroll(
    agent: &async_nats::Client,
    identity: &Identity,
    credential: &str,
) -> anyhow::Result<serde_json::Value> {
    let body = json!({"credential": credential, "public_key": identity.public_key_hex()});
    let reply = agent
        .request(subjects::ENROLL, serde_json::to_vec(&body)?.into())
        .await?;
    Ok(serde_json::from_slice(&reply.payload)?)
}

fn nats_url(api: &Api) -> String {
    api._nats.as_ref().expect("on NATS").url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_unknown_clients_cannot_connect() -> anyhow::Result<()> {
    let (api, _token, _instance, _credential) = platform_with_instance().await?;
    let url = nats_url(&api);
    // No credentials at all: the callout refuses, nothing connects.
    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url.as_str())
        .await;
    ensure!(
        anonymous.is_err(),
        "an anonymous client connected to the platform's NATS"
    );
    // A valid NKey that enrolled nothing, without a credential: refused.
    let stranger = Identity::ephemeral();
    ensure!(
        connect_agent(&url, &stranger, None).await.is_err(),
        "an unknown key connected"
    );
    // ... and with a made-up credential: refused.
    ensure!(
        connect_agent(&url, &stranger, Some("pnec_made_up"))
            .await
            .is_err(),
        "an unknown credential connected"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_agent_may_use_only_its_own_subjects() -> anyhow::Result<()> {
    let (api, _token, instance, credential) = platform_with_instance().await?;
    let url = nats_url(&api);
    let identity = Identity::ephemeral();
    let (agent, errors) = connect_agent(&url, &identity, Some(&credential))
        .await
        .context("the enrollment credential admits the agent")?;

    // A platform-side listener, to see what reaches the bus.
    let platform = powernode_tests::nats::connect(&url).await?;
    let mut evt = platform.subscribe("pn.evt.>").await?;
    let mut other_beats = platform.subscribe("pn.agent.heartbeat.other-inst").await?;
    platform.flush().await?;

    // (a) forging an event on the event stream's subjects.
    let before = api.log.last_seq().await?;
    agent
        .publish(
            "pn.evt.acme.token.forged.system.operator_token.issued",
            "forged".into(),
        )
        .await?;
    agent.flush().await?;
    ensure!(
        violation(&errors, "Permissions Violation for Publish").await,
        "the server did not refuse a publish to pn.evt: {:?}",
        errors.lock().unwrap()
    );
    ensure!(
        tokio::time::timeout(Duration::from_millis(300), evt.next())
            .await
            .is_err(),
        "an agent's publish reached pn.evt.>"
    );
    ensure!(
        api.log.last_seq().await? == before,
        "the log grew from an agent's direct publish"
    );

    // (b) the JetStream API and the secrets bucket.
    let js = agent.request("$JS.API.STREAM.LIST", "".into()).await;
    ensure!(js.is_err(), "an agent reached the JetStream API: {js:?}");
    let kv = agent
        .request("$JS.API.DIRECT.GET.KV_pn_secrets", "".into())
        .await;
    ensure!(kv.is_err(), "an agent reached the secrets bucket: {kv:?}");

    // (c) subscribing to everything, and to another agent's subjects.
    errors.lock().unwrap().clear();
    let _all = agent.subscribe(">").await?;
    agent.flush().await?;
    ensure!(
        violation(&errors, "Permissions Violation for Subscription").await,
        "subscribing to > was not refused: {:?}",
        errors.lock().unwrap()
    );
    errors.lock().unwrap().clear();
    agent
        .publish("pn.agent.heartbeat.other-inst", "{}".into())
        .await?;
    agent.flush().await?;
    ensure!(
        violation(&errors, "Permissions Violation for Publish").await,
        "publishing on another instance's subject was not refused"
    );
    ensure!(
        tokio::time::timeout(Duration::from_millis(300), other_beats.next())
            .await
            .is_err(),
        "an agent's publish reached another instance's heartbeat subject"
    );
    errors.lock().unwrap().clear();
    let _nudges = agent.subscribe(subjects::nudge("other-inst")).await?;
    agent.flush().await?;
    ensure!(
        violation(&errors, "Permissions Violation for Subscription").await,
        "subscribing to another instance's nudges was not refused"
    );

    // Its own subjects work: enrolling over this connection succeeds.
    errors.lock().unwrap().clear();
    let reply = enroll(&agent, &identity, &credential).await?;
    let answered: Reply<EnrollReply> = serde_json::from_value(reply.clone())?;
    ensure!(
        matches!(&answered, Reply::Ok(r) if r.instance_id == instance),
        "enrollment over the agent's connection answered {reply}"
    );
    drop(agent);

    // Enrolled: the key alone admits it now (no credential needed) ...
    let (again, _) = connect_agent(&url, &identity, None)
        .await
        .context("the enrolled key admits the agent")?;
    drop(again);
    // ... and another key with the used credential is refused.
    ensure!(
        connect_agent(&url, &Identity::ephemeral(), Some(&credential))
            .await
            .is_err(),
        "a second key got in with a used credential"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_instance_is_refused_on_its_next_connect() -> anyhow::Result<()> {
    let (api, token, instance, credential) = platform_with_instance().await?;
    let url = nats_url(&api);
    let identity = Identity::ephemeral();
    let (agent, _) = connect_agent(&url, &identity, Some(&credential)).await?;
    enroll(&agent, &identity, &credential).await?;
    drop(agent);
    let t = action(
        api.port,
        Some(&token),
        "system_terminate_instance",
        &json!({"id": instance}),
    )
    .await?;
    ensure!(t.status == 200, "terminate: {:?}", t.body);
    ensure!(
        connect_agent(&url, &identity, None).await.is_err(),
        "a terminated instance's key still connects"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_open_to_anonymous_jetstream_is_refused() -> anyhow::Result<()> {
    let open = NatsServer::start_with(NatsOptions {
        anonymous: true,
        ..NatsOptions::default()
    })?;
    let refused = JetStreamLog::connect(JetStreamConfig::new(open.url()))
        .await
        .err()
        .context("connected to a server that lets anyone use JetStream")?;
    let message = refused.to_string();
    ensure!(
        matches!(refused, LogError::Unavailable(_))
            && message.contains("anonymous")
            && message.contains("powernode nats init")
            && message.contains("--allow-anonymous-nats"),
        "the refusal does not say why and how to fix it: {message}"
    );
    // Allowed explicitly (a throwaway laptop): connects, with a warning.
    let mut config = JetStreamConfig::new(open.url());
    config.auth.allow_anonymous = true;
    JetStreamLog::connect(config).await?;

    // The binary says the same and exits non-zero.
    let bin = powernode_tests::bins::powernode_bin()?;
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(bin)
        .args([
            "up",
            "--insecure-http",
            "--nats",
            &open.url(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("POWERNODE_ALLOW_ANONYMOUS_NATS")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("anonymous") && stderr.contains("nats init"),
        "powernode up on an open server: {} {stderr}",
        out.status
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_urls_and_a_ca_file_are_spoken() -> anyhow::Result<()> {
    let server = NatsServer::start_with(NatsOptions {
        tls: true,
        ..NatsOptions::default()
    })?;
    ensure!(server.url().starts_with("tls://"), "{}", server.url());
    // With the CA: connects and appends.
    let log = JetStreamLog::connect(server.log_config()).await?;
    ensure!(log.last_seq().await? == 0);
    // Without it the server's certificate is not trusted.
    let mut config = server.log_config();
    config.auth.ca_file = None;
    config.connect_timeout = Duration::from_secs(2);
    let err = JetStreamLog::connect(config)
        .await
        .err()
        .context("connected over TLS to a certificate nobody vouched for")?;
    ensure!(
        matches!(err, LogError::Unavailable(_)),
        "unexpected error: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn nats_init_writes_a_config_nats_server_accepts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = powernode_tests::cli_support::free_port();
    let bin = powernode_tests::bins::powernode_bin()?;
    let out = std::process::Command::new(&bin)
        .args([
            "nats",
            "init",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "-o",
            "json",
            "--dir",
        ])
        .arg(dir.path().join("nats"))
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let config = made["config"].as_str().context("config")?;
    let check = std::process::Command::new("nats-server")
        .args(["-t", "-c", config])
        .output()?;
    ensure!(
        check.status.success(),
        "nats-server -t rejects the config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let again = std::process::Command::new(&bin)
        .args(["nats", "init", "--dir"])
        .arg(dir.path().join("nats"))
        .output()?;
    ensure!(
        !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"),
        "a second init overwrote the keys"
    );
    Ok(())
}
