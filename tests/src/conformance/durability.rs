//! What must outlive a handle: durable cursors and acknowledged appends across a reopen.

use super::*;

/// Collects `n` records from a durable cursor (batches may be partial).
async fn take_from_cursor(
    cursor: &mut dyn powernode_log::DurableCursor,
    n: usize,
    what: &str,
) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut seqs = Vec::new();
    while seqs.len() < n {
        ensure!(
            Instant::now() < deadline,
            "{what}: got only {seqs:?} of {n} records"
        );
        let batch = cursor
            .next_batch(n - seqs.len(), Duration::from_secs(2))
            .await?;
        ensure!(
            batch.len() <= n - seqs.len(),
            "{what}: next_batch returned more than max"
        );
        seqs.extend(batch.iter().map(|r| r.seq));
    }
    Ok(seqs)
}

/// A durable cursor resumes after its acknowledged position when the log is
/// reopened (unacknowledged records come again); a new cursor starts after
/// `start_after`; an idle `next_batch` answers empty after `wait`.
pub async fn durable_cursor_resumes(open: &Opener) -> anyhow::Result<()> {
    let log = open().await?;
    let account = fresh_account("conf-durable");
    let filter = account_filter(&account);
    let base = log.last_seq().await?;
    let seqs = append_all(&log, &events(&account, 10)).await?;
    let name = format!("conf-{}", &Uuid::new_v4().simple().to_string()[..12]);

    let mut cursor = log.durable(&name, filter.clone(), base).await?;
    ensure!(
        cursor.acked().await? == base,
        "a new cursor's acked() is not its start_after {base}"
    );
    let got = take_from_cursor(cursor.as_mut(), 6, "first consumer").await?;
    ensure!(
        got == seqs[..6],
        "cursor delivered {got:?}, expected {:?}",
        &seqs[..6]
    );
    cursor.ack_through(seqs[3]).await?;
    ensure!(
        cursor.acked().await? == seqs[3],
        "acked() after ack_through({}) is wrong",
        seqs[3]
    );
    drop(cursor);
    drop(log);

    let log = open().await.context("reopening the log")?;
    let mut cursor = log.durable(&name, filter.clone(), base).await?;
    ensure!(
        cursor.acked().await? == seqs[3],
        "after reopen acked() is not {}",
        seqs[3]
    );
    let got = take_from_cursor(cursor.as_mut(), 6, "resumed consumer").await?;
    ensure!(
        got == seqs[4..],
        "resumed cursor delivered {got:?}, expected {:?} (everything after the ack)",
        &seqs[4..]
    );

    let wait = Duration::from_millis(400);
    let started = Instant::now();
    let idle = cursor.next_batch(10, wait).await?;
    ensure!(
        idle.is_empty(),
        "idle next_batch returned {} records",
        idle.len()
    );
    ensure!(
        started.elapsed() < wait + Duration::from_secs(5),
        "idle next_batch took {:?}",
        started.elapsed()
    );

    let appender = {
        let (log, ev) = (log.clone(), events(&account, 1).remove(0));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            log.append(&ev, Expect::Any).await
        })
    };
    let live = cursor.next_batch(10, DELIVERY_TIMEOUT).await?;
    let live_seq = appender.await??.seq;
    ensure!(
        live.iter().map(|r| r.seq).collect::<Vec<_>>() == [live_seq],
        "waiting next_batch did not return the record appended meanwhile ({live_seq})"
    );
    cursor.ack_through(live_seq).await?;

    let other = format!("{name}-b");
    let mut fresh = log.durable(&other, filter, seqs[6]).await?;
    let got = take_from_cursor(fresh.as_mut(), 1, "new cursor").await?;
    ensure!(
        got == [seqs[7]],
        "a new cursor with start_after {} delivered {got:?} first",
        seqs[6]
    );
    Ok(())
}

/// Deleting a durable cursor forgets its position: reopened, it starts after
/// `start_after` again. Deleting a missing cursor is fine.
pub async fn delete_durable_rewinds(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-delete");
    let filter = account_filter(&account);
    let base = log.last_seq().await?;
    let seqs = append_all(log, &events(&account, 4)).await?;
    let name = format!("conf-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let mut cursor = log.durable(&name, filter.clone(), base).await?;
    take_from_cursor(cursor.as_mut(), 4, "before delete").await?;
    cursor.ack_through(seqs[3]).await?;
    drop(cursor);
    log.delete_durable(&name).await.context("delete_durable")?;
    let mut cursor = log.durable(&name, filter, base).await?;
    let got = take_from_cursor(cursor.as_mut(), 4, "after delete").await?;
    ensure!(
        got == seqs,
        "after delete_durable the cursor delivered {got:?}, expected {seqs:?}"
    );
    log.delete_durable("conf-never-created")
        .await
        .context("deleting a missing cursor")?;
    Ok(())
}

/// Every acknowledged append survives dropping and reopening the log: each
/// event exactly once at the seq it was acknowledged with, dedupe still
/// holds, aggregate positions survive, appends continue at the next seq.
pub async fn survives_reopen(open: &Opener) -> anyhow::Result<()> {
    let log = open().await?;
    let account = fresh_account("conf-reopen");
    let base = log.last_seq().await?;
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let log = log.clone();
            let evs = events(&account, PER_WRITER);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for ev in evs {
                    let a = log.append(&ev, Expect::Any).await?;
                    acked.push((ev, a.seq));
                }
                Ok::<_, LogError>(acked)
            })
        })
        .collect();
    let mut acked: Vec<(Envelope, u64)> = Vec::new();
    for w in writers {
        acked.extend(w.await??);
    }
    drop(log);

    let log = open().await.context("reopening the log")?;
    let total = (WRITERS * PER_WRITER) as u64;
    ensure!(
        log.last_seq().await? == base + total,
        "after reopen last_seq is not {}",
        base + total
    );
    let records = read_all(&log, base + 1, &Filter::all()).await?;
    let by_seq: BTreeMap<u64, Uuid> = records
        .iter()
        .map(|r| Ok((r.seq, decode(r)?.id)))
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        by_seq.len() as u64 == total,
        "after reopen {} records follow {base}, expected {total}",
        by_seq.len()
    );
    for (ev, seq) in &acked {
        ensure!(
            by_seq.get(seq) == Some(&ev.id),
            "acknowledged event {} (seq {seq}) is not at its seq after reopen",
            ev.id
        );
    }

    let (resent, seq) = &acked[acked.len() / 2];
    let again = log.append(resent, Expect::Any).await?;
    ensure!(
        again
            == Appended {
                seq: *seq,
                duplicate: true
            },
        "after reopen a re-send answered {again:?}"
    );
    let mut last_by_aggregate: HashMap<&AggregateRef, u64> = HashMap::new();
    for (ev, seq) in &acked {
        let e = last_by_aggregate.entry(&ev.aggregate).or_insert(0);
        *e = (*e).max(*seq);
    }
    for (aggregate, seq) in last_by_aggregate {
        let got = log.aggregate_last_seq(&account, aggregate).await?;
        ensure!(
            got == Some(seq),
            "after reopen aggregate_last_seq({aggregate}) = {got:?}, expected {seq}"
        );
    }
    let next = log
        .append(&events(&account, 1).remove(0), Expect::Any)
        .await?;
    ensure!(
        next == Appended {
            seq: base + total + 1,
            duplicate: false
        },
        "after reopen a new append answered {next:?}, expected seq {}",
        base + total + 1
    );
    Ok(())
}
