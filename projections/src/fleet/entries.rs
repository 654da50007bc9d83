//! The fleet as entries, for incremental checkpoints: one entry per object
//! (a cluster, an instance, a k8s node row set …), keyed by where it lives.
//!
//! ```text
//! m                          → (format version, last_seq, applied)
//! i/<instance>               → account           (instance_accounts)
//! t/<fingerprint>            → (account, token)  (token_fingerprints)
//! w/<public key>             → (account, inst)   (wireguard_key_owners)
//! a/<account>\0              → the account's own fields (AccountMeta)
//! a/<account>\0<table>\0<id> → one object of one of the account's tables
//! ```
//!
//! Every value is canonical CBOR. [`FleetState::changed_entries`] answers the
//! entries changed since it was last called (from [`Tracked`]'s marks), so a
//! checkpoint costs what changed, not what the fleet holds.

use super::{AccountState, FleetState, FORMAT};
use crate::snapshot::SnapshotError;
use crate::tracked::Tracked;
use crate::{EntryChange, PendingChanges};
use powernode_events::AccountId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeSet;

/// The fields of an account that are not tables.
#[derive(Serialize, Deserialize)]
struct AccountMeta {
    name: Option<String>,
    created_seq: Option<u64>,
    executions_at_work: BTreeSet<String>,
}

/// Calls `$m!(tag, field)` for every table of [`AccountState`]. A table
/// added to the account must be listed here, or it would not be saved.
macro_rules! account_tables {
    ($m:ident) => {
        $m!("tokens", tokens);
        $m!("templates", templates);
        $m!("nodes", nodes);
        $m!("instances", instances);
        $m!("networks", networks);
        $m!("peers", peers);
        $m!("virtual_ips", virtual_ips);
        $m!("clusters", clusters);
        $m!("k8s_nodes", k8s_nodes);
        $m!("approvals", approvals);
        $m!("instance_peers", instance_peers);
        $m!("cluster_vips", cluster_vips);
        $m!("peer_holdings", peer_holdings);
        $m!("wireguard_keys", wireguard_keys);
        $m!("grants", grants);
        $m!("module_versions", module_versions);
        $m!("executions", executions);
        $m!("instance_versions", instance_versions);
    };
}

fn enc<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::with_capacity(128);
    ciborium::into_writer(value, &mut out).map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(out)
}

fn dec<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, SnapshotError> {
    ciborium::from_reader(bytes).map_err(|e| SnapshotError::Corrupt {
        projection: FORMAT.projection,
        reason: format!("entry {:?}: {e}", String::from_utf8_lossy(key)),
    })
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn account_prefix(account: &AccountId) -> Vec<u8> {
    key(&[b"a/", account.as_str().as_bytes(), b"\0"])
}

/// A copied value, encoded later (off the consumer's lock).
trait Encode: Send {
    fn encode(&self) -> Result<Vec<u8>, SnapshotError>;
}

impl<T: Serialize + Send> Encode for T {
    fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        enc(self)
    }
}

/// Changes copied out of the state: key and the copied value, or `None`.
type Copied = Vec<(Vec<u8>, Option<Box<dyn Encode>>)>;

/// Copies out the changes of one table (`prefix` + key).
fn copy_changes<V: Serialize + Clone + Send + 'static>(
    prefix: &[u8],
    table: &mut Tracked<String, V>,
    out: &mut Copied,
) {
    for (id, value) in table.take_changed() {
        let k = key(&[prefix, id.as_bytes()]);
        out.push((k, value.map(|v| Box::new(v.clone()) as Box<dyn Encode>)));
    }
}

fn all_of<V: Serialize>(
    prefix: &[u8],
    table: &Tracked<String, V>,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), SnapshotError> {
    for (id, value) in table.iter() {
        out.push((key(&[prefix, id.as_bytes()]), enc(value)?));
    }
    Ok(())
}

fn meta(account: &AccountState) -> AccountMeta {
    AccountMeta {
        name: account.name.clone(),
        created_seq: account.created_seq,
        executions_at_work: account.executions_at_work.clone(),
    }
}

impl FleetState {
    /// The entries changed since the last call (a value, or `None` where an
    /// entry went away), forgetting the marks: copied now, encoded when the
    /// answer is called.
    pub(super) fn changed_entries(&mut self) -> PendingChanges {
        let mut out: Copied = Vec::new();
        let head = (FORMAT.version, self.last_seq, self.applied);
        out.push((b"m".to_vec(), Some(Box::new(head))));
        copy_changes(b"i/", &mut self.instance_accounts, &mut out);
        copy_changes(b"t/", &mut self.token_fingerprints, &mut out);
        copy_changes(b"w/", &mut self.wireguard_key_owners, &mut out);
        let touched: Vec<AccountId> = self
            .accounts
            .take_changed()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in touched {
            let prefix = account_prefix(&id);
            let Some(account) = self.accounts.get_mut_unmarked(&id) else {
                continue; // accounts are never removed; nothing to write
            };
            out.push((prefix.clone(), Some(Box::new(meta(account)))));
            macro_rules! changes {
                ($tag:literal, $field:ident) => {
                    let table = key(&[&prefix, $tag.as_bytes(), b"\0"]);
                    copy_changes(&table, &mut account.$field, &mut out);
                };
            }
            account_tables!(changes);
        }
        Box::new(move || {
            out.into_iter()
                .map(|(k, v)| Ok((k, v.map(|v| v.encode()).transpose()?)))
                .collect::<Result<Vec<EntryChange>, SnapshotError>>()
        })
    }

    /// Every entry of the state (a first, full checkpoint), forgetting the
    /// marks.
    pub(super) fn every_entry(&mut self) -> Result<Vec<crate::Entry>, SnapshotError> {
        let mut out = vec![(
            b"m".to_vec(),
            enc(&(FORMAT.version, self.last_seq, self.applied))?,
        )];
        all_of(b"i/", &self.instance_accounts, &mut out)?;
        all_of(b"t/", &self.token_fingerprints, &mut out)?;
        all_of(b"w/", &self.wireguard_key_owners, &mut out)?;
        for (id, account) in self.accounts.iter() {
            let prefix = account_prefix(id);
            out.push((prefix.clone(), enc(&meta(account))?));
            macro_rules! entries {
                ($tag:literal, $field:ident) => {
                    for (obj, value) in account.$field.iter() {
                        let k = key(&[&prefix, $tag.as_bytes(), b"\0", obj.as_bytes()]);
                        out.push((k, enc(value)?));
                    }
                };
            }
            account_tables!(entries);
        }
        self.forget_changes();
        Ok(out)
    }

    /// Forgets every mark (the state equals what is stored).
    fn forget_changes(&mut self) {
        self.instance_accounts.clear_changed();
        self.token_fingerprints.clear_changed();
        self.wireguard_key_owners.clear_changed();
        let ids: Vec<AccountId> = self.accounts.keys().cloned().collect();
        self.accounts.clear_changed();
        for id in ids {
            if let Some(account) = self.accounts.get_mut_unmarked(&id) {
                macro_rules! clear {
                    ($tag:literal, $field:ident) => {
                        account.$field.clear_changed();
                    };
                }
                account_tables!(clear);
            }
        }
    }

    /// The state the entries describe (the inverse of [`Self::every_entry`]
    /// and of every [`Self::changed_entries`] applied in turn). Typed errors
    /// on an unknown key, a bad value, or a missing or foreign format.
    pub(super) fn from_entries(
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, SnapshotError> {
        let corrupt = |reason: String| SnapshotError::Corrupt {
            projection: FORMAT.projection,
            reason,
        };
        let mut state = FleetState::default();
        let mut seen_meta = false;
        for (k, v) in entries {
            let text = |b: &[u8]| {
                String::from_utf8(b.to_vec())
                    .map_err(|_| corrupt(format!("entry key {k:?} is not UTF-8")))
            };
            if k == b"m" {
                let (version, last_seq, applied): (u16, u64, u64) = dec(&k, &v)?;
                if version != FORMAT.version {
                    return Err(SnapshotError::UnsupportedFormat {
                        projection: FORMAT.projection,
                        found: version,
                        supported: FORMAT.version,
                    });
                }
                (state.last_seq, state.applied, seen_meta) = (last_seq, applied, true);
            } else if let Some(id) = k.strip_prefix(b"i/") {
                state
                    .instance_accounts
                    .insert_stored(text(id)?, dec(&k, &v)?);
            } else if let Some(id) = k.strip_prefix(b"t/") {
                state
                    .token_fingerprints
                    .insert_stored(text(id)?, dec(&k, &v)?);
            } else if let Some(id) = k.strip_prefix(b"w/") {
                state
                    .wireguard_key_owners
                    .insert_stored(text(id)?, dec(&k, &v)?);
            } else if let Some(rest) = k.strip_prefix(b"a/") {
                let (acct, rest) = split_nul(rest)
                    .ok_or_else(|| corrupt(format!("entry key {k:?} has no account end")))?;
                let acct = AccountId::new(text(acct)?)
                    .map_err(|e| corrupt(format!("entry key {k:?}: {e}")))?;
                if !state.accounts.contains_key(&acct) {
                    state
                        .accounts
                        .insert_stored(acct.clone(), AccountState::default());
                }
                let Some(account) = state.accounts.get_mut_unmarked(&acct) else {
                    unreachable!("inserted just above");
                };
                if rest.is_empty() {
                    let m: AccountMeta = dec(&k, &v)?;
                    account.name = m.name;
                    account.created_seq = m.created_seq;
                    account.executions_at_work = m.executions_at_work;
                    continue;
                }
                let (tag, obj) = split_nul(rest)
                    .ok_or_else(|| corrupt(format!("entry key {k:?} has no table end")))?;
                let obj = text(obj)?;
                let mut known = false;
                macro_rules! restore {
                    ($tag:literal, $field:ident) => {
                        if !known && tag == $tag.as_bytes() {
                            account.$field.insert_stored(obj.clone(), dec(&k, &v)?);
                            known = true;
                        }
                    };
                }
                account_tables!(restore);
                if !known {
                    return Err(corrupt(format!("entry key {k:?}: unknown table")));
                }
            } else {
                return Err(corrupt(format!("unknown entry key {k:?}")));
            }
        }
        if !seen_meta {
            return Err(SnapshotError::BadHeader {
                expected: FORMAT.projection,
            });
        }
        Ok(state)
    }
}

/// `a\0b` → (`a`, `b`).
fn split_nul(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}
