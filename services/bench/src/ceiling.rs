//! The bare JetStream ceiling on the same server, for the same bytes: how
//! fast raw messages can be published (the better of pipelined async publish
//! and pipelined atomic batches) and read back by an ordered consumer; and
//! what N concurrent publishers each awaiting its ack get
//! ([`same_concurrency`]), the raw counterpart of N appenders.

use anyhow::{bail, Context};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use powernode_log::nats::connect::ClientAuth;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RAW_STREAM: &str = "PN_BENCH_RAW";
const RAW_SUBJECT: &str = "pnbench.raw";
/// Publish acks outstanding at once in the async test.
const ASYNC_WINDOW: usize = 4096;
/// Messages per atomic batch (the server caps batches at 1000).
const BATCH: usize = 500;
/// Atomic batches outstanding at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// The ceiling figures.
pub struct Ceiling {
    /// Pipelined async publish, messages/s.
    pub async_per_s: f64,
    /// Pipelined atomic batch publish, messages/s.
    pub batch_per_s: f64,
    /// The better of the two.
    pub publish_per_s: f64,
    /// Ordered-consumer read of the whole stream, messages/s.
    pub replay_per_s: f64,
}

async fn connect(url: &str, auth: &ClientAuth) -> anyhow::Result<jetstream::Context> {
    let options = auth.apply(async_nats::ConnectOptions::new(), url);
    let client = options
        .connection_timeout(std::time::Duration::from_secs(5))
        .retry_on_initial_connect()
        .max_reconnects(Some(3))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(jetstream::new(client))
}

/// Deletes a stream if it exists (the bench's own streams only).
pub async fn delete_stream(url: &str, auth: &ClientAuth, name: &str) -> anyhow::Result<()> {
    let js = connect(url, auth).await?;
    match js.delete_stream(name).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("not found") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete stream {name}")),
    }
}

async fn fresh_raw_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    let _ = js.delete_stream(RAW_STREAM).await;
    js.create_stream(stream::Config {
        name: RAW_STREAM.into(),
        subjects: vec![format!("{RAW_SUBJECT}.>")],
        storage: stream::StorageType::File,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .context("cannot create the raw ceiling stream")
}

/// Measures the ceiling for `payloads` on the server at `url`.
pub async fn measure(
    url: &str,
    auth: &ClientAuth,
    payloads: &[Vec<u8>],
) -> anyhow::Result<Ceiling> {
    let js = connect(url, auth).await?;
    let payloads: Vec<Bytes> = payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect();
    let n = payloads.len() as f64;

    fresh_raw_stream(&js).await?;
    let start = Instant::now();
    let mut acks = FuturesUnordered::new();
    for (i, p) in payloads.iter().enumerate() {
        if acks.len() >= ASYNC_WINDOW {
            acks.next().await.context("ack stream ended")??;
        }
        let ack = js
            .publish(format!("{RAW_SUBJECT}.{}", i % 64), p.clone())
            .await?;
        acks.push(std::future::IntoFuture::into_future(ack));
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let async_per_s = n / start.elapsed().as_secs_f64();

    let batch_per_s = batch_ceiling(&js, &payloads).await?;

    let mut raw = js.get_stream(RAW_STREAM).await?;
    let stored = raw.info().await?.state.messages;
    if stored != payloads.len() as u64 {
        bail!(
            "raw stream holds {stored} messages, {} were published",
            payloads.len()
        );
    }
    let consumer = raw
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let start = Instant::now();
    let mut messages = consumer.messages().await?;
    let mut seen = 0u64;
    while let Some(m) = messages.next().await {
        let Ok(m) = m else { continue };
        seen += 1;
        if m.info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence
            >= stored
        {
            break;
        }
    }
    let replay_per_s = seen as f64 / start.elapsed().as_secs_f64();
    drop(messages);
    js.delete_stream(RAW_STREAM).await?;
    Ok(Ceiling {
        async_per_s,
        batch_per_s,
        publish_per_s: async_per_s.max(batch_per_s),
        replay_per_s,
    })
}

/// Raw atomic batches of [`BATCH`] messages, [`BATCHES_IN_FLIGHT`] at once,
/// on a fresh stream: messages/s.
async fn batch_ceiling(js: &jetstream::Context, payloads: &[Bytes]) -> anyhow::Result<f64> {
    fresh_raw_stream(js).await?;
    let start = Instant::now();
    let mut commits = FuturesUnordered::new();
    for (b, chunk) in payloads.chunks(BATCH).enumerate() {
        if commits.len() >= BATCHES_IN_FLIGHT {
            commits.next().await.context("commit stream ended")??;
        }
        let id = format!("raw-{b}");
        for (i, p) in chunk.iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Batch-Id", id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            let subject = format!("{RAW_SUBJECT}.{}", i % 64);
            if i + 1 < chunk.len() {
                js.client()
                    .publish_with_headers(subject, headers, p.clone())
                    .await?;
            } else {
                headers.insert("Nats-Batch-Commit", "1");
                let msg = jetstream::message::PublishMessage::build()
                    .payload(p.clone())
                    .headers(headers);
                let ack = js.send_publish(subject, msg).await?;
                commits.push(std::future::IntoFuture::into_future(ack));
            }
        }
    }
    while let Some(c) = commits.next().await {
        c?;
    }
    Ok(payloads.len() as f64 / start.elapsed().as_secs_f64())
}

/// The raw batch ceiling alone (see [`measure`]), on a stream of its own
/// that is deleted afterwards: messages/s.
pub async fn batch_per_s(
    url: &str,
    auth: &ClientAuth,
    payloads: &[Vec<u8>],
) -> anyhow::Result<f64> {
    let js = connect(url, auth).await?;
    let payloads: Vec<Bytes> = payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect();
    let rate = batch_ceiling(&js, &payloads).await?;
    js.delete_stream(RAW_STREAM).await?;
    Ok(rate)
}

/// `tasks` concurrent publishers on one connection, each publishing one
/// message and awaiting its ack, again and again, for `duration`, on a
/// fresh stream: messages/s. The raw counterpart of `tasks` appenders
/// that each wait for their append to be stored.
pub async fn same_concurrency(
    url: &str,
    auth: &ClientAuth,
    payloads: &[Vec<u8>],
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    if payloads.is_empty() || tasks == 0 {
        bail!("nothing to publish");
    }
    let js = connect(url, auth).await?;
    let payloads: Arc<Vec<Bytes>> =
        Arc::new(payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect());
    fresh_raw_stream(&js).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (js, payloads, next) = (js.clone(), payloads.clone(), next.clone());
        publishers.spawn(async move {
            let mut published = 0u64;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let p = payloads[i % payloads.len()].clone();
                js.publish(format!("{RAW_SUBJECT}.{}", i % 64), p)
                    .await?
                    .await?;
                published += 1;
            }
            Ok::<_, anyhow::Error>(published)
        });
    }
    let mut published = 0u64;
    while let Some(done) = publishers.join_next().await {
        published += done??;
    }
    let rate = published as f64 / start.elapsed().as_secs_f64();
    js.delete_stream(RAW_STREAM).await?;
    Ok(rate)
}
