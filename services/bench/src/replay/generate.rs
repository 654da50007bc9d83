//! A synthetic but realistic export for `powernode bench replay`: the
//! fleet's build-up from [`crate::workload`] (every lifecycle event,
//! agent events signed with the enrolled keys), then rounds of VIP failover
//! churn until the requested count, sealed every [`SEAL_EVERY`] records
//! with a fixed bench key as the platform's sealer seals. Streams to the file: the generator
//! holds the fleet's build-up, never the churn.

use crate::workload;
use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use powernode_archive::Writer;
use powernode_events::payloads::fleet::AgentEnrolled;
use powernode_events::payloads::log::LogSealed;
use powernode_events::payloads::sdwan::{VipHolderSilent, VirtualIpApplied, VirtualIpPromoted};
use powernode_events::seal::{leaf, Leaf};
use powernode_events::subject::event_subject;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::Record;
use std::io::BufWriter;
use std::path::Path;

/// Control-plane servers per generated cluster (the workload's 3).
const SERVERS: usize = 3;

/// What was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Events in the file.
    pub events: u64,
    /// Of which the fleet's build-up.
    pub fleet_events: u64,
    /// Of which agent-signed.
    pub signed: u64,
    /// Of which seals (one every [`SEAL_EVERY`] records).
    pub seals: u64,
    /// File size.
    pub bytes: u64,
}

/// One cluster's VIP as the churn moves it.
struct Vip {
    account: AccountId,
    cluster: usize,
    holder: usize,
    generation: u64,
    keys: Vec<SigningKey>,
}

/// Appends events as records with consecutive sequences and synthetic
/// stored-at times (one millisecond apart, from a fixed start).
struct Out {
    writer: Writer<BufWriter<std::fs::File>>,
    seq: u64,
    signed: u64,
    start: DateTime<Utc>,
    /// Leaves of the records since the last seal.
    leaves: Vec<Leaf>,
    /// Seals written.
    seals: u64,
}

impl Out {
    fn put(&mut self, event: &Envelope) -> anyhow::Result<()> {
        self.seq += 1;
        if event.signature.is_some() {
            self.signed += 1;
        }
        let record = Record {
            seq: self.seq,
            subject: event_subject(&event.account_id, &event.aggregate, event.kind())?,
            stored_at: self.start + Duration::milliseconds(self.seq as i64),
            bytes: Bytes::from(event.encode()?),
        };
        self.leaves
            .push(leaf(record.seq, &record.subject, &record.bytes));
        self.writer.write(&record)?;
        Ok(())
    }

    /// Seals the records since the last seal, as the platform's sealer
    /// does every [`SEAL_EVERY`] records.
    fn seal_if_due(&mut self) -> anyhow::Result<()> {
        if self.leaves.len() < SEAL_EVERY {
            return Ok(());
        }
        let leaves = std::mem::take(&mut self.leaves);
        let from = self.seq + 1 - leaves.len() as u64;
        let sealed = LogSealed::seal(&seal_key(), from, &leaves);
        let system = AccountId::new("system").expect("literal is a valid account id");
        self.seals += 1;
        self.put(&Envelope::new(system, Actor::service("sealer"), sealed))
    }
}

/// Records per seal in a generated file (the sealer's default).
pub const SEAL_EVERY: usize = 4096;

/// The generated files' seal key (fixed, so a file can be checked later
/// with its public half pinned: [`seal_public_key`]).
pub fn seal_key() -> SigningKey {
    SigningKey::from_bytes(&[0x5e; 32])
}

/// The public half of [`seal_key`], hex.
pub fn seal_public_key() -> String {
    hex::encode(seal_key().verifying_key().as_bytes())
}

/// Writes `total` events to `path`: `clusters` clusters over `accounts`
/// accounts, then failover churn.
pub fn write(path: &Path, total: u64, clusters: usize, accounts: usize) -> anyhow::Result<Written> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = Out {
        writer: Writer::new(BufWriter::with_capacity(1 << 20, file))?,
        seq: 0,
        signed: 0,
        leaves: Vec::new(),
        seals: 0,
        start: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("literal time")
            .with_timezone(&Utc),
    };
    let per_cluster = workload::build(1_000, 1)
        .first()
        .map_or(1, |s| s.events.len());
    let fleet_total = (clusters.max(1) * per_cluster).min(total as usize);
    let mut vips = Vec::new();
    for (i, stream) in workload::build(fleet_total, accounts)
        .into_iter()
        .enumerate()
    {
        let complete = stream.events.len() == per_cluster;
        let mut keys = Vec::new();
        for event in &stream.events {
            if let EventPayload::AgentEnrolled(AgentEnrolled { public_key, .. }) = &event.payload {
                keys.push(public_key.clone());
            }
            out.put(event)?;
            out.seal_if_due()?;
        }
        if complete {
            let account = stream.events[0].account_id.clone();
            vips.push(Vip {
                account,
                cluster: i,
                holder: 0,
                generation: 1,
                keys: member_keys(i, &keys)?,
            });
        }
    }
    let fleet_events = out.seq;
    // Failover churn: each round moves every VIP to its next server.
    while out.seq < total && !vips.is_empty() {
        for vip in &mut vips {
            for event in churn(vip) {
                if out.seq >= total {
                    break;
                }
                out.put(&event)?;
                out.seal_if_due()?;
            }
        }
    }
    let (events, signed, seals) = (out.seq, out.signed, out.seals);
    let bytes = out.writer.bytes_written();
    out.writer.finish()?;
    Ok(Written {
        events,
        fleet_events,
        signed,
        seals,
        bytes,
    })
}

/// The signing keys of cluster `i`'s members, as the workload derives
/// them; checked against the keys they enrolled with.
fn member_keys(i: usize, enrolled: &[String]) -> anyhow::Result<Vec<SigningKey>> {
    let keys: Vec<SigningKey> = (0..enrolled.len())
        .map(|n| SigningKey::from_bytes(&workload_seed(i, n)))
        .collect();
    for (key, public) in keys.iter().zip(enrolled) {
        if hex::encode(key.verifying_key().to_bytes()) != *public {
            bail!("cluster {i}: the workload's agent keys are no longer derived as this generator assumes (bench/workload.rs `seed`)");
        }
    }
    if keys.len() < SERVERS {
        bail!(
            "cluster {i} has {} members, expected at least {SERVERS}",
            keys.len()
        );
    }
    Ok(keys)
}

/// The workload's key seed for member `n` of cluster `i` (a copy of
/// `workload::seed`, checked by [`member_keys`]).
fn workload_seed(i: usize, n: usize) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s[8] = n as u8;
    s
}

/// One round for one VIP: the holder goes silent, the next server is
/// promoted, its agent reports holding the new generation and the old
/// holder's agent reports releasing the old one (both signed).
fn churn(vip: &mut Vip) -> Vec<Envelope> {
    let i = vip.cluster;
    let (from, to) = (vip.holder, (vip.holder + 1) % SERVERS);
    let peer = |n: usize| format!("peer-{i:08}-{n}");
    let inst = |n: usize| format!("inst-{i:08}-{n}");
    let vip_id = format!("vip-{i:08}");
    let service =
        |name: &str, p: EventPayload| Envelope::new(vip.account.clone(), Actor::service(name), p);
    let silent = service(
        "sensor",
        VipHolderSilent {
            virtual_ip_id: vip_id.clone(),
            holder_peer_id: peer(from),
            last_seen_at: "2026-01-01T00:00:00Z".into(),
            threshold_ms: 3000,
            observer: "sensor".into(),
            reason: Default::default(),
        }
        .into(),
    );
    let promoted = service(
        "failover",
        VirtualIpPromoted {
            virtual_ip_id: vip_id.clone(),
            from_peer_id: Some(peer(from)),
            to_peer_id: peer(to),
            generation: vip.generation + 1,
            reason: "auto_failover".into(),
            to_instance_id: Some(inst(to)),
            approval_id: None,
        }
        .into(),
    );
    let applied = |n: usize, generation: u64, held: bool| {
        let mut e = Envelope::new(
            vip.account.clone(),
            Actor::Agent {
                instance_id: inst(n),
            },
            VirtualIpApplied {
                virtual_ip_id: vip_id.clone(),
                instance_id: inst(n),
                peer_id: peer(n),
                generation,
                held,
            },
        );
        e.sign(&vip.keys[n])
            .expect("generated events always encode");
        e
    };
    let events = vec![
        silent,
        promoted,
        applied(to, vip.generation + 1, true),
        applied(from, vip.generation, false),
    ];
    vip.holder = to;
    vip.generation += 1;
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_archive::{Bound, Source, SourceArgs};
    use powernode_inspect::replay::{fold, state_hash};

    #[tokio::test]
    async fn every_generated_event_is_admitted_and_churn_adds_no_objects() {
        let dir = tempfile::tempdir().unwrap();
        let mut sizes = Vec::new();
        for total in [400, 2600] {
            let path = dir.path().join(format!("{total}.pnx"));
            let w = write(&path, total, 4, 2).unwrap();
            assert_eq!(w.events, total);
            assert!(w.signed > total / 3, "{w:?}");
            let args = SourceArgs {
                file: Some(path),
                nats: None,
                nats_auth: Default::default(),
                stream: String::new(),
            };
            let src = Source::open(&args, dir.path()).await.unwrap();
            let verified = fold(&src, Bound::End, false, false).await.unwrap();
            assert_eq!(
                verified.stats.applied, total,
                "{:?}",
                verified.stats.refused
            );
            let trusted = fold(&src, Bound::End, true, false).await.unwrap();
            assert_eq!(state_hash(&trusted.state), state_hash(&verified.state));
            let (clusters, instances) = verified.state.accounts().fold((0, 0), |(c, i), (_, a)| {
                (c + a.clusters.len(), i + a.instances.len())
            });
            sizes.push((clusters, instances));
        }
        assert_eq!(sizes, vec![(4, 20), (4, 20)]);
    }
}
