//! The dashboard over an export file, read-only (`powernode ui --file`).
//!
//! The file is checked and copied, record for record, into a temporary
//! embedded log (deleted when the backend goes), folded into a fleet, and
//! served through an [`ApiState`] marked read-only: every action that
//! would append is refused with 409 `read_only` by the dispatch itself,
//! before any handler runs. There is no token: the principal reads as one
//! of the export's accounts (a synthetic operator of that account, without
//! the admin permission). There is no secret store either, so nothing
//! secret can be served.

use super::history::History;
use super::{Dashboard, Sessions};
use crate::api::auth::{Operator, Permission};
use crate::api::ApiState;
use crate::secrets::{Created, SecretError, SecretKey, SecretStore, Version};
use anyhow::Context as _;
use async_trait::async_trait;
use powernode_archive::Reader;
use powernode_events::{AccountId, RawEnvelope};
use powernode_log::embedded::EmbeddedLog;
use powernode_log::RawRecord;
use powernode_projections::FleetState;
use powernode_runtime::Shared;
use powernode_ui::{BoxFut, Mode, Principal, Refusal};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Records appended per call while loading.
const CHUNK: usize = 1000;

/// The sessions of an export file: one synthetic operator per account.
pub struct Offline {
    history: History,
    file: PathBuf,
    accounts: Vec<String>,
    /// The temporary log's directory (removed on drop).
    _dir: tempfile::TempDir,
}

/// What loading found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Records loaded.
    pub records: u64,
    /// True when the export was filtered or partial: its records are
    /// numbered 1… here, not as in the log they came from.
    pub renumbered: bool,
}

/// The dashboard over an export file, read-only.
pub type OfflineBackend = Dashboard<Offline>;

impl OfflineBackend {
    /// Loads `file` (checked whole first: a damaged export loads nothing).
    /// `first_account`, when given, is listed first (and must be in the
    /// export). `shutdown` ends open event feeds.
    pub async fn open(
        file: &Path,
        first_account: Option<&str>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Self, Loaded)> {
        let path = file.to_path_buf();
        let (records, renumbered) = tokio::task::spawn_blocking(move || read_all(&path))
            .await
            .context("reading the export stopped")??;
        let dir = tempfile::Builder::new()
            .prefix("powernode-ui-")
            .tempdir()
            .context("cannot create a temporary directory for the export's log")?;
        let log = EmbeddedLog::open_shared(&dir.path().join("log"))
            .context("cannot open a temporary log for the export")?;
        let total = records.len() as u64;
        for chunk in records.chunks(CHUNK) {
            log.append_raw(chunk)
                .await
                .context("cannot copy the export into the temporary log")?;
        }
        let source = powernode_archive::Source::Log(log.clone());
        // An export file is not this node's log: every signature is
        // checked, as a live consumer's admission would.
        let folded =
            powernode_inspect::replay::fold(&source, powernode_archive::Bound::End, false, false)
                .await?;
        let accounts = accounts(&folded.state, first_account)?;
        let fleet: Shared<FleetState> = Shared::folded(folded.state, total);
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let api = ApiState {
            log,
            fleet,
            secrets: Arc::new(NoSecrets),
            on_provision: None,
            liveness: Arc::default(),
            failover: Default::default(),
            shutdown,
            status: crate::status::StatusBoard::shared(),
            https: false,
            read_only: Some(format!("this dashboard serves {name} read-only").into()),
            events_index: Default::default(),
        };
        Ok((
            Dashboard(Offline {
                history: History::new(api, false),
                file: file.to_path_buf(),
                accounts,
                _dir: dir,
            }),
            Loaded {
                records: total,
                renumbered,
            },
        ))
    }

    /// The export's accounts, those holding clusters first.
    pub fn accounts(&self) -> &[String] {
        &self.0.accounts
    }
}

impl Offline {
    /// The synthetic operator of the principal's account.
    fn resolve(&self, who: &Principal) -> Result<Operator, Refusal> {
        let Principal::Offline { account } = who else {
            return Err(Refusal::new(
                401,
                "unauthorized",
                "an offline dashboard has no sign-in",
            ));
        };
        if !self.accounts.contains(account) {
            return Err(Refusal::new(
                404,
                "not_found",
                format!("no account {account:?} in this export"),
            ));
        }
        let account = AccountId::new(account)
            .map_err(|e| Refusal::new(422, "invalid_arguments", e.to_string()))?;
        Ok(offline_operator(account))
    }
}

/// An operator of `account` with every permission but the admin's.
pub fn offline_operator(account: AccountId) -> Operator {
    Operator {
        account,
        token_id: "offline".to_string(),
        permissions: Permission::ALL
            .iter()
            .filter(|p| **p != Permission::Admin)
            .map(|p| p.as_str().to_string())
            .collect(),
    }
}

/// Every record of the file (checked whole), and whether importing
/// renumbers them. A record whose event id an earlier one already had is
/// loaded without an id (as `powernode events import` does).
fn read_all(path: &Path) -> anyhow::Result<(Vec<RawRecord>, bool)> {
    let mut reader =
        Reader::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for item in reader.by_ref() {
        let record = item.with_context(|| format!("{} is damaged", path.display()))?;
        let event_id = RawEnvelope::from_bytes(&record.bytes)
            .ok()
            .map(|e| e.id)
            .filter(|id| seen.insert(*id));
        out.push(RawRecord {
            subject: record.subject,
            bytes: record.bytes,
            event_id,
        });
    }
    let summary = reader
        .summary()
        .cloned()
        .with_context(|| format!("{} ended without a summary", path.display()))?;
    Ok((out, summary.renumbers()))
}

/// The accounts of `state`: `first` (when given), then those holding
/// clusters, then the rest, each group by id.
fn accounts(state: &FleetState, first: Option<&str>) -> anyhow::Result<Vec<String>> {
    let mut with: Vec<(bool, String)> = state
        .accounts()
        .map(|(id, a)| (a.clusters.is_empty(), id.to_string()))
        .collect();
    with.sort();
    let mut out: Vec<String> = with.into_iter().map(|(_, id)| id).collect();
    if let Some(first) = first {
        let Some(i) = out.iter().position(|a| a == first) else {
            anyhow::bail!(
                "no account {first:?} in the export (it holds: {})",
                out.join(", ")
            );
        };
        let a = out.remove(i);
        out.insert(0, a);
    }
    Ok(out)
}

impl Sessions for Offline {
    fn mode(&self) -> Mode {
        Mode::Offline {
            file: self.file.clone(),
            accounts: self.accounts.clone(),
        }
    }

    fn history(&self) -> &History {
        &self.history
    }

    fn operator<'a>(&'a self, who: &'a Principal) -> BoxFut<'a, Result<Operator, Refusal>> {
        let operator = self.resolve(who);
        Box::pin(async move { operator })
    }
}

/// No secret store: offline (and in tests), nothing secret is served.
pub struct NoSecrets;

fn none() -> SecretError {
    SecretError::Unavailable("an export file has no secret store".to_string())
}

#[async_trait]
impl SecretStore for NoSecrets {
    async fn put(&self, _key: &SecretKey, _value: &[u8]) -> Result<(), SecretError> {
        Err(none())
    }
    async fn create(&self, _key: &SecretKey, _value: &[u8]) -> Result<Created, SecretError> {
        Err(none())
    }
    async fn get(&self, _key: &SecretKey) -> Result<Option<Vec<u8>>, SecretError> {
        Err(none())
    }
    async fn get_versioned(
        &self,
        _key: &SecretKey,
    ) -> Result<Option<(Vec<u8>, Version)>, SecretError> {
        Err(none())
    }
    async fn update(
        &self,
        _key: &SecretKey,
        _value: &[u8],
        _expected: &Version,
    ) -> Result<Version, SecretError> {
        Err(none())
    }
    async fn delete(&self, _key: &SecretKey) -> Result<(), SecretError> {
        Err(none())
    }
    fn describe(&self) -> String {
        "none (an export file)".to_string()
    }
}
