//! The lease keeper: claims, renews, balances and releases a replica's
//! partitions in JetStream KV.
//!
//! Two buckets, shared by every partitioned service:
//!
//! * [`LEASE_BUCKET`] (`max_age` = the lease TTL, one value per key):
//!   `lease.<service>.<p>` = the holder's replica name, created with
//!   `create` (fails while someone holds it) and renewed with `update` at
//!   the revision the holder last wrote (compare-and-set: a renewal after
//!   the lease expired and was claimed fails, and the holder lets go);
//!   `member.<service>.<replica>` says a replica is alive. A key not
//!   written for a TTL ages out: a dead replica's leases become free.
//! * [`PROGRESS_BUCKET`] (no TTL): `progress.<service>.<p>` = the sequence
//!   through which the partition's decisions are all in the log, written by
//!   its owner after each renewal and when it lets go.
//!
//! Each round (every TTL/4): say "alive", renew every owned lease, write
//! progress, then balance toward `ceil(P / live replicas)` each: a replica
//! with more releases the surplus (progress first, then the lease); one
//! with fewer claims free partitions. On shutdown every lease is released,
//! so the others take over at once instead of after the TTL.

use super::{Ownership, PartitionConfig};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use powernode_log::SharedLog;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// Leases and live replicas.
pub const LEASE_BUCKET: &str = "pn_partition_leases";
/// Per-partition progress.
pub const PROGRESS_BUCKET: &str = "pn_partition_progress";

/// Why the lease keeper cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Partitioning needs the JetStream log (its KV buckets).
    #[error("partitioned replicas need the JetStream log (--nats); the embedded log has no KV")]
    NoJetStream,
    /// A bucket could not be opened or created.
    #[error("KV bucket {bucket}: {reason}")]
    Bucket {
        /// The bucket.
        bucket: &'static str,
        /// What failed.
        reason: String,
    },
}

/// The keeper of one replica's leases.
pub struct LeaseKeeper {
    config: PartitionConfig,
    ownership: Ownership,
    log: SharedLog,
    leases: kv::Store,
    progress: kv::Store,
    /// Owned partitions → the revision of our last write of their lease.
    held: BTreeMap<u32, u64>,
    /// Progress last written per partition (written again only when it moves).
    written: BTreeMap<u32, u64>,
}

impl LeaseKeeper {
    /// Opens (or creates) the buckets on the log's NATS connection.
    pub async fn open(
        log: SharedLog,
        config: PartitionConfig,
        ownership: Ownership,
    ) -> Result<Self, LeaseError> {
        let (client, replicas) = log.nats_client().ok_or(LeaseError::NoJetStream)?;
        let js = jetstream::new(client);
        let leases = bucket(
            &js,
            kv::Config {
                bucket: LEASE_BUCKET.into(),
                description: "powernode partition leases (per service and partition)".into(),
                history: 1,
                max_age: config.lease_ttl,
                num_replicas: replicas.max(1),
                ..Default::default()
            },
            LEASE_BUCKET,
        )
        .await?;
        let progress = bucket(
            &js,
            kv::Config {
                bucket: PROGRESS_BUCKET.into(),
                description: "powernode partition progress (decided-through sequence)".into(),
                history: 1,
                num_replicas: replicas.max(1),
                ..Default::default()
            },
            PROGRESS_BUCKET,
        )
        .await?;
        Ok(Self {
            config,
            ownership,
            log,
            leases,
            progress,
            held: BTreeMap::new(),
            written: BTreeMap::new(),
        })
    }

    /// Keeps the leases until `shutdown`, then releases them all.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let span = tracing::info_span!(
            "leases",
            service = %self.config.service,
            replica = %self.config.replica
        );
        async move {
            loop {
                self.round().await;
                self.ownership.round_done();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.config.renew_every()) => {}
                }
            }
            for p in self.held.keys().copied().collect::<Vec<_>>() {
                self.release(p).await;
            }
            info!("released every partition");
        }
        .instrument(span)
        .await
    }

    fn key(&self, what: &str, p: u32) -> String {
        format!("{what}.{}.{p}", self.config.service)
    }

    /// One round: alive, renew, progress, balance.
    async fn round(&mut self) {
        let member = format!("member.{}.{}", self.config.service, self.config.replica);
        if let Err(e) = self.leases.put(&member, Bytes::new()).await {
            warn!(error = %e, "cannot say alive; keeping what is held");
        }
        self.renew().await;
        self.write_progress().await;
        let members = match self.members().await {
            Ok(n) => n.max(1),
            Err(e) => {
                warn!(error = %e, "cannot list replicas; not balancing this round");
                return;
            }
        };
        let partitions = self.config.partitions;
        let target = partitions.div_ceil(members) as usize;
        // Release the surplus (highest partitions first), then claim.
        while self.held.len() > target {
            let Some(p) = self.held.keys().next_back().copied() else {
                break;
            };
            self.release(p).await;
        }
        if self.held.len() < target {
            for p in 0..partitions {
                if self.held.len() >= target {
                    break;
                }
                if !self.held.contains_key(&p) {
                    self.claim(p).await;
                }
            }
        }
    }

    /// Live replicas of this service.
    async fn members(&self) -> Result<u32, String> {
        let prefix = format!("member.{}.", self.config.service);
        let mut keys = self.leases.keys().await.map_err(|e| e.to_string())?;
        let mut n = 0;
        while let Some(key) = keys.next().await {
            if key.map_err(|e| e.to_string())?.starts_with(&prefix) {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn renew(&mut self) {
        let valid_for = self.config.valid_for();
        for (p, revision) in self.held.clone() {
            let started = Instant::now();
            let key = self.key("lease", p);
            let value = Bytes::from(self.config.replica.clone());
            match self.leases.update(&key, value, revision).await {
                Ok(rev) => {
                    self.held.insert(p, rev);
                    self.ownership.renewed(p, started + valid_for);
                }
                Err(e) => {
                    // Taken by another replica after it expired, or the
                    // server is unreachable: either way stop deciding now.
                    warn!(partition = p, error = %e, "lease lost");
                    self.held.remove(&p);
                    self.ownership.lose(p);
                }
            }
        }
    }

    async fn write_progress(&mut self) {
        for (p, seq) in self.ownership.progress_all() {
            if self.written.get(&p) == Some(&seq) {
                continue;
            }
            let key = self.key("progress", p);
            match self.progress.put(&key, Bytes::from(seq.to_string())).await {
                Ok(_) => {
                    self.written.insert(p, seq);
                }
                Err(e) => warn!(partition = p, error = %e, "cannot record progress"),
            }
        }
    }

    async fn claim(&mut self, p: u32) {
        let started = Instant::now();
        let key = self.key("lease", p);
        let value = Bytes::from(self.config.replica.clone());
        let revision = match self.leases.create(&key, value).await {
            Ok(rev) => rev,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return,
            Err(e) => {
                warn!(partition = p, error = %e, "cannot claim");
                return;
            }
        };
        // Where the previous owner got to; with none (never owned), what is
        // in the log now was decided before partitioning began.
        let recorded = match self.progress.get(self.key("progress", p)).await {
            Ok(v) => v.and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok()),
            Err(e) => {
                warn!(partition = p, error = %e, "cannot read progress; letting the claim go");
                let _ = self.leases.delete(&key).await;
                return;
            }
        };
        let decided_through = match recorded {
            Some(seq) => seq,
            None => match self.log.last_seq().await {
                Ok(seq) => seq,
                Err(e) => {
                    warn!(partition = p, error = %e, "cannot read the log's head; letting the claim go");
                    let _ = self.leases.delete(&key).await;
                    return;
                }
            },
        };
        self.held.insert(p, revision);
        self.written.insert(p, decided_through);
        self.ownership
            .gain(p, decided_through, started + self.config.valid_for());
        info!(partition = p, decided_through, "partition claimed");
    }

    /// Lets `p` go: stop deciding, record how far its decisions got, free
    /// the lease.
    async fn release(&mut self, p: u32) {
        let Some(revision) = self.held.remove(&p) else {
            return;
        };
        if let Some(seq) = self.ownership.lose(p) {
            if let Err(e) = self
                .progress
                .put(self.key("progress", p), Bytes::from(seq.to_string()))
                .await
            {
                // The next owner starts from the last progress written:
                // it decides again what came after (duplicates, dropped).
                warn!(partition = p, error = %e, "cannot record progress on release");
            }
        }
        self.written.remove(&p);
        let key = self.key("lease", p);
        // Deleted only at our revision: never someone else's lease.
        if let Err(e) = self
            .leases
            .delete_expect_revision(&key, Some(revision))
            .await
        {
            debug!(partition = p, error = %e, "release: not ours any more (or it expires)");
        }
        info!(partition = p, "partition released");
    }
}

/// Opens `config.bucket`, creating it when missing.
async fn bucket(
    js: &jetstream::Context,
    config: kv::Config,
    name: &'static str,
) -> Result<kv::Store, LeaseError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Created by another replica meanwhile.
        Err(create) => js
            .get_key_value(name)
            .await
            .map_err(|open| LeaseError::Bucket {
                bucket: name,
                reason: format!("create: {create}; open: {open}"),
            }),
    }
}
