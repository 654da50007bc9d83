//! The object kinds of `get`/`describe`/`delete`/`wait`: how each is
//! listed (which read action, under which key), named, and shown as a
//! table; and how a name given on the command line becomes one object.

use crate::output::{cell, Table};
use anyhow::bail;
use powernode_actions::ActionName;
use powernode_client::Api;
use serde_json::{json, Value};

/// One kind of object.
#[derive(Debug)]
pub struct Kind {
    /// Singular name, e.g. `cluster` (also what `-o name` prints).
    pub name: &'static str,
    /// Plural name, e.g. `clusters`.
    pub plural: &'static str,
    /// Other names accepted on the command line.
    pub aliases: &'static [&'static str],
    /// The read action that lists them.
    pub list: ActionName,
    /// Where the answer keeps the list.
    pub key: &'static str,
    /// The id field.
    pub id_field: &'static str,
    /// The name field (the id again when objects have no name).
    pub name_field: &'static str,
    /// Table columns: header and field (`a.b` reaches into objects).
    pub columns: &'static [(&'static str, &'static str)],
    /// Extra columns of `-o wide`.
    pub wide: &'static [(&'static str, &'static str)],
}

/// Every kind.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "cluster",
        plural: "clusters",
        aliases: &["cl"],
        list: ActionName::ListClusters,
        key: "clusters",
        id_field: "id",
        name_field: "name",
        columns: &[
            ("NAME", "name"),
            ("ID", "id"),
            ("STATUS", "status"),
            ("NODES", "node_count"),
            ("ENDPOINT", "api_endpoint"),
            ("VERSION", "version"),
        ],
        wide: &[
            ("NETWORK", "network_id"),
            ("CNI", "cni_plugin"),
            ("BOOTSTRAP", "bootstrap_instance_id"),
        ],
    },
    Kind {
        name: "template",
        plural: "templates",
        aliases: &["tmpl"],
        list: ActionName::ListTemplates,
        key: "templates",
        id_field: "id",
        name_field: "name",
        columns: &[("NAME", "name"), ("ID", "id"), ("MODULES", "@modules")],
        wide: &[("CREATED-SEQ", "created_seq")],
    },
    Kind {
        name: "node",
        plural: "nodes",
        aliases: &["no"],
        list: ActionName::ListSystemNodes,
        key: "nodes",
        id_field: "id",
        name_field: "hostname",
        columns: &[
            ("NAME", "hostname"),
            ("ID", "id"),
            ("TEMPLATE", "template_id"),
            ("MEMORY-MB", "memory_mb"),
        ],
        wide: &[("CREATED-SEQ", "created_seq")],
    },
    Kind {
        name: "instance",
        plural: "instances",
        aliases: &["inst"],
        list: ActionName::ListInstances,
        key: "instances",
        id_field: "id",
        name_field: "hostname",
        columns: &[
            ("NAME", "hostname"),
            ("ID", "id"),
            ("STATUS", "status"),
            ("PHASE", "k3s_phase"),
            ("CLUSTER", "cluster_id"),
        ],
        wide: &[
            ("NODE", "node_id"),
            ("TEMPLATE", "template_id"),
            ("VERSION", "k3s_version"),
            ("CNI", "cni_plugin"),
        ],
    },
    Kind {
        name: "network",
        plural: "networks",
        aliases: &["net"],
        list: ActionName::ListNetworks,
        key: "networks",
        id_field: "id",
        name_field: "name",
        columns: &[
            ("NAME", "name"),
            ("ID", "id"),
            ("OVERLAY", "overlay_prefix"),
            ("PEERS", "peer_count"),
        ],
        wide: &[
            ("VIP-RANGE", "vip_range"),
            ("POD-SUBNET", "pod_subnet_prefix"),
            ("HANDLE", "handle"),
        ],
    },
    Kind {
        name: "peer",
        plural: "peers",
        aliases: &[],
        list: ActionName::ListPeers,
        key: "peers",
        id_field: "id",
        name_field: "hostname",
        columns: &[
            ("NAME", "hostname"),
            ("ID", "id"),
            ("NETWORK", "network_id"),
            ("INSTANCE", "instance_id"),
            ("OVERLAY-IP", "overlay_ip"),
        ],
        wide: &[("LAN", "lan_subnets"), ("ENDPOINT", "wireguard.endpoint")],
    },
    Kind {
        name: "grant",
        plural: "grants",
        aliases: &["accessgrant", "accessgrants"],
        list: ActionName::ListAccessGrants,
        key: "grants",
        id_field: "id",
        name_field: "name",
        columns: &[
            ("NAME", "name"),
            ("ID", "id"),
            ("NETWORK", "network_id"),
            ("STATUS", "status"),
            ("ADDRESS", "address"),
        ],
        wide: &[("EXPIRES", "expires_at"), ("GATEWAY", "gateway_peer_id")],
    },
    Kind {
        name: "token",
        plural: "tokens",
        aliases: &[],
        list: ActionName::ListOperatorTokens,
        key: "tokens",
        id_field: "token_id",
        name_field: "token_id",
        columns: &[
            ("ID", "token_id"),
            ("ACCOUNT", "account_id"),
            ("PERMISSIONS", "permissions"),
            ("EXPIRES", "expires_at"),
            ("REVOKED", "revoked"),
        ],
        wide: &[("FINGERPRINT", "fingerprint")],
    },
    Kind {
        name: "approval",
        plural: "approvals",
        aliases: &[],
        list: ActionName::ListApprovals,
        key: "approvals",
        id_field: "id",
        name_field: "id",
        columns: &[
            ("ID", "id"),
            ("ACTION", "action"),
            ("SUBJECT", "subject"),
            ("STATUS", "status"),
            ("EXPIRES", "expires_at"),
        ],
        wide: &[("PROPOSED", "proposed_peer"), ("SUMMARY", "summary")],
    },
    Kind {
        name: "execution",
        plural: "executions",
        aliases: &["exec", "skill", "skills"],
        list: ActionName::ListSkillExecutions,
        key: "executions",
        id_field: "id",
        name_field: "id",
        columns: &[
            ("ID", "id"),
            ("SKILL", "skill"),
            ("STATUS", "status"),
            ("SCOPE", "scope"),
        ],
        wide: &[("FAILURES", "consecutive_failures")],
    },
];

/// The kind called `word` (singular, plural or alias), or an error listing
/// the kinds.
pub fn kind(word: &str) -> anyhow::Result<&'static Kind> {
    let w = word.to_ascii_lowercase();
    KINDS
        .iter()
        .find(|k| k.name == w || k.plural == w || k.aliases.contains(&w.as_str()))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown kind {word:?}; kinds: {}",
                KINDS
                    .iter()
                    .map(|k| k.plural)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

impl Kind {
    /// The list action's arguments (`all`: ended objects too, where the
    /// action distinguishes them).
    pub fn list_args(&self, all: bool) -> Value {
        match self.list {
            ActionName::ListClusters => json!({ "include_decommissioned": all }),
            ActionName::ListApprovals if all => json!({ "status": "all" }),
            _ => json!({}),
        }
    }

    /// Every object of this kind (`all`: ended ones too).
    pub async fn list(&self, api: &Api, all: bool) -> anyhow::Result<Vec<Value>> {
        let data = api.call(self.list.as_str(), &self.list_args(all)).await?;
        Ok(data[self.key].as_array().cloned().unwrap_or_default())
    }

    /// The id of `obj`.
    pub fn id_of(&self, obj: &Value) -> String {
        obj[self.id_field].as_str().unwrap_or_default().to_string()
    }

    /// The name of `obj`.
    pub fn name_of(&self, obj: &Value) -> String {
        obj[self.name_field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `kind/id` of `obj` (what `-o name` prints).
    pub fn ref_of(&self, obj: &Value) -> String {
        format!("{}/{}", self.name, self.id_of(obj))
    }

    /// The object named (or with id) `name`, among `all`: ambiguous names
    /// prefer the one object still alive, else name every id.
    pub fn pick(&self, all: &[Value], name: &str) -> anyhow::Result<Value> {
        if let Some(o) = all.iter().find(|o| self.id_of(o) == name) {
            return Ok(o.clone());
        }
        let named: Vec<&Value> = all.iter().filter(|o| self.name_of(o) == name).collect();
        let live: Vec<&Value> = named.iter().copied().filter(|o| is_live(o)).collect();
        match (named.as_slice(), live.as_slice()) {
            ([one], _) | (_, [one]) => Ok((*one).clone()),
            ([], _) => bail!(
                "no {} named or with id {name:?} (see `powernode get {}`)",
                self.name,
                self.plural
            ),
            (many, _) => bail!(
                "{} name {name:?} is ambiguous: {}; give the id",
                self.name,
                many.iter()
                    .map(|o| self.id_of(o))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The object named (or with id) `name`.
    pub async fn resolve(&self, api: &Api, name: &str) -> anyhow::Result<Value> {
        let all = self.list(api, true).await?;
        self.pick(&all, name)
    }

    /// `objects` as a table (`wide`: with the extra columns).
    pub fn table(&self, objects: &[Value], wide: bool) -> Table {
        let cols: Vec<&(&str, &str)> = self
            .columns
            .iter()
            .chain(if wide { self.wide } else { &[] })
            .collect();
        let header: Vec<&str> = cols.iter().map(|(h, _)| *h).collect();
        let mut t = Table::new(&header);
        for o in objects {
            t.row(cols.iter().map(|(_, f)| column(o, f)).collect());
        }
        t
    }
}

/// Whether `obj` has not ended (decommissioned, terminated, revoked,
/// expired, …).
pub fn is_live(obj: &Value) -> bool {
    let ended = [
        "decommissioned",
        "terminated",
        "revoked",
        "expired",
        "rejected",
        "superseded",
        "aborted",
        "completed",
    ];
    !obj["status"].as_str().is_some_and(|s| ended.contains(&s))
        && obj["revoked"] != Value::Bool(true)
}

/// A column of `obj`: a field, `a.b` for a nested one, `@modules` for a
/// template's module names.
pub fn column(obj: &Value, path: &str) -> String {
    if path == "@modules" {
        let names: Vec<String> = obj["module_assignments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| cell(&a["module_name"]))
            .collect();
        return if names.is_empty() {
            "-".into()
        } else {
            names.join(",")
        };
    }
    let mut cur = obj;
    for part in path.split('.') {
        cur = cur.get(part).unwrap_or(&Value::Null);
    }
    cell(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_any_name() {
        assert_eq!(kind("cl").unwrap().name, "cluster");
        assert_eq!(kind("Clusters").unwrap().name, "cluster");
        assert_eq!(kind("inst").unwrap().name, "instance");
        assert!(kind("pods").unwrap_err().to_string().contains("clusters"));
        let mut seen = std::collections::BTreeSet::new();
        for k in KINDS {
            for w in [k.name, k.plural].iter().chain(k.aliases) {
                assert!(seen.insert(*w), "{w} names two kinds");
            }
        }
    }

    #[test]
    fn names_resolve_and_ambiguity_lists_the_ids() {
        let k = kind("cluster").unwrap();
        let all = vec![
            json!({"id": "c1", "name": "prod", "status": "decommissioned"}),
            json!({"id": "c2", "name": "prod", "status": "active"}),
            json!({"id": "c3", "name": "dev", "status": "active"}),
            json!({"id": "c4", "name": "dev", "status": "active"}),
        ];
        assert_eq!(k.pick(&all, "prod").unwrap()["id"], "c2");
        assert_eq!(k.pick(&all, "c1").unwrap()["id"], "c1");
        let e = k.pick(&all, "dev").unwrap_err().to_string();
        assert!(e.contains("c3, c4"), "{e}");
        assert!(k.pick(&all, "nope").is_err());
    }
}
