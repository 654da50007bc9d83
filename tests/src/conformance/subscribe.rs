//! Reading and subscribing: catch-up then live, start positions, filters.

use super::*;

/// A subscription from seq N opened while another task keeps appending sees
/// exactly N..=last, in order, with no gap and no duplicate across the
/// catch-up/live boundary.
pub async fn subscribe_from_seq_while_appending(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-sub");
    append_all(log, &events(&account, 100)).await?;
    let prefilled = log.last_seq().await?;
    let start = prefilled - 49;
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 75;
    let total = (WRITERS * PER_WRITER) as u64;

    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let log = log.clone();
            let evs = events(&account, PER_WRITER);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for ev in &evs {
                    seqs.push(log.append(ev, Expect::Any).await?.seq);
                    tokio::task::yield_now().await;
                }
                Ok::<_, LogError>(seqs)
            })
        })
        .collect();
    let mut sub = log.subscribe(StartAt::Seq(start), Filter::all()).await?;
    let end = prefilled + total;
    let mut got = Vec::new();
    while got.last().is_none_or(|&s| s < end) {
        let rec = next_record(
            &mut sub,
            &format!("subscription from {start} (have {} records)", got.len()),
        )
        .await?;
        decode(&rec)?;
        got.push(rec.seq);
    }
    let expected: Vec<u64> = (start..=end).collect();
    if got != expected {
        let dups = got.len() - got.iter().collect::<HashSet<_>>().len();
        bail!(
            "subscription from {start} delivered {} records ({dups} duplicates), expected {start}..={end} in order; first wrong position: {:?}",
            got.len(),
            got.iter().zip(&expected).position(|(a, b)| a != b)
        );
    }
    expect_quiet(&mut sub, "subscription after the last append").await?;
    let mut appended = Vec::new();
    for w in writers {
        appended.extend(w.await??);
    }
    appended.sort_unstable();
    ensure!(
        appended == (prefilled + 1..=end).collect::<Vec<_>>(),
        "concurrent appends did not get seqs {}..={end}",
        prefilled + 1
    );
    Ok(())
}

/// `StartAt::New` delivers only what is appended after subscribing;
/// `StartAt::Time(t)` starts at the first record stored at or after `t`.
pub async fn subscribe_new_and_from_time(log: &SharedLog) -> anyhow::Result<()> {
    let account = fresh_account("conf-time");
    let filter = account_filter(&account);
    let early = append_all(log, &events(&account, 10)).await?;

    let mut new_sub = log.subscribe(StartAt::New, filter.clone()).await?;
    let later = append_all(log, &events(&account, 5)).await?;
    let got = receive_seqs(&mut new_sub, 5, "StartAt::New").await?;
    ensure!(
        got == later,
        "StartAt::New delivered {got:?}, expected only the later appends {later:?}"
    );
    expect_quiet(&mut new_sub, "StartAt::New").await?;

    tokio::time::sleep(Duration::from_millis(250)).await;
    let t: DateTime<Utc> = Utc::now();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let after_t = append_all(log, &events(&account, 5)).await?;

    let records = read_all(log, early[0], &filter).await?;
    let first_at_t = records.iter().find(|r| r.stored_at >= t).map(|r| r.seq);
    ensure!(
        first_at_t == Some(after_t[0]),
        "stored times do not straddle t={t} as expected: first record stored at/after t is {first_at_t:?}, appended after t from {}",
        after_t[0]
    );
    let mut time_sub = log.subscribe(StartAt::Time(t), filter.clone()).await?;
    let got = receive_seqs(&mut time_sub, 5, "StartAt::Time").await?;
    ensure!(
        got == after_t,
        "StartAt::Time(t) delivered {got:?}, expected {after_t:?}"
    );
    expect_quiet(&mut time_sub, "StartAt::Time").await?;
    let live = append_all(log, &events(&account, 1)).await?;
    let got = next_record(&mut time_sub, "StartAt::Time, live part")
        .await?
        .seq;
    ensure!(
        got == live[0],
        "StartAt::Time went live with {got}, expected {}",
        live[0]
    );

    let mut past_sub = log
        .subscribe(
            StartAt::Time(t - chrono::Duration::days(3650)),
            filter.clone(),
        )
        .await?;
    let first = next_record(&mut past_sub, "StartAt::Time(long ago)")
        .await?
        .seq;
    ensure!(
        first == early[0],
        "StartAt::Time(long ago) started at {first}, expected the account's first record {}",
        early[0]
    );

    let mut future_sub = log
        .subscribe(
            StartAt::Time(Utc::now() + chrono::Duration::seconds(2)),
            filter,
        )
        .await?;
    expect_quiet(&mut future_sub, "StartAt::Time(future)").await?;
    Ok(())
}

/// Filters by account and kind *string* prefix (`system.k3s.handshake.join`
/// matches `join_request`, `join_token_issued`, `join_rejected`; `sdwan`
/// matches `sdwan.…` but not `system.sdwan.…`), for read and subscribe.
pub async fn filter_by_account_and_kind_prefix(log: &SharedLog) -> anyhow::Result<()> {
    let (a, b) = (fresh_account("conf-filt"), fresh_account("conf-filt"));
    let base = log.last_seq().await?;
    let mut appended: Vec<(u64, Envelope)> = Vec::new();
    let n = example_payloads().len() * 2;
    for (ea, eb) in events(&a, n).into_iter().zip(events(&b, n)) {
        for ev in [ea, eb] {
            let seq = log.append(&ev, Expect::Any).await?.seq;
            appended.push((seq, ev));
        }
    }
    let cases = [
        (Some(&a), Some("system.k3s.handshake.join")),
        (None, Some("system.k3s.handshake.join")),
        (Some(&b), Some("sdwan")),
        (Some(&a), Some("system.sdwan.")),
        (Some(&b), Some("system.k3s.handshake.join_request")),
        (Some(&a), None),
        (None, Some("no.such.kind")),
    ];
    for (account, prefix) in cases {
        let filter = Filter {
            account: account.cloned(),
            kind_prefix: prefix.map(str::to_string),
        };
        let expected: Vec<u64> = appended
            .iter()
            .filter(|(_, ev)| {
                account.is_none_or(|acc| ev.account_id == *acc)
                    && prefix.is_none_or(|p| ev.kind().starts_with(p))
            })
            .map(|(seq, _)| *seq)
            .collect();
        let read: Vec<u64> = read_all(log, base + 1, &filter)
            .await?
            .iter()
            .map(|r| r.seq)
            .collect();
        ensure!(
            read == expected,
            "read with {filter:?} returned seqs {read:?}, expected {expected:?}"
        );
        let mut sub = log
            .subscribe(StartAt::Seq(base + 1), filter.clone())
            .await?;
        let got = receive_seqs(
            &mut sub,
            expected.len(),
            &format!("subscribe with {filter:?}"),
        )
        .await?;
        ensure!(
            got == expected,
            "subscribe with {filter:?} delivered {got:?}, expected {expected:?}"
        );
        expect_quiet(&mut sub, &format!("subscribe with {filter:?}")).await?;
    }

    // The filter also applies to live records.
    let filter = Filter {
        account: Some(a.clone()),
        kind_prefix: Some("system.k3s.handshake.join".into()),
    };
    let limited = log.read(base + 1, 2, &filter).await?;
    ensure!(
        limited.len() == 2,
        "read with limit 2 returned {} records",
        limited.len()
    );
    let mut sub = log.subscribe(StartAt::New, filter.clone()).await?;
    let join = |acc: &AccountId| {
        example_payloads()
            .into_iter()
            .find(|p| p.kind() == "system.k3s.handshake.join_token_issued")
            .map(|p| event(acc, p))
            .context("example payloads include join_token_issued")
    };
    let other_kind = events(&a, 1).remove(0);
    log.append(&join(&b)?, Expect::Any).await?;
    log.append(&other_kind, Expect::Any).await?;
    let wanted = log.append(&join(&a)?, Expect::Any).await?.seq;
    let got = next_record(&mut sub, "live filtered subscription").await?;
    ensure!(
        got.seq == wanted,
        "live filtered subscription delivered seq {} ({}), expected {wanted}",
        got.seq,
        got.subject
    );
    expect_quiet(&mut sub, "live filtered subscription").await?;
    Ok(())
}
