//! The first admin token: created on first start (or taken from
//! `POWERNODE_ADMIN_TOKEN`), kept in `<data-dir>/admin.token` (mode 0600);
//! the log holds only its fingerprint.

use super::auth::{fingerprint, new_token, Permission, SYSTEM_ACCOUNT};
use powernode_events::payloads::fleet::{AccountCreated, OperatorTokenIssued};
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::{Expect, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::{derived_event_id, Shared};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the admin token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The token file could not be read or written.
    #[error("admin token file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The log refused or could not be reached.
    #[error("cannot record the admin token: {0}")]
    Log(#[from] powernode_log::LogError),
    /// The API's projection did not catch up with the log in time.
    #[error("the API projection did not catch up with the log within {0:?}")]
    CatchUp(Duration),
}

/// Ensures an admin token exists; returns the file it is in.
pub async fn ensure_admin_token(
    log: &SharedLog,
    fleet: &Shared<FleetState>,
    data_dir: &Path,
) -> Result<PathBuf, BootstrapError> {
    let path = data_dir.join("admin.token");
    let file_err = |source| BootstrapError::File {
        path: path.clone(),
        source,
    };
    let token = match std::env::var("POWERNODE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        Some(t) => t.trim().to_string(),
        None => match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            Ok(_) => new_token(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_token(),
            Err(e) => return Err(file_err(e)),
        },
    };
    let fp = fingerprint(&token);
    // Decide on an up-to-date projection.
    let last = log.last_seq().await?;
    let wait = Duration::from_secs(30);
    if !fleet.wait_for(last, wait).await {
        return Err(BootstrapError::CatchUp(wait));
    }
    let system = AccountId::new(SYSTEM_ACCOUNT).expect("literal is a valid account id");
    let (has_account, has_token) = {
        let state = fleet.state.read().await;
        (
            state.account(&system).and_then(|a| a.created_seq).is_some(),
            state.operator_token_by_fingerprint(&fp).is_some(),
        )
    };
    let actor = Actor::service("api");
    let mut appended = 0;
    if !has_account {
        let mut e = Envelope::new(
            system.clone(),
            actor.clone(),
            AccountCreated {
                account_id: SYSTEM_ACCOUNT.into(),
                name: "system".into(),
            },
        );
        e.id = derived_event_id(BOOTSTRAP_NAMESPACE, "system-account");
        appended = log.append(&e, Expect::Any).await?.seq;
    }
    if !has_token {
        let mut e = Envelope::new(
            system,
            actor,
            OperatorTokenIssued {
                token_id: format!("tok-admin-{}", &fp[7..19]),
                permissions: vec![Permission::Admin.as_str().to_string()],
                fingerprint: fp.clone(),
                expires_at: None,
            },
        );
        e.id = derived_event_id(BOOTSTRAP_NAMESPACE, &fp);
        appended = log.append(&e, Expect::Any).await?.seq;
    }
    if appended > 0 && !fleet.wait_for(appended, wait).await {
        return Err(BootstrapError::CatchUp(wait));
    }
    if std::fs::read_to_string(&path)
        .map(|t| t.trim() != token)
        .unwrap_or(true)
    {
        write_private(&path, &token).map_err(file_err)?;
    }
    Ok(path)
}

const BOOTSTRAP_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6164_6d69_6e00_4000_8000_706e_6274_7370);

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("token.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}
