//! The sealed log against a real nats-server: two sealers seal each range
//! once, a restart resumes after the last seal, and a replay of the log or
//! of an export verifies by the seals, naming by seq a changed, missing,
//! reordered or inserted record and a forged seal.
//!
//! `cargo test -p powernode-tests --test sealed_log`.

use anyhow::{ensure, Context as _};
use futures::StreamExt;
use powernode_archive::{Bound, Source, Writer};
use powernode_events::payloads::log::LogSealed;
use powernode_events::{AccountId, Actor, Envelope, EventPayload, SigningKey};
use powernode_inspect::sealed::{fold_sealed, Mode};
use powernode_log::{Filter, Record, SharedLog};
use powernode_server::sealer::key::SealKey;
use powernode_server::sealer::{last_seal, seal_once, Round};
use powernode_tests::conformance::fresh_account;
use powernode_tests::jetstream_support::{cluster_event, open};
use powernode_tests::nats::NatsServer;
use std::path::Path;

fn seal_key(n: u8) -> SealKey {
    SealKey::from_signing_key(SigningKey::from_bytes(&[n; 32]))
}

async fn append(log: &SharedLog, account: &AccountId, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        log.append(
            &cluster_event(account, &format!("c{i}")),
            powernode_log::Expect::Any,
        )
        .await?;
    }
    Ok(())
}

/// Seals until nothing waits.
async fn seal_all(log: &SharedLog, key: &SealKey, every: u64) -> anyhow::Result<u64> {
    let mut seals = 0;
    loop {
        match seal_once(log, key, every, |w| w > 0).await? {
            Round::Sealed { .. } => seals += 1,
            Round::Idle => return Ok(seals),
            other => anyhow::bail!("unexpected round {other:?}"),
        }
    }
}

async fn records(source: &Source) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut s = source.records(1, Bound::End, Filter::all()).await?;
    while let Some(r) = s.next().await {
        out.push(r?);
    }
    Ok(out)
}

fn write_file(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    let mut w = Writer::new(std::fs::File::create(path)?)?;
    for r in records {
        w.write(r)?;
    }
    w.finish()?;
    Ok(())
}

/// The error a sealed replay of `records` (written to a file) ends in.
async fn tampered(dir: &Path, name: &str, records: &[Record], key: &SealKey) -> String {
    let path = dir.join(name);
    write_file(&path, records).expect("written");
    let source = Source::File(path);
    match fold_sealed(&source, Bound::End, Some(key.verifying_key()), false).await {
        Ok((_, mode)) => panic!("{name}: a tampered file verified ({mode:?})"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sealers_seal_each_range_once_and_a_restart_resumes() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = open(&server).await?;
    let account = fresh_account("seal");
    append(&log, &account, 30).await?;
    let key = seal_key(3);
    // Two sealers (two replicas) at once: one range, one seal.
    let (a, b) = tokio::join!(
        seal_once(&log, &key, 20, |w| w > 0),
        seal_once(&log, &key, 20, |w| w > 0)
    );
    let rounds = [a?, b?];
    let sealed: Vec<_> = rounds
        .iter()
        .filter(|r| matches!(r, Round::Sealed { .. }))
        .collect();
    ensure!(sealed.len() == 1, "two sealers: {rounds:?}");
    ensure!(
        rounds.contains(&Round::Lost),
        "the second sealer must lose the guard: {rounds:?}"
    );
    // "Restart": a new round reads where the last seal ended.
    let (seal_seq, first) = last_seal(&log).await?.context("a seal")?;
    ensure!((first.from_seq, first.through_seq) == (1, 20), "{first:?}");
    match seal_once(&log, &key, 20, |w| w > 0).await? {
        Round::Sealed { from, through, .. } => {
            ensure!(
                from == 21 && through == seal_seq,
                "resumed at {from}-{through}"
            )
        }
        other => anyhow::bail!("expected a seal, got {other:?}"),
    }
    // A sealer with another key stands by.
    ensure!(seal_once(&log, &seal_key(4), 20, |_| true).await? == Round::OtherKey);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_verifies_by_seals_and_names_tampering_by_seq() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = open(&server).await?;
    let account = fresh_account("seal");
    let key = seal_key(5);
    append(&log, &account, 25).await?;
    ensure!(seal_all(&log, &key, 10).await? == 3);
    append(&log, &account, 4).await?; // past the last seal (after the seal itself)
    let network = Source::Log(log.clone());
    let (folded, mode) =
        fold_sealed(&network, Bound::End, Some(key.verifying_key()), false).await?;
    let Mode::Sealed {
        seals,
        sealed_through,
        pinned,
        ..
    } = mode.clone()
    else {
        anyhow::bail!("not sealed: {mode:?}")
    };
    ensure!(seals == 3 && pinned, "{mode:?}");
    ensure!(
        sealed_through + 5 == folded.stats.last_seq,
        "{mode:?} {:?}",
        folded.stats.last_seq
    );
    ensure!(mode.describe(folded.stats.records).contains("by 3 seal(s)"));

    // The same records in an export file verify alike.
    let dir = tempfile::tempdir()?;
    let recs = records(&network).await?;
    let path = dir.path().join("intact.pnx");
    write_file(&path, &recs)?;
    let (_, file_mode) = fold_sealed(
        &Source::File(path),
        Bound::End,
        Some(key.verifying_key()),
        false,
    )
    .await?;
    ensure!(file_mode == mode, "{file_mode:?} vs {mode:?}");

    // A changed byte (a consistent file: frames and trailer rewritten).
    let mut changed = recs.clone();
    let mut bytes = changed[6].bytes.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    changed[6].bytes = bytes.into();
    let e = tampered(dir.path(), "changed.pnx", &changed, &key).await;
    ensure!(e.contains("record seq 7 differs"), "{e}");

    // A missing record.
    let mut missing = recs.clone();
    missing.remove(8);
    let e = tampered(dir.path(), "missing.pnx", &missing, &key).await;
    ensure!(e.contains("record seq 9 is missing"), "{e}");

    // Two records reordered (their sequences kept in order).
    let mut reordered = recs.clone();
    let (b3, b4) = (reordered[2].bytes.clone(), reordered[3].bytes.clone());
    reordered[2].bytes = b4;
    reordered[3].bytes = b3;
    let e = tampered(dir.path(), "reordered.pnx", &reordered, &key).await;
    ensure!(e.contains("record seq 3 differs"), "{e}");

    // A record inserted after seq 4, the rest renumbered.
    let mut inserted: Vec<Record> = recs[..4].to_vec();
    let mut extra = recs[4].clone();
    extra.seq = 5;
    inserted.push(extra);
    for r in &recs[4..] {
        let mut r = r.clone();
        r.seq += 1;
        inserted.push(r);
    }
    let e = tampered(dir.path(), "inserted.pnx", &inserted, &key).await;
    ensure!(
        e.contains("record seq 6 differs") || e.contains("seq 5"),
        "{e}"
    );

    // A forged seal: the first seal re-signed by another key over a changed record.
    let seal_at = recs
        .iter()
        .position(|r| r.subject.ends_with(".system.log.sealed"))
        .context("a seal record")?;
    let mut forged = recs.clone();
    let mut bytes = forged[1].bytes.to_vec();
    bytes[10] ^= 0x40;
    forged[1].bytes = bytes.into();
    let leaves: Vec<_> = forged[..10]
        .iter()
        .map(|r| powernode_events::seal::leaf(r.seq, &r.subject, &r.bytes))
        .collect();
    let fake = LogSealed::seal(&SigningKey::from_bytes(&[9; 32]), 1, &leaves);
    let env = Envelope::new(AccountId::new("system")?, Actor::service("sealer"), fake);
    forged[seal_at].bytes = env.encode()?.into();
    let e = tampered(dir.path(), "forged.pnx", &forged, &key).await;
    let seal_seq = recs[seal_at].seq;
    ensure!(
        e.contains(&format!("seal at seq {seal_seq} is forged")),
        "{e}"
    );
    // Its envelope decodes as a seal: the check is the signature, not the shape.
    ensure!(matches!(
        Envelope::decode(&forged[seal_at].bytes)?.payload,
        EventPayload::LogSealed(_)
    ));
    Ok(())
}
