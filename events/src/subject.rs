//! NATS subject naming: `pn.evt.<account>.<aggregate type>.<aggregate id>.<kind tokens…>`.
//!
//! Account first so a tenant's events are one wildcard; aggregate next so an
//! optimistic-concurrency guard can cover every event of one aggregate
//! (`pn.evt.<account>.<type>.<id>.>`); the kind last so a kind prefix is a
//! server-side filter (`pn.evt.<account>.*.*.system.k3s.>`).

use crate::ids::{is_token_safe, AccountId, AggregateRef};

/// Root of every event subject.
pub const EVENT_SUBJECT_ROOT: &str = "pn.evt";
/// Subjects the event stream captures.
pub const EVENT_SUBJECT_WILDCARD: &str = "pn.evt.>";

/// A subject could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aggregate id {0:?} is not subject-safe ([A-Za-z0-9_-], 1-64 chars)")]
pub struct SubjectError(pub String);

/// `pn.evt.<account>.<aggregate type>.<aggregate id>`: what every subject of
/// one aggregate starts with.
fn aggregate_prefix(account: &AccountId, aggregate: &AggregateRef) -> Result<String, SubjectError> {
    if !is_token_safe(&aggregate.id) {
        return Err(SubjectError(aggregate.id.clone()));
    }
    Ok(format!(
        "{EVENT_SUBJECT_ROOT}.{account}.{}.{}",
        aggregate.kind.as_str(),
        aggregate.id
    ))
}

/// The subject an event is published on.
pub fn event_subject(
    account: &AccountId,
    aggregate: &AggregateRef,
    kind: &str,
) -> Result<String, SubjectError> {
    Ok(format!("{}.{kind}", aggregate_prefix(account, aggregate)?))
}

/// The subject filter covering every event of one aggregate.
pub fn aggregate_filter(
    account: &AccountId,
    aggregate: &AggregateRef,
) -> Result<String, SubjectError> {
    Ok(format!("{}.>", aggregate_prefix(account, aggregate)?))
}

/// The narrowest server-side filter for an account and a kind *string*
/// prefix. The prefix may end inside a token (`system.k3s.handshake.join`),
/// so the filter stops at the last whole token and callers still check
/// `kind.starts_with(prefix)`.
pub fn filter_subject(account: Option<&AccountId>, kind_prefix: Option<&str>) -> String {
    let acct = account.map_or("*", AccountId::as_str);
    let prefix = kind_prefix.unwrap_or("");
    let mut whole: Vec<&str> = prefix.split('.').collect();
    // The last piece is whole only if the prefix ended with '.', leaving "" last.
    whole.pop();
    let whole: Vec<&str> = whole.into_iter().filter(|t| is_token_safe(t)).collect();
    if whole.is_empty() {
        if account.is_some() {
            format!("{EVENT_SUBJECT_ROOT}.{acct}.>")
        } else {
            EVENT_SUBJECT_WILDCARD.to_string()
        }
    } else {
        format!("{EVENT_SUBJECT_ROOT}.{acct}.*.*.{}.>", whole.join("."))
    }
}

/// The parts of an event subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectParts<'a> {
    /// Account token.
    pub account: &'a str,
    /// Aggregate type token.
    pub aggregate_type: &'a str,
    /// Aggregate id token.
    pub aggregate_id: &'a str,
    /// The kind (remaining tokens).
    pub kind: &'a str,
}

/// Splits an event subject; `None` if it is not one.
pub fn parse_subject(subject: &str) -> Option<SubjectParts<'_>> {
    let rest = subject
        .strip_prefix(EVENT_SUBJECT_ROOT)?
        .strip_prefix('.')?;
    let mut it = rest.splitn(4, '.');
    let account = it.next()?;
    let aggregate_type = it.next()?;
    let aggregate_id = it.next()?;
    let kind = it.next()?;
    Some(SubjectParts {
        account,
        aggregate_type,
        aggregate_id,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AggregateType;

    #[test]
    fn subjects_and_filters() {
        let a = AccountId::new("acct1").unwrap();
        let agg = AggregateRef::new(AggregateType::Cluster, "cluster-1");
        let s = event_subject(&a, &agg, "system.k3s.cluster.bootstrapped").unwrap();
        assert_eq!(
            s,
            "pn.evt.acct1.cluster.cluster-1.system.k3s.cluster.bootstrapped"
        );
        let p = parse_subject(&s).unwrap();
        assert_eq!(p.kind, "system.k3s.cluster.bootstrapped");
        assert_eq!(p.aggregate_id, "cluster-1");
        assert_eq!(
            aggregate_filter(&a, &agg).unwrap(),
            "pn.evt.acct1.cluster.cluster-1.>"
        );
        assert_eq!(
            filter_subject(Some(&a), Some("system.k3s.handshake.join")),
            "pn.evt.acct1.*.*.system.k3s.handshake.>"
        );
        assert_eq!(
            filter_subject(None, Some("system.k3s.")),
            "pn.evt.*.*.*.system.k3s.>"
        );
        assert_eq!(filter_subject(None, Some("sys")), "pn.evt.>");
        assert_eq!(filter_subject(Some(&a), None), "pn.evt.acct1.>");
        assert!(event_subject(&a, &AggregateRef::new(AggregateType::Cluster, "a.b"), "x").is_err());
    }
}
