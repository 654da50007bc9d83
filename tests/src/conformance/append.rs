//! Appending: read back, dedupe by event id, the per-aggregate guard.

use super::*;

/// Appends one event of every kind (and a few more) and reads them back:
/// sequences contiguous from the previous last, subjects and bytes canonical,
/// envelopes decode to what was appended, stored time is the append time,
/// `aggregate_last_seq` tracks each aggregate.
pub async fn append_and_read_back(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-read");
    let evs = events(&account, example_payloads().len() + 3);
    let base = log.last_seq().await?;
    let before = Utc::now();
    let seqs = append_all(log, &evs).await?;
    let after = Utc::now();
    let expected: Vec<u64> = (base + 1..=base + evs.len() as u64).collect();
    ensure!(
        seqs == expected,
        "appends got seqs {seqs:?}, expected {expected:?}"
    );
    ensure!(
        log.last_seq().await? == base + evs.len() as u64,
        "last_seq is not the last appended seq"
    );

    let records = log.read(base + 1, 1000, &Filter::all()).await?;
    ensure!(
        records.len() == evs.len(),
        "read back {} records, appended {}",
        records.len(),
        evs.len()
    );
    let slack = chrono::Duration::seconds(5);
    for ((rec, ev), seq) in records.iter().zip(&evs).zip(&seqs) {
        ensure!(
            rec.seq == *seq,
            "record at position of seq {seq} has seq {}",
            rec.seq
        );
        let subject = event_subject(&account, &ev.aggregate, ev.kind())?;
        ensure!(
            rec.subject == subject,
            "seq {seq}: subject {:?}, expected {subject:?}",
            rec.subject
        );
        ensure!(
            rec.kind() == ev.kind() && rec.account() == account.as_str(),
            "seq {seq}: kind/account mismatch"
        );
        ensure!(
            rec.bytes.as_ref() == ev.encode()?.as_slice(),
            "seq {seq}: bytes are not the canonical encoding"
        );
        ensure!(
            decode(rec)? == *ev,
            "seq {seq}: decoded envelope differs from the appended one"
        );
        ensure!(
            rec.stored_at >= before - slack && rec.stored_at <= after + slack,
            "seq {seq}: stored_at {} is not the time of the append ({before} .. {after})",
            rec.stored_at
        );
    }

    let page = log.read(base + 3, 5, &Filter::all()).await?;
    let page_seqs: Vec<u64> = page.iter().map(|r| r.seq).collect();
    ensure!(
        page_seqs == (base + 3..base + 8).collect::<Vec<_>>(),
        "read(from, 5) returned seqs {page_seqs:?}"
    );
    let past_end = log
        .read(base + evs.len() as u64 + 1, 10, &Filter::all())
        .await?;
    ensure!(
        past_end.is_empty(),
        "read past the end returned {} records",
        past_end.len()
    );

    let mut last_by_aggregate: HashMap<&AggregateRef, u64> = HashMap::new();
    for (ev, seq) in evs.iter().zip(&seqs) {
        last_by_aggregate.insert(&ev.aggregate, *seq);
    }
    for (aggregate, seq) in last_by_aggregate {
        let got = log.aggregate_last_seq(&account, aggregate).await?;
        ensure!(
            got == Some(seq),
            "aggregate_last_seq({aggregate}) = {got:?}, expected Some({seq})"
        );
    }
    Ok(())
}

/// Re-sending an event answers its original seq with `duplicate: true` and
/// stores nothing — also later, also with a guard that no longer holds, and
/// also when many copies race.
pub async fn dedupe_resent_event(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-dedupe");
    let ev = cluster_event(&account, "cluster-dedupe");
    let first = log.append(&ev, Expect::NoEvents).await?;
    ensure!(!first.duplicate, "first append reported as duplicate");
    let again = log.append(&ev, Expect::Any).await?;
    ensure!(
        again
            == Appended {
                seq: first.seq,
                duplicate: true
            },
        "re-send answered {again:?}, expected seq {} duplicate",
        first.seq
    );

    append_all(log, &events(&account, 5)).await?;
    let later = log.append(&ev, Expect::Any).await?;
    ensure!(
        later
            == Appended {
                seq: first.seq,
                duplicate: true
            },
        "later re-send answered {later:?}"
    );
    // A retry of an append that succeeded must not turn into a conflict.
    let guarded = log.append(&ev, Expect::NoEvents).await;
    ensure!(
        matches!(guarded, Ok(Appended { seq, duplicate: true }) if seq == first.seq),
        "re-send with the (now stale) guard it succeeded with answered {guarded:?}, expected the original seq as a duplicate"
    );

    // Many copies of one new event at once: one stored, all answer its seq.
    let racer = cluster_event(&account, "cluster-dedupe-race");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (log, racer) = (log.clone(), racer.clone());
            tokio::spawn(async move { log.append(&racer, Expect::Any).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await??);
    }
    let seqs: HashSet<u64> = answers.iter().map(|a| a.seq).collect();
    let fresh = answers.iter().filter(|a| !a.duplicate).count();
    ensure!(
        seqs.len() == 1 && fresh == 1,
        "8 racing copies answered {answers:?}: expected one seq, one non-duplicate"
    );

    let records = read_all(log, first.seq, &account_filter(&account)).await?;
    for id in [ev.id, racer.id] {
        let copies = records
            .iter()
            .filter(|r| decode(r).map(|e| e.id == id).unwrap_or(false))
            .count();
        ensure!(copies == 1, "event {id} is stored {copies} times");
    }
    Ok(())
}

/// The per-aggregate guard: `NoEvents` and `LastSeq` pass or fail with
/// `Conflict`, a refused append stores nothing (not even its id), other
/// aggregates and accounts are independent, and of 16 racing appends with
/// the same `LastSeq` exactly one wins.
pub async fn guarded_append_conflict(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-guard");
    let cluster = "cluster-guarded";
    let aggregate = cluster_event(&account, cluster).aggregate;
    ensure!(
        log.aggregate_last_seq(&account, &aggregate)
            .await?
            .is_none(),
        "aggregate_last_seq of a new aggregate is not None"
    );

    let e1 = cluster_event(&account, cluster);
    let s1 = log
        .append(&e1, Expect::NoEvents)
        .await
        .context("NoEvents on a fresh aggregate")?
        .seq;
    ensure!(
        log.aggregate_last_seq(&account, &aggregate).await? == Some(s1),
        "aggregate_last_seq is not {s1}"
    );

    let last_before = log.last_seq().await?;
    let e2 = cluster_event(&account, cluster);
    let r = log.append(&e2, Expect::NoEvents).await;
    ensure!(
        is_conflict(&r),
        "second NoEvents answered {r:?}, expected Conflict"
    );
    ensure!(
        log.last_seq().await? == last_before,
        "a refused append moved last_seq"
    );
    ensure!(
        log.aggregate_last_seq(&account, &aggregate).await? == Some(s1),
        "a refused append moved the aggregate"
    );

    let e3 = cluster_event(&account, cluster);
    let s3 = log
        .append(&e3, Expect::LastSeq(s1))
        .await
        .context("LastSeq(current)")?
        .seq;
    for stale in [s1, s3 + 1000] {
        let r = log
            .append(&cluster_event(&account, cluster), Expect::LastSeq(stale))
            .await;
        ensure!(
            is_conflict(&r),
            "LastSeq({stale}) with the aggregate at {s3} answered {r:?}, expected Conflict"
        );
    }
    // The refused event's id was not recorded: with the right guard it is new.
    let retry = log
        .append(&e2, Expect::LastSeq(s3))
        .await
        .context("retry of a refused event")?;
    ensure!(
        !retry.duplicate,
        "an event refused with Conflict was later reported as a duplicate"
    );

    // Another aggregate, and the same aggregate id in another account, are independent.
    log.append(&cluster_event(&account, "cluster-other"), Expect::NoEvents)
        .await
        .context("NoEvents on a second aggregate")?;
    let other_account = fresh_account("conf-guard");
    log.append(&cluster_event(&other_account, cluster), Expect::NoEvents)
        .await
        .context("NoEvents on the same aggregate id in another account")?;

    let stored: HashSet<Uuid> = read_all(log, s1, &account_filter(&account))
        .await?
        .iter()
        .map(decode)
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .map(|e| e.id)
        .collect();
    ensure!(
        stored.len() == 4,
        "expected 4 stored events in the account, found {}",
        stored.len()
    );

    // 16 writers race with the same expectation: exactly one wins.
    let current = log
        .aggregate_last_seq(&account, &aggregate)
        .await?
        .context("aggregate has events")?;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let log = log.clone();
            let ev = cluster_event(&account, cluster);
            tokio::spawn(async move { log.append(&ev, Expect::LastSeq(current)).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    let winners: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|a| a.seq)
        .collect();
    let conflicts = results.iter().filter(|r| is_conflict(r)).count();
    ensure!(
        winners.len() == 1 && conflicts == 15,
        "16 racing LastSeq({current}) appends: {} won, {conflicts} conflicted, others: {:?}",
        winners.len(),
        results
            .iter()
            .filter(|r| r.is_err() && !is_conflict(r))
            .collect::<Vec<_>>()
    );
    let now = log.aggregate_last_seq(&account, &aggregate).await?;
    ensure!(
        now == Some(winners[0]),
        "aggregate_last_seq is {now:?} after the race, winner has {}",
        winners[0]
    );
    let mut raced = 0;
    for r in read_all(log, current + 1, &account_filter(&account)).await? {
        raced += usize::from(decode(&r)?.aggregate == aggregate);
    }
    ensure!(
        raced == 1,
        "the race stored {raced} records on the aggregate, expected 1"
    );
    Ok(())
}
