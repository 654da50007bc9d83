//! The replay engine over an export file: verified and trusted folds agree
//! (including a forged record only the log's rejection reveals), `--until`
//! by sequence and by time, and `--diff` event by event.

use super::*;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use powernode_archive::SourceArgs;
use powernode_archive::Writer;
use powernode_events::payloads::fleet::{
    AgentEnrolled, InstanceDrained, InstanceProvisioned, InstanceTerminated,
};
use powernode_events::payloads::log::RecordRejected;
use powernode_events::subject::event_subject;
use powernode_events::{AccountId, Actor};

const INST: &str = "inst-1";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn agent(p: impl Into<EventPayload>, key: &SigningKey) -> Envelope {
    let acct = AccountId::new("acct-t").unwrap();
    let actor = Actor::Agent {
        instance_id: INST.into(),
    };
    let mut e = Envelope::new(acct, actor, p);
    e.sign(key).unwrap();
    e
}

fn service(p: impl Into<EventPayload>) -> Envelope {
    Envelope::new(AccountId::new("acct-t").unwrap(), Actor::service("api"), p)
}

/// 1 provisioned, 2 enrolled, 3 a forged termination (wrong key), 4 its
/// recorded rejection, 5 a genuine drain; stored a second apart.
fn log() -> Vec<Envelope> {
    let key = SigningKey::from_bytes(&[3; 32]);
    let intruder = SigningKey::from_bytes(&[4; 32]);
    vec![
        service(InstanceProvisioned {
            instance_id: INST.into(),
            node_id: "node-1".into(),
            template_id: "tmpl-1".into(),
            cni_plugin: None,
            enrollment_fingerprint: "sha256:00".into(),
        }),
        agent(
            AgentEnrolled {
                instance_id: INST.into(),
                public_key: hex::encode(key.verifying_key().to_bytes()),
            },
            &key,
        ),
        agent(
            InstanceTerminated {
                instance_id: INST.into(),
            },
            &intruder,
        ),
        service(RecordRejected {
            rejected_seq: 3,
            rejected_kind: Some("system.instance.terminated".into()),
            rejected_event_id: None,
            reason: "agent inst-1: recorded reason".into(),
            observed_by: "api".into(),
        }),
        agent(
            InstanceDrained {
                instance_id: INST.into(),
            },
            &key,
        ),
    ]
}

async fn source(dir: &tempfile::TempDir) -> Source {
    let path = dir.path().join("log.pnx");
    let mut w = Writer::new(std::fs::File::create(&path).unwrap()).unwrap();
    for (i, e) in log().iter().enumerate() {
        let seq = i as u64 + 1;
        w.write(&Record {
            seq,
            subject: event_subject(&e.account_id, &e.aggregate, e.kind()).unwrap(),
            stored_at: t0() + Duration::seconds(seq as i64),
            bytes: e.encode().unwrap().into(),
        })
        .unwrap();
    }
    w.finish().unwrap();
    let args = SourceArgs {
        file: Some(path),
        nats: None,
        nats_auth: Default::default(),
        stream: String::new(),
    };
    Source::open(&args, dir.path()).await.unwrap()
}

fn status(state: &FleetState) -> String {
    let acct = AccountId::new("acct-t").unwrap();
    let i = state.instance(&acct, INST).unwrap();
    serde_json::to_value(i.status)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn trusted_fold_refuses_what_the_log_recorded_and_ends_like_the_verified_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(&dir).await;
    let verified = fold(&src, Bound::End, false, false).await.unwrap();
    let trusted = fold(&src, Bound::End, true, false).await.unwrap();
    assert_eq!(status(&verified.state), "drained");
    assert_eq!(verified.stats.records, 5);
    assert_eq!(verified.stats.applied, 4);
    assert_eq!(verified.stats.refused.len(), 1);
    assert_eq!(verified.stats.refused[0].0, 3);
    assert!(verified.stats.refused[0]
        .1
        .contains("signature does not verify"));
    assert_eq!(state_hash(&trusted.state), state_hash(&verified.state));
    assert_eq!(
        trusted.stats.refused,
        vec![(3, "agent inst-1: recorded reason".to_string())]
    );
}

#[tokio::test]
async fn until_stops_at_a_sequence_or_at_the_last_record_stored_by_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(&dir).await;
    let at2 = fold(&src, Bound::Seq(2), false, false).await.unwrap();
    assert_eq!((at2.stats.first_seq, at2.stats.last_seq), (1, 2));
    assert_eq!(status(&at2.state), "enrolled");
    // 10:00:02.5 lies between records 2 and 3.
    let t = t0() + Duration::milliseconds(2500);
    let by_time = fold(&src, Bound::Time(t), false, false).await.unwrap();
    assert_eq!(by_time.stats.last_seq, 2);
    assert_eq!(state_hash(&by_time.state), state_hash(&at2.state));
    // A trusted fold to 3 still refuses 3: its rejection lies past the bound.
    let trusted = fold(&src, Bound::Seq(3), true, false).await.unwrap();
    assert_eq!(status(&trusted.state), "enrolled");
    assert_eq!(trusted.stats.refused.len(), 1);
}

#[tokio::test]
async fn diff_shows_each_event_and_what_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(&dir).await;
    for trust in [false, true] {
        let folded = fold(&src, Bound::Seq(2), trust, false).await.unwrap();
        let mut seen = Vec::new();
        let (state, totals) = diff(&src, folded, Bound::End, |d| seen.push(d.clone()))
            .await
            .unwrap();
        assert_eq!(
            seen.iter().map(|d| d.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(seen[0].refused.is_some() && seen[0].changes.is_empty());
        assert_eq!(seen[0].kind, "system.instance.terminated");
        assert!(seen[1].refused.is_none() && seen[1].changes.is_empty());
        let paths: Vec<String> = seen[2].changes.iter().map(|c| c.render()).collect();
        assert_eq!(
            paths,
            vec!["~ instances.inst-1.status: \"enrolled\" → \"drained\""]
        );
        assert_eq!(seen[2].actor.as_deref(), Some("agent:inst-1"));
        assert_eq!(
            totals,
            DiffTotals {
                records: 3,
                changed: 1,
                refused: 1,
                last_seq: 5
            }
        );
        assert_eq!(status(&state), "drained");
    }
}

#[test]
fn equal_states_hash_alike() {
    assert_eq!(
        state_hash(&FleetState::new()),
        state_hash(&FleetState::default())
    );
    assert_eq!(state_hash(&FleetState::new()).len(), 64);
}
