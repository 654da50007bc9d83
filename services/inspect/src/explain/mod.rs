//! `powernode events explain <id>`: the history of one object as a causal
//! chain.
//!
//! One pass over the source folds every record exactly as a live consumer
//! does (admission, then [`FleetState::apply`]), so each state change is the
//! real one. The events that concern the object — its aggregate is the id,
//! or the payload names it, or names an id tied to it (a VIP's approval
//! requests, an instance's peers) — are kept with who caused them, their
//! cause (any event: every event's sequence, kind and actor are indexed by
//! id), what they caused, and the change they made to the object's JSON
//! view ([`object::view`]). The [`why`] walks back from the event that set
//! the object's key state.

mod model;
pub mod object;
pub mod why;

use super::jsondiff::{self, Change};
use crate::Progress;
use anyhow::bail;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
pub use model::{AsOf, Explanation, Link, ObjectInfo, Step};
use object::ObjectKind;
use powernode_archive::concerns::names;
use powernode_archive::{Bound, Source};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::{Filter, Record};
use powernode_projections::{FleetState, Projection};
use powernode_runtime::admission::{self, KeyHints, Refusal, Verdict};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;
pub use why::{Why, WhyStep};

/// Recent events kept whole, so a cause that does not itself concern the
/// object can still be described in the "why".
const RECENT: usize = 4096;
/// Records per chunk (decoded and signature-checked together).
const CHUNK: usize = 512;

/// Sequence, kind and actor of every event read, by id.
#[derive(Debug, Clone, Copy)]
struct Brief {
    seq: u64,
    kind: &'static str,
    actor: u32,
}

/// Events by id, for the "why".
struct Lookup<'a> {
    pass: &'a Pass,
}

impl Lookup<'_> {
    /// A kept event (listed, or kept as the cause of a listed one).
    fn event(&self, id: Uuid) -> Option<(u64, &Envelope)> {
        let p = self.pass;
        if let Some(&i) = p.step_of.get(&id) {
            return Some((p.steps[i].seq, &p.steps[i].event));
        }
        p.ancestors.get(&id).map(|(seq, e)| (*seq, e))
    }

    /// What is known of any event.
    fn link(&self, id: Uuid) -> Link {
        self.pass.link(id)
    }

    /// The listed request of approval `approval_id`.
    fn approval_request(&self, approval_id: &str) -> Option<(u64, &Envelope)> {
        self.pass.steps.iter().find_map(|s| match &s.event.payload {
            EventPayload::ApprovalRequested(p) if p.approval_id == approval_id => {
                Some((s.seq, &s.event))
            }
            _ => None,
        })
    }
}

/// The state of one pass.
struct Pass {
    /// The object's id, then ids tied to it.
    ids: Vec<String>,
    state: FleetState,
    located: Option<(AccountId, ObjectKind)>,
    /// The object's view after the last listed event.
    last_view: Value,
    steps: Vec<Step>,
    step_of: HashMap<Uuid, usize>,
    index: HashMap<Uuid, Brief>,
    actors: Vec<String>,
    actor_ids: HashMap<Actor, u32>,
    recent: VecDeque<(u64, Uuid, Bytes)>,
    ancestors: HashMap<Uuid, (u64, Envelope)>,
    records: u64,
    refused: u64,
    last: Option<(u64, DateTime<Utc>)>,
}

impl Pass {
    fn new(id: &str) -> Self {
        Self {
            ids: vec![id.to_string()],
            state: FleetState::new(),
            located: None,
            last_view: Value::Null,
            steps: Vec::new(),
            step_of: HashMap::new(),
            index: HashMap::new(),
            actors: Vec::new(),
            actor_ids: HashMap::new(),
            recent: VecDeque::with_capacity(RECENT),
            ancestors: HashMap::new(),
            records: 0,
            refused: 0,
            last: None,
        }
    }

    fn link(&self, id: Uuid) -> Link {
        let brief = self.index.get(&id);
        Link {
            id,
            seq: brief.map(|b| b.seq),
            kind: brief.map(|b| b.kind.to_string()),
            actor: brief.map(|b| self.actors[b.actor as usize].clone()),
        }
    }

    /// The object's view now (`null` before it exists).
    fn view(&self) -> Value {
        match &self.located {
            Some((acct, kind)) => object::view(&self.state, acct, *kind, &self.ids[0]),
            None => Value::Null,
        }
    }

    /// Which of the ids `event` is about (the object's own first), if any.
    /// `bytes` (the record) must contain the id for the payload to name it.
    fn concerned(&self, bytes: &[u8], event: &Envelope) -> Option<usize> {
        let mut payload = None;
        for (i, id) in self.ids.iter().enumerate() {
            if !contains(bytes, id.as_bytes()) {
                continue;
            }
            if event.aggregate.id == *id {
                return Some(i);
            }
            let v = payload
                .get_or_insert_with(|| serde_json::to_value(&event.payload).unwrap_or(Value::Null));
            if names(v, id) {
                return Some(i);
            }
        }
        None
    }

    fn mentioned(&self, bytes: &[u8]) -> bool {
        self.ids.iter().any(|id| contains(bytes, id.as_bytes()))
    }

    /// Admits and applies one record, keeping what concerns the object.
    fn record(
        &mut self,
        rec: &Record,
        decoded: Result<Envelope, Refusal>,
        verdict: Option<Verdict>,
    ) {
        self.records += 1;
        self.last = Some((rec.seq, rec.stored_at));
        let kept = if self.mentioned(&rec.bytes) {
            decoded.as_ref().ok().cloned()
        } else {
            None
        };
        let event = match admission::admit_decoded(rec, decoded, verdict, &self.state) {
            Ok(event) => event,
            Err(refusal) => {
                self.refused += 1;
                if let Some(event) = kept {
                    if let Some(i) = self.concerned(&rec.bytes, &event) {
                        let view = self.last_view.clone();
                        self.push_step(rec.seq, event, i, &view, &view, Some(refusal.reason));
                    }
                }
                return;
            }
        };
        self.index_event(rec.seq, &event);
        if let Some(cause) = event.causation_id {
            if let Some(&i) = self.step_of.get(&cause) {
                let link = self.link(event.id);
                self.steps[i].caused.push(link);
            }
        }
        let which = if kept.is_some() {
            self.concerned(&rec.bytes, &event)
        } else {
            None
        };
        let id = event.id;
        match which {
            None => self.state.apply(rec.seq, &event),
            Some(i) => {
                let before = self.view();
                self.state.apply(rec.seq, &event);
                if self.located.is_none() {
                    self.located = object::locate(&self.state, &self.ids[0]);
                }
                let after = self.view();
                self.tie(&event);
                self.keep_causes(event.causation_id);
                self.push_step(rec.seq, event, i, &before, &after, None);
            }
        }
        self.remember(rec, id);
    }

    /// Keeps a record among the recent ones; its bytes are shared with the
    /// record, so this costs no copy.
    fn remember(&mut self, rec: &Record, id: Uuid) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((rec.seq, id, rec.bytes.clone()));
    }

    fn index_event(&mut self, seq: u64, event: &Envelope) {
        let actor = match self.actor_ids.get(&event.actor) {
            Some(&a) => a,
            None => {
                let a = self.actors.len() as u32;
                self.actor_ids.insert(event.actor.clone(), a);
                self.actors.push(event.actor.to_string());
                a
            }
        };
        self.index.insert(
            event.id,
            Brief {
                seq,
                kind: event.kind(),
                actor,
            },
        );
    }

    /// Adds the ids an event ties to the object.
    fn tie(&mut self, event: &Envelope) {
        let Some((_, kind)) = &self.located else {
            return;
        };
        let id = &self.ids[0];
        let tied = match (kind, &event.payload) {
            (ObjectKind::VirtualIp, EventPayload::FailoverProposed(p))
                if p.virtual_ip_id == *id =>
            {
                Some(p.approval_id.clone())
            }
            (ObjectKind::VirtualIp, EventPayload::VirtualIpPromoted(p))
                if p.virtual_ip_id == *id =>
            {
                p.approval_id.clone()
            }
            (ObjectKind::Instance, EventPayload::PeerAttached(p)) if p.instance_id == *id => {
                Some(p.peer_id.clone())
            }
            _ => None,
        };
        if let Some(t) = tied {
            if !self.ids.contains(&t) {
                self.ids.push(t);
            }
        }
    }

    /// Keeps the recent causes of a listed event whole (for the "why").
    fn keep_causes(&mut self, mut cause: Option<Uuid>) {
        for _ in 0..16 {
            let Some(c) = cause else { return };
            if self.step_of.contains_key(&c) || self.ancestors.contains_key(&c) {
                return;
            }
            let Some((seq, _, bytes)) = self.recent.iter().rev().find(|(_, id, _)| *id == c) else {
                return;
            };
            // It was admitted, so it decodes.
            let Ok(e) = Envelope::decode(bytes) else {
                return;
            };
            cause = e.causation_id;
            self.ancestors.insert(c, (*seq, e));
        }
    }

    fn push_step(
        &mut self,
        seq: u64,
        event: Envelope,
        which: usize,
        before: &Value,
        after: &Value,
        refused: Option<String>,
    ) {
        let created = before.is_null() && !after.is_null();
        let changes = if created {
            jsondiff::diff(&json!({}), after)
        } else {
            jsondiff::diff(before, after)
        };
        let drift = if before.is_null() || *before == self.last_view {
            Vec::new()
        } else {
            jsondiff::diff(&self.last_view, before)
        };
        if refused.is_none() {
            self.last_view = after.clone();
        }
        let mut text = why::describe(&event, &self.state);
        if let Some(r) = &refused {
            text = format!("refused by admission: {r} ({text})");
        }
        let step = Step {
            seq,
            id: event.id,
            occurred_at: event.occurred_at,
            kind: event.kind().to_string(),
            actor: event.actor.to_string(),
            account_id: event.account_id.clone(),
            aggregate: event.aggregate.to_string(),
            via: (which > 0).then(|| self.ids[which].clone()),
            text,
            cause: event.causation_id.map(|c| self.link(c)),
            caused: Vec::new(),
            created,
            changes,
            changes_by_other_events: drift,
            refused,
            payload: serde_json::to_value(&event.payload).unwrap_or(Value::Null),
            event,
        };
        self.step_of.insert(step.id, self.steps.len());
        self.steps.push(step);
    }

    /// The explanation, or why there is none.
    fn finish(mut self, id: &str, source: String, until: Bound) -> anyhow::Result<Explanation> {
        let upto = match until {
            Bound::End => String::new(),
            Bound::Seq(s) => format!(" up to seq {s}"),
            Bound::Time(t) => format!(" up to {}", t.to_rfc3339()),
        };
        let Some((account, kind)) = self.located.clone() else {
            match self.steps.first() {
                None => bail!("no event names {id}{upto} ({} records read)", self.records),
                Some(s) => bail!(
                    "{id} is not a cluster, virtual IP, instance, approval, node, network, peer or \
                     template{upto}; {} event(s) name it, the first #{} {}",
                    self.steps.len(),
                    s.seq,
                    s.kind
                ),
            }
        };
        let state = self.view();
        let trailing = if state == self.last_view {
            Vec::new()
        } else {
            jsondiff::diff(&self.last_view, &state)
        };
        for step in &mut self.steps {
            // Descriptions name peers with their instances as of the end.
            if step.refused.is_none() {
                step.text = why::describe(&step.event, &self.state);
            }
        }
        let why = self.why(kind, id, &state, &trailing);
        Ok(Explanation {
            object: ObjectInfo {
                kind,
                id: id.to_string(),
                account_id: account,
                summary: object::summary(kind, &state),
                state,
            },
            source,
            as_of: AsOf {
                seq: self.last.map_or(0, |l| l.0),
                stored_at: self.last.map(|l| l.1),
            },
            records: self.records,
            refused: self.refused,
            events: std::mem::take(&mut self.steps),
            changes_by_other_events: trailing,
            why,
        })
    }

    /// Walks back from the last listed event that set the key state.
    fn why(&self, kind: ObjectKind, id: &str, state: &Value, trailing: &[Change]) -> Why {
        let answer = why::answer(kind, id, state);
        let touches = |changes: &[Change]| changes.iter().any(|c| kind.is_key_path(&c.path));
        if touches(trailing) {
            return Why {
                answer: format!(
                    "{answer} (last changed by an event that does not name it, after #{})",
                    self.steps.last().map_or(0, |s| s.seq)
                ),
                steps: Vec::new(),
            };
        }
        let mut key = None;
        let mut drift_after = None;
        for (i, s) in self.steps.iter().enumerate() {
            if s.refused.is_some() {
                continue;
            }
            if touches(&s.changes_by_other_events) {
                key = None;
                drift_after = Some(i);
            }
            if s.created || touches(&s.changes) {
                key = Some(i);
                drift_after = None;
            }
        }
        match (key, drift_after) {
            (Some(i), _) => Why {
                answer,
                steps: why::walk(
                    &Lookup { pass: self },
                    &self.state,
                    (self.steps[i].seq, &self.steps[i].event),
                ),
            },
            (None, Some(i)) => Why {
                answer: format!(
                    "{answer} (last changed by an event that does not name it, before #{})",
                    self.steps[i].seq
                ),
                steps: Vec::new(),
            },
            (None, None) => Why {
                answer,
                steps: Vec::new(),
            },
        }
    }
}

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    match needle.first() {
        None => true,
        Some(&first) => hay
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == first)
            .any(|(i, _)| hay[i..].starts_with(needle)),
    }
}

/// Explains `id`: one pass over `source` through `until`.
pub async fn explain(source: &Source, id: &str, until: Bound) -> anyhow::Result<Explanation> {
    let total = match source {
        Source::Log(log) => {
            let last = log.last_seq().await?;
            Some(match until {
                Bound::Seq(s) => s.min(last),
                Bound::Time(_) | Bound::End => last,
            })
        }
        Source::File(_) => None,
    };
    let mut progress = Progress::new(total, "explaining");
    let mut stream = source
        .records(1, until, Filter::all())
        .await?
        .ready_chunks(CHUNK);
    let mut pass = Pass::new(id);
    let mut hints = KeyHints::default();
    while let Some(chunk) = stream.next().await {
        let records = chunk.into_iter().collect::<anyhow::Result<Vec<Record>>>()?;
        let decoded: Vec<_> = records.iter().map(admission::decode).collect();
        let verdicts =
            admission::preverify(&records, &decoded, &mut hints, |i| pass.state.agent_key(i));
        for ((rec, dec), verdict) in records.iter().zip(decoded).zip(verdicts) {
            pass.record(rec, dec, verdict);
        }
        if let Some(last) = records.last() {
            progress.set(last.seq);
        }
    }
    progress.finish();
    pass.finish(id, source.describe(), until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_byte_substrings() {
        assert!(contains(b"xxvip-1yy", b"vip-1"));
        assert!(!contains(b"xxvip-yy", b"vip-1"));
        assert!(contains(b"vip-1", b"vip-1"));
        assert!(!contains(b"vip", b"vip-1"));
    }
}
