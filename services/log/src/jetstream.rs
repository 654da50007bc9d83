//! JetStream backend: the production event log.
//!
//! One stream ([`DEFAULT_STREAM`]) captures every event subject
//! (`pn.evt.>`, see [`powernode_events::subject`]); the subject carries the
//! account, the aggregate and the kind, so filters run on the server.
//!
//! * **Append** — published with `Nats-Msg-Id` = event id, so a re-sent event
//!   is answered with its original sequence (`duplicate: true`) within the
//!   stream's duplicate window. The server dedupes by id alone, so a
//!   duplicate answer is checked against the stored record's subject: a
//!   different record under the same id is [`LogError::IdTaken`].
//!   A guard ([`Expect`]) becomes
//!   `Nats-Expected-Last-Subject-Sequence` with
//!   `Nats-Expected-Last-Subject-Sequence-Subject: pn.evt.<acct>.<type>.<id>.>`
//!   so it covers every event of the aggregate. Appends go through a
//!   group-commit writer (`jetstream/writer.rs`) that sends each wave of
//!   concurrent appends as one atomic batch (one disk flush under
//!   `sync_interval: always`) or as pipelined publishes, whichever it has
//!   measured to be cheaper on this server ([`GroupCommit::Adaptive`]).
//! * **Read / last sequences** — from the stream leader (never direct get,
//!   which may lag on a replica); range reads in `jetstream/read.rs`.
//! * **Subscribe** — an ordered consumer with a guard against replaying
//!   from the start (`jetstream/subscription.rs`).
//! * **Durable cursors** — durable pull consumers with cumulative acks (`jetstream/cursor.rs`).
//!
//! The stream is created, or brought up to date, at [`JetStreamLog::connect`].
//!
//! Server behaviour the code relies on or works around (nats-server 2.15):
//! * the server checks an expected-sequence guard *before* the id, so a
//!   guarded re-send of a stored event is refused as a conflict; the log
//!   then looks for the id among the aggregate's events after the guard and
//!   answers "duplicate" with the original sequence;
//! * "duplicate message id is in process" (10158, replicated streams) is
//!   answered by asking again shortly, which then reports the duplicate;
//! * dedupe only covers the stream's duplicate window
//!   ([`DEFAULT_DUPLICATE_WINDOW`]);
//! * a consumer's ack floor is persisted shortly after the ack, so after a
//!   server *crash* a durable cursor may deliver again records acknowledged
//!   just before it (consumers skip what they have applied).

mod cursor;
mod errors;
mod get;
mod read;
mod setup;
mod subscription;
mod writer;

pub use cursor::{durable_name, JetStreamCursor, DURABLE_ACK_WAIT, DURABLE_MAX_ACK_PENDING};
pub use writer::{GroupCommit, WriterStats};

use self::errors::PublishFailure;
use self::writer::{PendingAppend, WriterConfig};
use crate::{
    Appended, DurableCursor, EventLog, Expect, Filter, LogError, RawRecord, Record, StartAt,
    Subscription,
};
use async_nats::jetstream;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, StorageType};
use async_nats::{Client, ConnectOptions, HeaderMap};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use powernode_events::subject::{aggregate_filter, event_subject, EVENT_SUBJECT_WILDCARD};
use powernode_events::{AccountId, AggregateRef, Envelope};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// Name of the stream holding every event.
pub const DEFAULT_STREAM: &str = "PN_EVENTS";
/// Where a local nats-server listens.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// How long the server remembers event ids for dedupe. The server default
/// is two minutes; an event re-sent after a service restart or a long
/// outage must still be recognised, so we keep an hour (the cost is one
/// entry per event of the last hour in the server's memory).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Most appends the writer puts in one atomic batch (the server allows 1000).
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Batches (or lone publishes) the writer keeps awaiting their ack at once.
/// One gives the biggest batches on a single server; a replicated stream
/// gains from a few (measured: 1 ≈ 2 ≈ 4 on R1, 4 > 2 > 1 on R3).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 2;

/// Header carrying the event id; the server dedupes on it.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header carrying the guard's expected sequence (0: no events yet).
pub const HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// Header naming the subject (filter) the guard is checked on.
pub const HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str =
    "Nats-Expected-Last-Subject-Sequence-Subject";

/// How far back a conflicting append looks for its own event (a re-send).
const DUPLICATE_SCAN_LIMIT: usize = 256;
/// How often an append is re-sent while the same event id is "in process".
const IN_PROCESS_RETRIES: u32 = 10;

/// How to reach JetStream and how the event stream is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// Server URL(s), e.g. `nats://127.0.0.1:4222` (comma-separated for several).
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// Stream replicas: 1 on a single server, 3 on a 3-node cluster.
    pub replicas: usize,
    /// Dedupe window for event ids (see [`DEFAULT_DUPLICATE_WINDOW`]).
    pub duplicate_window: Duration,
    /// Most appends per atomic batch (clamped to 1..=1000).
    pub max_batch: usize,
    /// Batches the writer keeps in flight (pipelining).
    pub max_in_flight: usize,
    /// How concurrent appends are grouped: adaptive (the default: per wave,
    /// whichever of an atomic batch and pipelined publishes is cheaper on
    /// this server), or always one of them (for benchmarks).
    pub group_commit: GroupCommit,
    /// How long connecting may take before failing with `Unavailable`.
    pub connect_timeout: Duration,
    /// How long a publish ack or a JetStream API call may take.
    pub request_timeout: Duration,
    /// Use only the servers in `url`, never the ones a cluster advertises
    /// (for clients outside the cluster's network, e.g. the host of a
    /// compose rig whose servers advertise container addresses).
    pub ignore_discovered_servers: bool,
    /// Credentials and TLS (`--nats-creds`, `--nats-ca`), and whether a
    /// server that admits anonymous JetStream clients is tolerated.
    pub auth: crate::nats::connect::ClientAuth,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_string(),
            stream: DEFAULT_STREAM.to_string(),
            replicas: 1,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_batch: DEFAULT_MAX_BATCH,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            group_commit: GroupCommit::Adaptive,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ignore_discovered_servers: false,
            auth: Default::default(),
        }
    }
}

impl JetStreamConfig {
    /// Defaults with this server URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The stream configuration this log wants.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some("powernode events (append-only)".to_string()),
            subjects: vec![EVENT_SUBJECT_WILDCARD.to_string()],
            storage: StorageType::File,
            num_replicas: self.replicas.max(1),
            duplicate_window: self.duplicate_window,
            allow_direct: true,
            allow_atomic_publish: true,
            // The log is append-only: no deleting or purging events.
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        }
    }
}

/// The JetStream [`EventLog`].
pub struct JetStreamLog {
    config: JetStreamConfig,
    client: Client,
    stream: stream::Stream<()>,
    writer: mpsc::Sender<PendingAppend>,
    counters: Arc<writer::Counters>,
    reconnects: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JetStreamLog {
    /// Connects, ensures the stream exists with the wanted settings, and
    /// starts the writer. Fails with [`LogError::Unavailable`] naming the URL
    /// within `connect_timeout` when no server answers.
    pub async fn connect(config: JetStreamConfig) -> Result<Self, LogError> {
        let url = config.url.clone();
        // Every (re)connect bumps this; subscriptions recreate their consumers.
        let reconnects = Arc::new(watch::channel(0u64).0);
        let on_event = reconnects.clone();
        let mut options = ConnectOptions::new()
            .name("powernode")
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout))
            .ping_interval(Duration::from_secs(20))
            .event_callback(move |event| {
                let reconnects = on_event.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!("connected to NATS");
                            reconnects.send_modify(|n| *n += 1);
                        }
                        async_nats::Event::Disconnected => warn!("disconnected from NATS"),
                        other => debug!(event = %other, "NATS event"),
                    }
                }
            });
        // Belt and braces: the client does not retry an initial connect, but
        // a black-holed address must not hang either.
        if config.ignore_discovered_servers {
            options = options.ignore_discovered_servers();
        }
        options = config.auth.apply(options, &url);
        crate::nats::connect::refuse_anonymous_jetstream(&url, &config.auth)
            .await
            .map_err(LogError::Unavailable)?;
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let started = tokio::time::Instant::now();
        let client = match tokio::time::timeout(config.connect_timeout, options.connect(servers))
            .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                let hint = match (&config.auth.creds, e.kind()) {
                        (None, async_nats::ConnectErrorKind::AuthorizationViolation) => {
                            " (the server wants credentials: pass --nats-creds with the platform.creds `powernode nats init` made)"
                        }
                        (Some(_), async_nats::ConnectErrorKind::AuthorizationViolation) => {
                            " (the server does not know these credentials: are they the ones its auth.conf names?)"
                        }
                        _ => "",
                    };
                return Err(LogError::Unavailable(format!(
                    "cannot connect to NATS at {url}: {e}{hint}"
                )));
            }
            Err(_) => {
                return Err(LogError::Unavailable(format!(
                    "cannot connect to NATS at {url}: no answer within {:?}",
                    config.connect_timeout
                )))
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        // A cluster that is still electing its JetStream leader answers
        // "temporarily unavailable": keep trying until the connect deadline.
        let deadline = started + config.connect_timeout.max(Duration::from_secs(1));
        let mut attempt: u32 = 0;
        loop {
            match setup::ensure_stream(&js, &config).await {
                Ok(()) => break,
                Err(LogError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                    attempt += 1;
                    debug!(error = %e, attempt, "JetStream not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10))))
                        .await;
                }
                Err(e) => return Err(prefix_url(e, &url)),
            }
        }
        let stream = js
            .get_stream_no_info(&config.stream)
            .await
            .map_err(|e| unavailable(&format!("opening stream at {url}"), e))?;
        let counters = Arc::new(writer::Counters::default());
        let writer = writer::spawn_writer(
            js,
            WriterConfig {
                max_batch: config.max_batch,
                max_in_flight: config.max_in_flight,
                mode: config.group_commit,
            },
            config.max_batch.clamp(1, writer::SERVER_MAX_BATCH) * 4,
            counters.clone(),
        );
        info!(url = %config.url, stream = %config.stream, "JetStream event log ready");
        Ok(Self {
            config,
            client,
            stream,
            writer,
            counters,
            reconnects,
        })
    }

    /// What the group-commit writer has done since connecting.
    pub fn writer_stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// The configuration in use.
    pub fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    /// The underlying NATS client (for tools and tests that need raw access).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Looks for the event `event_id` among the aggregate's events after
    /// `after`: the server checks a guard before dedupe, so a re-sent
    /// guarded event whose first send was stored comes back as a conflict.
    /// Answers its sequence and subject.
    async fn find_stored(
        &self,
        aggregate_subject: &str,
        event_id: &str,
        after: u64,
    ) -> Result<Option<(u64, String)>, LogError> {
        let mut seq = after + 1;
        for _ in 0..DUPLICATE_SCAN_LIMIT {
            let msg = self
                .stream
                .raw_message_builder()
                .sequence(seq)
                .next_by_subject(aggregate_subject.to_string())
                .send()
                .await;
            match msg {
                Ok(m) => {
                    if m.headers.get(HEADER_MSG_ID).map(|v| v.as_str()) == Some(event_id) {
                        return Ok(Some((m.sequence, m.subject.to_string())));
                    }
                    seq = m.sequence + 1;
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
                Err(e) => return Err(unavailable("checking for a duplicate", e)),
            }
        }
        Ok(None)
    }

    /// The subject of the record at `seq` (read from the stream leader), to
    /// check a "duplicate" answer against what is stored.
    async fn subject_at(&self, seq: u64) -> Result<String, LogError> {
        let m = self
            .stream
            .raw_message_builder()
            .sequence(seq)
            .send()
            .await
            .map_err(|e| unavailable(&format!("reading record {seq} to check a duplicate"), e))?;
        Ok(m.subject.to_string())
    }

    /// A "duplicate" answer for `event`, checked against the record stored
    /// under its id: the same subject (account, aggregate, kind) is the same
    /// fact; another one means the id is taken ([`LogError::IdTaken`]).
    fn check_duplicate(
        event: &Envelope,
        subject: &str,
        seq: u64,
        stored_subject: &str,
    ) -> Result<Appended, LogError> {
        if stored_subject == subject {
            Ok(Appended {
                seq,
                duplicate: true,
            })
        } else {
            warn!(event_id = %event.id, seq, stored = %stored_subject, refused = %subject, "append refused: the event id is taken by a different record");
            Err(LogError::IdTaken { id: event.id, seq })
        }
    }
}

#[async_trait]
impl EventLog for JetStreamLog {
    fn nats_client(&self) -> Option<(async_nats::Client, usize)> {
        Some((self.client.clone(), self.config.replicas))
    }

    fn nats_creds(&self) -> Option<crate::nats::PlatformCreds> {
        self.config.auth.creds.clone()
    }

    async fn append(&self, event: &Envelope, expect: Expect) -> Result<Appended, LogError> {
        let payload = event
            .encode()
            .map_err(|e| LogError::Invalid(e.to_string()))?;
        let subject = event_subject(&event.account_id, &event.aggregate, event.kind())
            .map_err(|e| LogError::Invalid(e.to_string()))?;
        let aggregate_key = aggregate_filter(&event.account_id, &event.aggregate)
            .map_err(|e| LogError::Invalid(e.to_string()))?;
        let event_id = event.id.to_string();
        let payload = Bytes::from(payload);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_MSG_ID, event_id.as_str());
        let guard = match expect {
            Expect::Any => None,
            Expect::NoEvents => Some(0),
            Expect::LastSeq(n) => Some(n),
        };
        if let Some(n) = guard {
            headers.insert(
                HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE,
                n.to_string().as_str(),
            );
            headers.insert(
                HEADER_EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
                aggregate_key.as_str(),
            );
        }
        let mut in_process_retries = 0;
        let result = loop {
            let (reply, answer) = oneshot::channel();
            self.writer
                .send(PendingAppend {
                    subject: subject.clone(),
                    headers: headers.clone(),
                    payload: payload.clone(),
                    event_id: event_id.clone(),
                    guarded: guard.is_some(),
                    reply,
                })
                .await
                .map_err(|_| LogError::Closed)?;
            match answer.await.map_err(|_| LogError::Closed)? {
                // Another publish of this very event is being stored: once it
                // is, asking again answers "duplicate" with its sequence.
                Err(PublishFailure::InProcess) if in_process_retries < IN_PROCESS_RETRIES => {
                    in_process_retries += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(in_process_retries)))
                        .await;
                }
                other => break other,
            }
        };
        match result {
            Ok(stored) if stored.duplicate => {
                let stored_subject = self.subject_at(stored.seq).await?;
                Self::check_duplicate(event, &subject, stored.seq, &stored_subject)
            }
            Ok(stored) => {
                crate::metrics::event_appended(event.payload.event_kind());
                Ok(Appended {
                    seq: stored.seq,
                    duplicate: false,
                })
            }
            Err(PublishFailure::Conflict) => {
                let after = guard.unwrap_or(0);
                match self.find_stored(&aggregate_key, &event_id, after).await? {
                    Some((seq, stored_subject)) => {
                        Self::check_duplicate(event, &subject, seq, &stored_subject)
                    }
                    None => Err(LogError::Conflict {
                        aggregate: event.aggregate.to_string(),
                        expected: expect,
                    }),
                }
            }
            Err(PublishFailure::Unavailable(e)) => Err(LogError::Unavailable(e)),
            Err(PublishFailure::InProcess) => Err(LogError::Unavailable(format!(
                "event {event_id} is still being stored by another append; retry"
            ))),
            Err(PublishFailure::Invalid(e)) => Err(LogError::Invalid(e)),
            Err(PublishFailure::Rejected { description, .. }) => {
                Err(LogError::Storage(description))
            }
        }
    }

    async fn append_raw(&self, records: &[RawRecord]) -> Result<Vec<u64>, LogError> {
        // Queued in order before any answer is awaited: the writer sends
        // them in order, in atomic batches (no guard, ids unique: no refusal).
        let mut answers = Vec::with_capacity(records.len());
        for r in records {
            let mut headers = HeaderMap::new();
            let event_id = match r.event_id {
                Some(id) => {
                    let id = id.to_string();
                    headers.insert(HEADER_MSG_ID, id.as_str());
                    id
                }
                None => uuid::Uuid::new_v4().to_string(),
            };
            let (reply, answer) = oneshot::channel();
            self.writer
                .send(PendingAppend {
                    subject: r.subject.clone(),
                    headers,
                    payload: r.bytes.clone(),
                    event_id,
                    guarded: false,
                    reply,
                })
                .await
                .map_err(|_| LogError::Closed)?;
            answers.push(answer);
        }
        let mut seqs = Vec::with_capacity(answers.len());
        for answer in answers {
            match answer.await.map_err(|_| LogError::Closed)? {
                Ok(stored) if stored.duplicate => {
                    return Err(LogError::Invalid(format!(
                        "an imported event id was already stored (seq {})",
                        stored.seq
                    )))
                }
                Ok(stored) => seqs.push(stored.seq),
                Err(PublishFailure::Unavailable(e)) => return Err(LogError::Unavailable(e)),
                Err(PublishFailure::Invalid(e)) => return Err(LogError::Invalid(e)),
                Err(other) => return Err(LogError::Storage(format!("{other:?}"))),
            }
        }
        Ok(seqs)
    }

    async fn aggregate_last_seq(
        &self,
        account: &AccountId,
        aggregate: &AggregateRef,
    ) -> Result<Option<u64>, LogError> {
        let subject =
            aggregate_filter(account, aggregate).map_err(|e| LogError::Invalid(e.to_string()))?;
        // STREAM.MSG.GET is answered by the stream leader.
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(Some(m.sequence)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable("reading the aggregate's last event", e)),
        }
    }

    async fn read(
        &self,
        from: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<Record>, LogError> {
        read::read(&self.stream, from, limit, filter).await
    }

    async fn read_seqs(&self, seqs: &[u64]) -> Result<Vec<Record>, LogError> {
        get::read_seqs(&self.stream, seqs).await
    }

    async fn last_seq(&self) -> Result<u64, LogError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| unavailable("reading stream state", e))?;
        Ok(info.state.last_sequence)
    }

    async fn subscribe(&self, start: StartAt, filter: Filter) -> Result<Subscription, LogError> {
        let last = match start {
            StartAt::New => self.last_seq().await?,
            _ => 0,
        };
        subscription::subscribe(
            &self.stream,
            start,
            filter,
            last,
            self.reconnects.subscribe(),
        )
        .await
    }

    async fn durable(
        &self,
        name: &str,
        filter: Filter,
        start_after: u64,
    ) -> Result<Box<dyn DurableCursor>, LogError> {
        let cursor = cursor::open(&self.stream, name, filter, start_after).await?;
        Ok(Box::new(cursor))
    }

    async fn delete_durable(&self, name: &str) -> Result<(), LogError> {
        cursor::delete(&self.stream, name).await
    }

    fn describe(&self) -> String {
        format!(
            "jetstream {} stream {}",
            self.config.url, self.config.stream
        )
    }
}

/// Makes an `Unavailable` error out of any client error.
pub(crate) fn unavailable(context: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("{context}: {e}"))
}

fn prefix_url(e: LogError, url: &str) -> LogError {
    match e {
        LogError::Unavailable(m) => LogError::Unavailable(format!("NATS at {url}: {m}")),
        other => other,
    }
}

/// A server timestamp as chrono. (async-nats uses `time` unless its
/// `chrono` feature is on; this is the one place that knows.)
pub(crate) fn nats_time(t: async_nats::datetime::DateTime) -> DateTime<Utc> {
    let nanos = t.unix_timestamp_nanos();
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}
