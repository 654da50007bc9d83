//! The chain and the verifier: every kind of tampering is named by seq.

use super::*;
use crate::ids::{AccountId, Actor};

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// A log of `n` plain records (seq, subject, bytes).
fn records(n: u64) -> Vec<(u64, String, Vec<u8>)> {
    (1..=n)
        .map(|s| {
            (
                s,
                format!("pn.evt.acct.cluster.c{s}.system.k3s.cluster.activated"),
                format!("event {s}").into_bytes(),
            )
        })
        .collect()
}

/// The stored record of a seal over `from..` of `log`, appended to it.
fn append_seal(
    log: &mut Vec<(u64, String, Vec<u8>)>,
    key: &SigningKey,
    from: u64,
    through: u64,
) -> LogSealed {
    let leaves: Vec<Leaf> = log
        .iter()
        .filter(|(s, _, _)| (from..=through).contains(s))
        .map(|(s, subj, b)| leaf(*s, subj, b))
        .collect();
    let sealed = LogSealed::seal(key, from, &leaves);
    let env = Envelope::new(
        AccountId::new("system").expect("valid"),
        Actor::service("sealer"),
        sealed.clone(),
    );
    let seq = log.last().map_or(1, |(s, _, _)| s + 1);
    let subject = format!("pn.evt.system.log.{SEAL_CHAIN}.system.log.sealed");
    log.push((seq, subject, env.encode().expect("encodes")));
    sealed
}

/// 10 records, seal 1-10 (seq 11), 5 records, seal 11-16 (seq 17), 3 records.
fn sealed_log(k: &SigningKey) -> Vec<(u64, String, Vec<u8>)> {
    let mut log = records(10);
    append_seal(&mut log, k, 1, 10);
    for s in 12..=16 {
        log.push((
            s,
            format!("pn.evt.acct.cluster.c{s}.system.k3s.cluster.activated"),
            vec![s as u8; 40],
        ));
    }
    append_seal(&mut log, k, 11, 16);
    for s in 18..=20 {
        log.push((
            s,
            "pn.evt.acct.cluster.x.system.k3s.cluster.activated".into(),
            vec![1, 2, s as u8],
        ));
    }
    log
}

fn verify(
    log: &[(u64, String, Vec<u8>)],
    trusted: Option<VerifyingKey>,
) -> Result<SealSummary, SealError> {
    let mut v = SealVerifier::new(trusted);
    for (s, subj, b) in log {
        v.record(*s, subj, b)?;
    }
    Ok(v.summary())
}

#[test]
fn an_intact_log_verifies_by_its_seals() {
    let k = key(7);
    let s = verify(&sealed_log(&k), Some(k.verifying_key())).expect("intact");
    assert_eq!(
        s,
        SealSummary {
            seals: 2,
            sealed_records: 16,
            sealed_through: 16,
            pinned: true
        }
    );
}

#[test]
fn a_changed_byte_is_named_by_seq() {
    let k = key(7);
    let mut log = sealed_log(&k);
    log[4].2[2] ^= 1; // seq 5
    let e = verify(&log, Some(k.verifying_key())).expect_err("tampered");
    assert!(
        matches!(
            e,
            SealError::Changed {
                seq: 5,
                seal_seq: 11,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.seq(), 5);
    // A changed subject too.
    let mut log = sealed_log(&k);
    log[13].1.push('x'); // seq 14
    let e = verify(&log, Some(k.verifying_key())).expect_err("tampered");
    assert!(
        matches!(
            e,
            SealError::Changed {
                seq: 14,
                seal_seq: 17,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_missing_record_is_named_by_seq() {
    let k = key(7);
    let mut log = sealed_log(&k);
    log.remove(6); // seq 7
    let e = verify(&log, Some(k.verifying_key())).expect_err("missing");
    assert!(
        matches!(
            e,
            SealError::Missing {
                seq: 7,
                seal_seq: 11,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn reordered_records_are_named_by_seq() {
    let k = key(7);
    let mut log = sealed_log(&k);
    // Swap the contents of seq 3 and 4, keeping the sequence numbers in order.
    let (a, b) = (log[2].2.clone(), log[3].2.clone());
    log[2].2 = b;
    log[3].2 = a;
    let e = verify(&log, Some(k.verifying_key())).expect_err("reordered");
    assert!(matches!(e, SealError::Changed { seq: 3, .. }), "{e}");
}

#[test]
fn an_inserted_record_is_named_by_seq() {
    let k = key(7);
    let log = sealed_log(&k);
    // A record inserted after seq 12; every later record renumbered.
    let mut forged: Vec<_> = log.iter().take(12).cloned().collect();
    forged.push((
        13,
        "pn.evt.acct.cluster.evil.system.k3s.cluster.activated".into(),
        b"evil".to_vec(),
    ));
    for (s, subj, b) in log.iter().skip(12) {
        forged.push((s + 1, subj.clone(), b.clone()));
    }
    let e = verify(&forged, Some(k.verifying_key())).expect_err("inserted");
    assert!(matches!(e, SealError::Changed { seq: 13, .. }), "{e}");
}

#[test]
fn a_forged_seal_is_named_by_seq() {
    let k = key(7);
    // Signed by another key.
    let mut log = records(10);
    append_seal(&mut log, &key(8), 1, 10);
    let e = verify(&log, Some(k.verifying_key())).expect_err("forged");
    assert!(matches!(e, SealError::Forged { seal_seq: 11, .. }), "{e}");
    // A changed digest under the right key.
    let mut log = records(10);
    let mut sealed = append_seal(&mut log, &k, 1, 10);
    log.pop();
    sealed.digest = "00".repeat(32);
    let mut v = SealVerifier::new(Some(k.verifying_key()));
    for (s, subj, b) in &log {
        v.record(*s, subj, b).expect("plain records");
    }
    let e = v.seal(11, &sealed).expect_err("forged");
    assert!(matches!(e, SealError::Forged { seal_seq: 11, .. }), "{e}");
}

#[test]
fn a_missing_seal_is_named() {
    let k = key(7);
    let mut log = records(10);
    append_seal(&mut log, &k, 1, 5);
    for s in 12..=14 {
        log.push((
            s,
            "pn.evt.a.b.c.system.k3s.cluster.activated".into(),
            vec![s as u8],
        ));
    }
    // Seals 6-14 where 6-11 would follow: skips nothing, so it verifies;
    // one that starts at 8 leaves 6-7 unsealed.
    append_seal(&mut log, &k, 8, 14);
    let e = verify(&log, Some(k.verifying_key())).expect_err("gap");
    assert!(
        matches!(
            e,
            SealError::Discontinuous {
                from: 8,
                previous_through: 5,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unpinned_takes_the_first_seals_key_and_says_so() {
    let k = key(9);
    let s = verify(&sealed_log(&k), None).expect("intact");
    assert!(!s.pinned);
    assert_eq!(s.seals, 2);
}
