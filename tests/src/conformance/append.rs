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

/// `Err(IdTaken { id, seq })` whose message names the id and the seq.
fn is_id_taken(r: &Result<Appended, LogError>, id: Uuid, seq: u64) -> bool {
    match r {
        Err(e @ LogError::IdTaken { id: i, seq: s }) => {
            let m = e.to_string();
            *i == id && *s == seq && m.contains(&id.to_string()) && m.contains(&seq.to_string())
        }
        _ => false,
    }
}

/// An event id already stored for a different record (another aggregate,
/// kind or account) is refused with `IdTaken` naming the id and the
/// stored record's seq, and nothing is stored: with or without a guard,
/// and also when the two race in one group commit / batch. The same
/// event re-sent is still a duplicate.
pub async fn duplicate_id_of_another_record_is_refused(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-idtaken");
    let other_account = fresh_account("conf-idtaken");
    let original = cluster_event(&account, "cluster-held");
    let held = log.append(&original, Expect::Any).await?.seq;

    let with_id = |mut e: Envelope| {
        e.id = original.id;
        e
    };
    let hijacks = [
        (
            "another aggregate",
            with_id(cluster_event(&account, "cluster-other")),
        ),
        (
            "another kind on the same aggregate",
            with_id(event(
                &account,
                powernode_events::payloads::k3s::JoinTokenRotated {
                    cluster_id: "cluster-held".into(),
                    token_fingerprint: format!("sha256:{}", "0".repeat(64)),
                },
            )),
        ),
        (
            "another account",
            with_id(cluster_event(&other_account, "cluster-held")),
        ),
    ];
    let last = log.last_seq().await?;
    for (what, hijack) in &hijacks {
        let on_same_aggregate =
            hijack.aggregate == original.aggregate && hijack.account_id == original.account_id;
        let guards = [
            Expect::Any,
            if on_same_aggregate {
                Expect::LastSeq(held)
            } else {
                Expect::NoEvents
            },
            // A guard that fails: still the id's owner is named, or a conflict.
            Expect::LastSeq(held + 1000),
        ];
        for expect in guards {
            let r = log.append(hijack, expect).await;
            let stale_guard = expect == Expect::LastSeq(held + 1000);
            ensure!(
                is_id_taken(&r, original.id, held) || (stale_guard && is_conflict(&r)),
                "{what} under a stored id with {expect:?} answered {r:?}, expected IdTaken {{ id: {}, seq: {held} }}",
                original.id
            );
        }
    }
    ensure!(
        log.last_seq().await? == last,
        "refused appends moved last_seq from {last} to {}",
        log.last_seq().await?
    );
    let again = log.append(&original, Expect::Any).await?;
    ensure!(
        again
            == Appended {
                seq: held,
                duplicate: true
            },
        "the original re-sent answered {again:?}"
    );

    // Racing in one group / batch: fresh events, hijacks of stored ids,
    // and two different records sharing one new id.
    let stored: Vec<Envelope> = events(&account, 20);
    let stored_seqs = append_all(log, &stored).await?;
    let twin_a = cluster_event(&account, "cluster-twin-a");
    let twin_b = with_twin(cluster_event(&account, "cluster-twin-b"), twin_a.id);
    let mut batch: Vec<(Envelope, Option<(Uuid, u64)>)> = Vec::new();
    for (i, e) in events(&account, 200).into_iter().enumerate() {
        batch.push((e, None));
        if i % 10 == 0 {
            let k = i / 10;
            let mut hijack = cluster_event(&account, &format!("cluster-hijack-{k}"));
            hijack.id = stored[k].id;
            batch.push((hijack, Some((stored[k].id, stored_seqs[k]))));
        }
    }
    let before = log.last_seq().await?;
    let mut tasks = Vec::new();
    for (e, _) in &batch {
        let (log, e) = (log.clone(), e.clone());
        tasks.push(tokio::spawn(
            async move { log.append(&e, Expect::Any).await },
        ));
    }
    let (la, lb) = (log.clone(), log.clone());
    let (ta, tb) = (twin_a.clone(), twin_b.clone());
    let twins = tokio::join!(
        tokio::spawn(async move { la.append(&ta, Expect::Any).await }),
        tokio::spawn(async move { lb.append(&tb, Expect::Any).await }),
    );
    let twins = [twins.0?, twins.1?];
    let mut fresh = 0;
    for ((e, taken), t) in batch.iter().zip(tasks) {
        let r = t.await?;
        match taken {
            Some((id, seq)) => ensure!(
                is_id_taken(&r, *id, *seq),
                "a hijack of stored id {id} in a batch answered {r:?}"
            ),
            None => {
                let a = r.with_context(|| format!("fresh event {} in a batch", e.id))?;
                ensure!(!a.duplicate, "fresh event {} answered duplicate", e.id);
                fresh += 1;
            }
        }
    }
    let winner = match (&twins[0], &twins[1]) {
        (Ok(a), Err(LogError::IdTaken { id, seq })) if !a.duplicate && *id == twin_a.id && *seq == a.seq => &twin_a,
        (Err(LogError::IdTaken { id, seq }), Ok(b)) if !b.duplicate && *id == twin_a.id && *seq == b.seq => &twin_b,
        other => bail!("two records racing with one id answered {other:?}: expected one stored, the other IdTaken"),
    };
    let after = log.last_seq().await?;
    ensure!(
        after == before + fresh + 1,
        "the batch stored {} records, expected {fresh} fresh ones and one of the twins",
        after - before
    );
    let records = read_all(log, before + 1, &Filter::all()).await?;
    let twin_subjects: Vec<&str> = records
        .iter()
        .filter(|r| decode(r).map(|e| e.id == twin_a.id).unwrap_or(false))
        .map(|r| r.subject.as_str())
        .collect();
    let expected = event_subject(&account, &winner.aggregate, winner.kind())?;
    ensure!(
        twin_subjects == [expected.as_str()],
        "the shared id is stored as {twin_subjects:?}, expected once as {expected}"
    );
    Ok(())
}

fn with_twin(mut e: Envelope, id: Uuid) -> Envelope {
    e.id = id;
    e
}
