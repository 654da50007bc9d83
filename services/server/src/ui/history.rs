//! What both dashboard backends answer the same way once they know the
//! operator: actions at the head or at a past sequence (time travel, over
//! a cached fold of the log), the log's extent, one event, "what changed"
//! between two sequences, explain, and the event feed — each scoped to the
//! operator's account.

use super::{answer_json, refusal};
use crate::api::actions::{dispatch_as, read_only_gate};
use crate::api::auth::Operator;
use crate::api::sse::query::Scope;
use crate::api::ApiState;
use axum::http::HeaderMap;
use futures::stream::{self, BoxStream};
use futures::StreamExt;
use powernode_actions::ActionName;
use powernode_archive::{Bound, Source};
use powernode_events::AccountId;
use powernode_inspect::replay::{self, Folded};
use powernode_log::{Filter, StartAt};
use powernode_projections::FleetState;
use powernode_runtime::Shared;
use powernode_ui::{At, EventQuery, Head, Refusal};
use serde_json::{json, Value};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Folds kept for time travel (most recently used last).
const CACHED_FOLDS: usize = 4;
/// Records read per batch when a feed reads the log to its end.
const BATCH: usize = 500;

/// One cached fold: the fleet through `seq`, and an API state over it.
struct Fold {
    seq: u64,
    folded: Folded,
    api: ApiState,
}

/// The log behind a dashboard, read through the API state's log.
pub struct History {
    api: ApiState,
    /// True over a running node (the feed stays open); false over an export
    /// (the feed ends at the last record).
    live: bool,
    folds: tokio::sync::Mutex<VecDeque<Fold>>,
}

/// 404 `not_found` with a message.
fn not_found(message: String) -> Refusal {
    Refusal::new(404, "not_found", message)
}

/// 422 `invalid_arguments` with a message.
fn invalid(message: String) -> Refusal {
    Refusal::new(422, "invalid_arguments", message)
}

/// A failure reading or replaying the log.
fn unavailable(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(503, "unavailable", e.to_string())
}

impl History {
    /// Over `api` (its log and, at the head, its projection).
    pub fn new(api: ApiState, live: bool) -> Self {
        Self {
            api,
            live,
            folds: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// The API state at the head.
    pub fn api(&self) -> &ApiState {
        &self.api
    }

    /// The log's last sequence.
    pub async fn last_seq(&self) -> Result<u64, Refusal> {
        self.api.log.last_seq().await.map_err(unavailable)
    }

    /// The log's first and last sequence (`1, 0` for an empty log).
    pub async fn head(&self) -> Result<Head, Refusal> {
        let last_seq = self.last_seq().await?;
        let first_seq = match self.api.log.read(1, 1, &Filter::all()).await {
            Ok(records) => records.first().map_or(1, |r| r.seq),
            Err(e) => return Err(unavailable(e)),
        };
        Ok(Head {
            first_seq,
            last_seq,
        })
    }

    /// Runs `action` as `operator` at `at`.
    pub async fn call(
        &self,
        operator: Operator,
        at: At,
        action: ActionName,
        args: Value,
    ) -> Result<Value, Refusal> {
        let body = serde_json::to_vec(&args).expect("a JSON value serializes");
        let api = match at {
            At::Head => self.api.clone(),
            At::Seq(seq) => {
                read_only_gate(&as_of_reason(seq), action, &args).map_err(refusal)?;
                self.at(seq).await?
            }
        };
        dispatch_as(&api, operator, &HeaderMap::new(), action.as_str(), &body)
            .await
            .map_err(refusal)
            .and_then(answer_json)
    }

    /// Refuses a sequence beyond the head.
    async fn check_seq(&self, seq: u64) -> Result<u64, Refusal> {
        let last = self.last_seq().await?;
        if seq > last {
            return Err(invalid(format!("seq {seq} is beyond the head {last}")));
        }
        Ok(last)
    }

    /// The fleet through `seq`, folded once and cached.
    async fn fold(&self, seq: u64) -> Result<Folded, Refusal> {
        Ok(self.cached(seq).await?.0)
    }

    /// An API state over the fleet through `seq` (read-only).
    async fn at(&self, seq: u64) -> Result<ApiState, Refusal> {
        Ok(self.cached(seq).await?.1)
    }

    /// The cached fold through `seq` (folding it, under the cache's lock so
    /// that two requests for the same point fold once).
    async fn cached(&self, seq: u64) -> Result<(Folded, ApiState), Refusal> {
        self.check_seq(seq).await?;
        let mut folds = self.folds.lock().await;
        if let Some(i) = folds.iter().position(|f| f.seq == seq) {
            let f = folds.remove(i).expect("the position is in range");
            let out = (f.folded.clone(), f.api.clone());
            folds.push_back(f);
            return Ok(out);
        }
        let source = Source::Log(self.api.log.clone());
        let folded = replay::fold(&source, Bound::Seq(seq), true, false)
            .await
            .map_err(|e| unavailable(format!("{e:#}")))?;
        let fleet: Shared<FleetState> = Shared::folded(folded.state.clone(), seq);
        let reason: Arc<str> = match &self.api.read_only {
            Some(r) => format!("{r}, as of seq {seq}").into(),
            None => as_of_reason(seq).into(),
        };
        let api = ApiState {
            fleet,
            read_only: Some(reason),
            events_index: Default::default(),
            ..self.api.clone()
        };
        if folds.len() >= CACHED_FOLDS {
            folds.pop_front();
        }
        folds.push_back(Fold {
            seq,
            folded: folded.clone(),
            api: api.clone(),
        });
        Ok((folded, api))
    }

    /// The record at `seq` as `recent_events` shows it, when it is of
    /// `account`.
    pub async fn event(&self, account: &AccountId, seq: u64) -> Result<Value, Refusal> {
        let missing = || not_found(format!("no event {seq} in this account"));
        if seq == 0 || seq > self.last_seq().await? {
            return Err(missing());
        }
        let scope = Scope::new(account.clone(), None, None, None);
        let records = self
            .api
            .log
            .read(seq, 1, &scope.filter)
            .await
            .map_err(unavailable)?;
        records
            .first()
            .filter(|r| r.seq == seq)
            .and_then(|r| scope.event_json(r))
            .ok_or_else(missing)
    }

    /// What each event of `account` after `from` through `to` changed:
    /// `{"from", "to", "events": [<replay --diff -o json lines>], "totals"}`.
    pub async fn diff(&self, account: &AccountId, from: u64, to: u64) -> Result<Value, Refusal> {
        if from > to {
            return Err(invalid(format!(
                "from {from} is after to {to}: what changed runs forwards"
            )));
        }
        self.check_seq(to).await?;
        let folded = self.fold(from).await?;
        let source = Source::Log(self.api.log.clone());
        let mut events = Vec::new();
        let (mut changed, mut refused) = (0u64, 0u64);
        let mine = account.to_string();
        replay::diff(&source, folded, Bound::Seq(to), |d| {
            if d.account == mine {
                changed += u64::from(!d.changes.is_empty());
                refused += u64::from(d.refused.is_some());
                events.push(serde_json::to_value(d).unwrap_or(Value::Null));
            }
        })
        .await
        .map_err(|e| unavailable(format!("{e:#}")))?;
        let records = events.len();
        Ok(json!({
            "from": from,
            "to": to,
            "events": events,
            "totals": {"records": records, "changed": changed, "refused": refused},
        }))
    }

    /// `events explain <id> -o json` of an object of `account`, without
    /// the steps and links of other accounts' events.
    pub async fn explain(&self, account: &AccountId, id: &str) -> Result<Value, Refusal> {
        let id = id.trim();
        let missing = || not_found(format!("no object {id} in this account"));
        if id.is_empty() {
            return Err(invalid("explain needs an id".to_string()));
        }
        let source = Source::Log(self.api.log.clone());
        let mut e = powernode_inspect::explain::explain(&source, id, Bound::End)
            .await
            .map_err(|_| missing())?;
        if &e.object.account_id != account {
            return Err(missing());
        }
        e.source = self.api.log.describe();
        e.events.retain(|s| &s.account_id == account);
        // Links to events of other accounts go (their kind and actor would
        // tell of them); an event is the account's when a read filtered to
        // the account finds it.
        let mut linked: BTreeSet<u64> = BTreeSet::new();
        for s in &e.events {
            linked.extend(s.cause.iter().chain(&s.caused).filter_map(|l| l.seq));
        }
        linked.extend(e.why.steps.iter().filter_map(|s| s.seq));
        let known: BTreeSet<u64> = e.events.iter().map(|s| s.seq).collect();
        let mut theirs = BTreeSet::new();
        let filter = Filter {
            account: Some(account.clone()),
            kind_prefix: None,
        };
        for seq in linked.difference(&known) {
            let found = self
                .api
                .log
                .read(*seq, 1, &filter)
                .await
                .map_err(unavailable)?;
            if found.first().map(|r| r.seq) != Some(*seq) {
                theirs.insert(*seq);
            }
        }
        let ours = |seq: Option<u64>| seq.is_none_or(|s| !theirs.contains(&s));
        for s in &mut e.events {
            if s.cause.as_ref().is_some_and(|l| !ours(l.seq)) {
                s.cause = None;
            }
            s.caused.retain(|l| ours(l.seq));
        }
        e.why.steps.retain(|s| ours(s.seq));
        serde_json::to_value(&e).map_err(unavailable)
    }

    /// The account's events matching `query`, after `query.after` (else
    /// from now), as `recent_events` items; over a running node the feed
    /// stays open until the node stops, over an export it ends at the last
    /// record.
    pub async fn events(
        &self,
        account: &AccountId,
        query: EventQuery,
    ) -> Result<BoxStream<'static, Value>, Refusal> {
        let scope = Scope::new(
            account.clone(),
            query.kind_prefix,
            query.cluster,
            query.instance,
        );
        let last = self.last_seq().await?;
        let start = query.after.map_or(last + 1, |a| a.saturating_add(1));
        if !self.live {
            return Ok(self.read_to_end(scope, start, last));
        }
        let records = self
            .api
            .log
            .subscribe(StartAt::Seq(start), scope.filter.clone())
            .await
            .map_err(unavailable)?;
        let items = records
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(move |r| std::future::ready(r.ok().and_then(|r| scope.event_json(&r))))
            .take_until(self.api.shutdown.clone().cancelled_owned());
        Ok(items.boxed())
    }

    /// The records from `start` through `last` in scope, read in batches.
    fn read_to_end(&self, scope: Scope, start: u64, last: u64) -> BoxStream<'static, Value> {
        let log = self.api.log.clone();
        let batches = stream::unfold(Some(start), move |from| {
            let (log, scope) = (log.clone(), scope.clone());
            async move {
                let from = from.filter(|f| *f <= last)?;
                let records = log.read(from, BATCH, &scope.filter).await.ok()?;
                let next = records.last().map(|r| r.seq + 1);
                let items: Vec<Value> = records
                    .iter()
                    .filter(|r| r.seq <= last)
                    .filter_map(|r| scope.event_json(r))
                    .collect();
                Some((stream::iter(items), next))
            }
        });
        batches.flatten().boxed()
    }
}

/// Why a past sequence is read-only.
fn as_of_reason(seq: u64) -> String {
    format!("time travel shows the fleet as of seq {seq}, read-only")
}
