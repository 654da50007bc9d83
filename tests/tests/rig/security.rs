//! NATS security: one agent's NKey user (the spy) against another agent
//! (the victim). The server must refuse the spy every subscription that
//! would show it the victim's replies (its join token), nudges or any
//! agent's submissions (bootstrap secrets), and every publish as the
//! victim or on the shared intake subjects — while the spy's own subject
//! and inbox work (so the refusals are permissions, not a dead link).

use crate::support::Rig;
use anyhow::{ensure, Context as _};
use futures::StreamExt as _;
use powernode_agent::link::{inbox_prefix_for, NatsAuth};
use powernode_protocol::{subjects, Reply};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What marks a forged message.
const FORGED: &str = "forged-by-the-rig-security-test";

/// The spy's connection, what it tried, and a witness on the victim's
/// subjects.
pub struct Spy {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
    /// Messages the spy's refused subscriptions delivered (must stay 0).
    leaked: Arc<AtomicUsize>,
    /// Forged messages the witness saw on the victim's subjects (must stay 0).
    forged_seen: Arc<AtomicUsize>,
    /// Replies the witness saw on the victim's inbox (the join token
    /// travels there: must become ≥ 1, proving the spy missed something).
    victim_replies: Arc<AtomicUsize>,
    subscriptions_tried: Vec<String>,
    publishes_tried: Vec<String>,
    own_request: Value,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Spy {
    /// Connects as `spy`'s NKey user and tries to subscribe to and publish
    /// on `victim`'s subjects.
    pub async fn start(rig: &Rig, spy: &str, victim: &str) -> anyhow::Result<Self> {
        let spy_seed = rig.seed(spy)?;
        let spy_pub = NatsAuth::from_seed(&spy_seed)
            .public_key()
            .context("spy seed")?;
        let victim_pub = NatsAuth::from_seed(&rig.seed(victim)?)
            .public_key()
            .context("victim seed")?;
        let victim_inst = rig.agent(victim).instance_id.clone();
        let spy_inst = rig.agent(spy).instance_id.clone();
        let urls = rig.nats_urls();

        // The witness: the test driver's user sees everything on the
        // victim's subjects and its inbox.
        let forged_seen = Arc::new(AtomicUsize::new(0));
        let victim_replies = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (subject, counter, only_forged) in [
            ("pn.agent.>".to_string(), forged_seen.clone(), true),
            (
                format!("{}.>", inbox_prefix_for(&victim_pub)),
                victim_replies.clone(),
                false,
            ),
        ] {
            let mut sub = rig.nats.subscribe(subject).await?;
            tasks.push(tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    let forged = String::from_utf8_lossy(&m.payload).contains(FORGED);
                    if forged || !only_forged {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        rig.nats.flush().await?;

        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let into = errors.clone();
        let client = async_nats::ConnectOptions::with_nkey(spy_seed)
            .custom_inbox_prefix(inbox_prefix_for(&spy_pub))
            .ignore_discovered_servers()
            .event_callback(move |event| {
                let into = into.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        into.lock().expect("errors lock").push(e.to_string());
                    }
                }
            })
            .connect(urls.iter().map(String::as_str).collect::<Vec<_>>())
            .await?;

        // Positive control: the spy's own subject and inbox work.
        let own = client
            .request(subjects::heartbeat_of(&spy_inst), "{}".into())
            .await
            .context("the spy's request on its own heartbeat subject got no answer")?;
        let own_request: Value = serde_json::from_slice(&own.payload)?;
        ensure!(
            matches!(
                serde_json::from_value::<Reply<Value>>(own_request.clone()),
                Ok(Reply::Error(_))
            ),
            "the intake answered a malformed beat with {own_request}"
        );

        let leaked = Arc::new(AtomicUsize::new(0));
        let subscriptions_tried = vec![
            format!("{}.>", inbox_prefix_for(&victim_pub)),
            "_INBOX.>".to_string(),
            format!("{}.>", subjects::SUBMIT),
            subjects::nudge(&victim_inst),
            "pn.evt.>".to_string(),
        ];
        for subject in &subscriptions_tried {
            let mut sub = client.subscribe(subject.clone()).await?;
            let leaked = leaked.clone();
            tasks.push(tokio::spawn(async move {
                while sub.next().await.is_some() {
                    leaked.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        let publishes_tried = vec![
            subjects::heartbeat_of(&victim_inst),
            subjects::submit_of(&victim_inst),
            subjects::HEARTBEAT.to_string(),
            subjects::SUBMIT.to_string(),
            format!("pn.evt.x.instance.{victim_inst}.system.k3s.handshake.ready"),
            "$JS.API.STREAM.LIST".to_string(),
        ];
        let body = json!({ "instance_id": victim_inst, "note": FORGED }).to_string();
        for subject in &publishes_tried {
            client.publish(subject.clone(), body.clone().into()).await?;
        }
        client.flush().await?;
        Ok(Self {
            client,
            errors,
            leaked,
            forged_seen,
            victim_replies,
            subscriptions_tried,
            publishes_tried,
            own_request,
            tasks,
        })
    }

    /// After the victim has joined (its token delivered): nothing leaked
    /// to the spy, nothing forged got through, and the server named every
    /// refusal.
    pub async fn finish(self, rig: &Rig, victim: &str) -> anyhow::Result<Value> {
        let state = rig.agent_state(victim)?;
        ensure!(
            state["token"].as_str().is_some_and(|t| !t.is_empty()),
            "{victim} has no join token: the scenario did not deliver one"
        );
        self.client.flush().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let errors = self.errors.lock().expect("errors lock").clone();
        let refused = |what: &str, subject: &str| {
            errors.iter().any(|e| {
                let e = e.to_lowercase();
                e.contains("permissions violation")
                    && e.contains(what)
                    && e.contains(&subject.to_lowercase())
            })
        };
        let subs_refused = self
            .subscriptions_tried
            .iter()
            .filter(|s| refused("subscription", s))
            .count();
        let pubs_refused = self
            .publishes_tried
            .iter()
            .filter(|s| refused("publish", s))
            .count();
        let leaked = self.leaked.load(Ordering::SeqCst);
        let forged = self.forged_seen.load(Ordering::SeqCst);
        let victim_replies = self.victim_replies.load(Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        let report = json!({
            "spy": "a-worker-1's NKey",
            "victim": victim,
            "subscriptions_refused": format!("{subs_refused}/{}", self.subscriptions_tried.len()),
            "publishes_refused": format!("{pubs_refused}/{}", self.publishes_tried.len()),
            "messages_leaked_to_spy": leaked,
            "forged_messages_delivered": forged,
            "replies_to_victim_seen_by_test_user": victim_replies,
            "own_subject_answered": self.own_request,
        });
        ensure!(
            subs_refused == self.subscriptions_tried.len()
                && pubs_refused == self.publishes_tried.len(),
            "the server did not refuse everything: {report}; server errors: {errors:?}"
        );
        ensure!(
            leaked == 0 && forged == 0,
            "the spy read or forged something: {report}"
        );
        ensure!(
            victim_replies > 0,
            "no reply reached {victim}'s inbox while the spy listened: nothing was tested ({report})"
        );
        Ok(report)
    }
}
