//! Waiting for an asynchronous effect: `powernode wait KIND/NAME --for
//! status=active|delete`, and the `--wait` of `create`/`delete`. Polls
//! the read actions every 250 ms; on timeout the error names what was
//! seen last.

use super::kinds::{self, column, is_live, Kind};
use crate::output::{line, print_data, Format};
use anyhow::bail;
use powernode_client::Api;
use serde_json::{json, Value};
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a wait reads again.
pub const POLL: Duration = Duration::from_millis(250);

/// How long a wait lasts without `--wait-timeout` or `--timeout`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);

/// Polls `check` until it answers `Ok(Some(v))`; `check` answers
/// `Ok(None)` while not yet, after setting `last` to what it saw.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<Value>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<Value, String>>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await? {
            Ok(v) => return Ok(v),
            Err(seen) => seen,
        };
        if start.elapsed() >= timeout {
            bail!(
                "timed out after {} waiting for {what}; last seen: {last}",
                humanize(timeout)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `1m30s`, `45s`, `250ms`.
pub fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// What `--for` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `FIELD=VALUE` (e.g. `status=active`).
    Field(String, String),
    /// `delete`: gone or ended (decommissioned, terminated, revoked…).
    Delete,
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "delete" {
            return Ok(Condition::Delete);
        }
        let s = s.strip_prefix("jsonpath=").unwrap_or(s);
        match s.split_once('=') {
            Some((f, v)) if !f.is_empty() && !v.is_empty() => Ok(Condition::Field(
                f.trim_start_matches('.').to_string(),
                v.to_string(),
            )),
            _ => Err(format!(
                "--for takes FIELD=VALUE (e.g. status=active) or delete, not {s:?}"
            )),
        }
    }
}

/// Waits until the object `name` of `kind` meets `cond`; answers it (null
/// once deleted and gone).
pub async fn wait_for(
    api: &Api,
    kind: &'static Kind,
    name: &str,
    cond: &Condition,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let what = match cond {
        Condition::Field(f, v) => format!("{}/{name} {f}={v}", kind.name),
        Condition::Delete => format!("{}/{name} to be deleted", kind.name),
    };
    until(&what, timeout, || async {
        let all = kind.list(api, true).await?;
        let found = match kind.pick(&all, name) {
            Ok(o) => Some(o),
            // Ambiguity is an answer, not a wait.
            Err(e) if e.to_string().contains("ambiguous") => return Err(e),
            Err(_) => None,
        };
        Ok(match (cond, found) {
            (Condition::Delete, None) => Ok(Value::Null),
            (Condition::Delete, Some(o)) if !is_live(&o) => Ok(o),
            (Condition::Delete, Some(o)) => Err(format!("status={}", column(&o, "status"))),
            (Condition::Field(..), None) => Err(format!("no {} {name:?}", kind.name)),
            (Condition::Field(f, v), Some(o)) => {
                let got = column(&o, f);
                if got == *v {
                    Ok(o)
                } else {
                    Err(format!("{f}={got}"))
                }
            }
        })
    })
    .await
}

/// `powernode wait KIND/NAME --for COND`.
pub async fn run(
    api: &Api,
    format: Format,
    target: &str,
    cond: &Condition,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (k, name) = target.split_once('/').ok_or_else(|| {
        anyhow::anyhow!("wait takes KIND/NAME (e.g. cluster/prod), not {target:?}")
    })?;
    let kind = kinds::kind(k)?;
    let obj = wait_for(api, kind, name, cond, timeout).await?;
    let shown = if obj.is_null() {
        format!("{}/{name}", kind.name)
    } else {
        kind.ref_of(&obj)
    };
    match format {
        f if f.is_data() => print_data(f, &json!({ "object": shown, "met": true, "data": obj })),
        Format::Name => line(&shown),
        _ => line(&format!(
            "{shown} condition met ({})",
            match cond {
                Condition::Delete => "deleted".to_string(),
                Condition::Field(f, v) => format!("{f}={v}"),
            }
        )),
    }
    Ok(())
}

/// Waits until the cluster bootstrapped by one of `template`'s instances
/// is active; answers the cluster.
pub async fn cluster_of_template(
    api: &Api,
    template: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let instances = kinds::kind("instance")?;
    let clusters = kinds::kind("cluster")?;
    until(
        &format!("the cluster of template {template} to be active"),
        timeout,
        || async {
            let mine: Vec<String> = instances
                .list(api, true)
                .await?
                .iter()
                .filter(|i| i["template_id"] == template && is_live(i))
                .map(|i| instances.id_of(i))
                .collect();
            if mine.is_empty() {
                return Ok(Err(format!("template {template} has no instance")));
            }
            let cluster = clusters.list(api, false).await?.into_iter().find(|c| {
                mine.iter()
                    .any(|i| c["bootstrap_instance_id"] == i.as_str())
            });
            Ok(match cluster {
                Some(c) if c["status"] == "active" => Ok(c),
                Some(c) => Err(format!(
                    "cluster {} status={}",
                    clusters.id_of(&c),
                    column(&c, "status")
                )),
                None => Err("no cluster bootstrapped yet".into()),
            })
        },
    )
    .await
}

/// Waits until every live instance of `template` is a ready node of
/// `cluster`; answers the node rows.
pub async fn nodes_ready(
    api: &Api,
    template: &str,
    cluster: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let instances = kinds::kind("instance")?;
    until(
        &format!("the instances of template {template} to be ready nodes of cluster {cluster}"),
        timeout,
        || async {
            let mine: Vec<String> = instances
                .list(api, true)
                .await?
                .iter()
                .filter(|i| i["template_id"] == template && is_live(i))
                .map(|i| instances.id_of(i))
                .collect();
            let data = api
                .call(
                    powernode_actions::ActionName::ListNodes.as_str(),
                    &json!({ "cluster_id": cluster }),
                )
                .await?;
            let rows: Vec<Value> = data["nodes"].as_array().cloned().unwrap_or_default();
            let waiting: Vec<String> = mine
                .iter()
                .filter(|i| {
                    !rows
                        .iter()
                        .any(|r| r["instance_id"] == i.as_str() && r["status"] == "ready")
                })
                .cloned()
                .collect();
            Ok(if mine.is_empty() {
                Err(format!("template {template} has no instance"))
            } else if waiting.is_empty() {
                Ok(Value::Array(rows))
            } else {
                Err(format!("not ready yet: {}", waiting.join(", ")))
            })
        },
    )
    .await
}

/// Waits until virtual IP `vip_id` has moved past `generation` and its
/// new holder's agent reports holding it at the new generation (`approve
/// --wait`); answers the VIP.
pub async fn vip_applied(
    api: &Api,
    vip_id: &str,
    generation: u64,
    timeout: Duration,
) -> anyhow::Result<Value> {
    until(
        &format!("the new holder of VIP {vip_id} to apply it"),
        timeout,
        || async {
            let data = api
                .call(
                    powernode_actions::ActionName::GetVirtualIp.as_str(),
                    &json!({ "id": vip_id }),
                )
                .await?;
            let v = data["virtual_ip"].clone();
            let now = v["generation"].as_u64().unwrap_or_default();
            let holder = v["holder_peer_id"].as_str().unwrap_or_default();
            let applied = v["applied_generations"][holder].as_u64();
            Ok(if now > generation && applied == Some(now) {
                Ok(v)
            } else {
                Err(format!(
                    "generation {now}, holder {holder} applied {}",
                    applied.map_or("nothing yet".to_string(), |g| format!("generation {g}"))
                ))
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse() {
        assert_eq!("delete".parse(), Ok(Condition::Delete));
        assert_eq!(
            "status=active".parse(),
            Ok(Condition::Field("status".into(), "active".into()))
        );
        assert!("status".parse::<Condition>().is_err());
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::from_millis(300)), "300ms");
    }
}
