//! `powernode nats init --dir D`: a ready nats-server config (JetStream
//! with `sync_interval: always`, the platform account, the auth callout)
//! and the platform's credentials, made once.

use super::{server_auth_config, PlatformCreds};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `nats init` made.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// The server config (`nats-server -c <this>`).
    pub config: PathBuf,
    /// The platform's credentials (user + callout issuer): for the API
    /// process, and any service (`--nats-creds`).
    pub creds: PathBuf,
    /// The credentials without the issuer key: for services other than
    /// the API.
    pub service_creds: PathBuf,
    /// The auth part of the config (included by it; a clustered
    /// deployment includes it from each node's own config).
    pub auth_config: PathBuf,
    /// The platform user's public key.
    pub platform_user: String,
    /// The callout issuer's public key.
    pub issuer: String,
}

/// The file names inside the directory.
pub const CONFIG_FILE: &str = "nats-server.conf";
/// See [`Initialized::creds`].
pub const CREDS_FILE: &str = "platform.creds";
/// See [`Initialized::service_creds`].
pub const SERVICE_CREDS_FILE: &str = "service.creds";
/// See [`Initialized::auth_config`].
pub const AUTH_CONFIG_FILE: &str = "auth.conf";

/// Writes the config and credentials into `dir` (created 0700). Refuses to
/// replace existing files unless `force` (new keys would lock the running
/// platform out).
pub fn init(dir: &Path, listen: &str, force: bool) -> anyhow::Result<Initialized> {
    create_private_dir(dir)?;
    let config = dir.join(CONFIG_FILE);
    let creds_path = dir.join(CREDS_FILE);
    let service_path = dir.join(SERVICE_CREDS_FILE);
    let auth_path = dir.join(AUTH_CONFIG_FILE);
    if !force {
        for p in [&config, &creds_path, &service_path, &auth_path] {
            if p.exists() {
                bail!(
                    "{} exists; pass --force to make new keys (the running platform and its agents would be locked out until restarted with them)",
                    p.display()
                );
            }
        }
    }
    let creds = PlatformCreds::generate();
    let issuer = creds
        .issuer()
        .expect("generated credentials have an issuer");
    let store = dir.join("jetstream");
    let text = format!(
        "# nats-server config made by `powernode nats init` (nats-server >= 2.10).\n\
         listen: {listen}\n\
         jetstream {{\n  store_dir: {store:?}\n  # Flush before acknowledging: an acknowledged event survives a crash.\n  sync_interval: always\n}}\n\
         # TLS: add  tls {{ cert_file: …, key_file: … }}  and connect with tls://… and --nats-ca.\n\
         # The platform account, its user and the auth callout:\n\
         include ./{AUTH_CONFIG_FILE}\n",
        store = store.display().to_string(),
    );
    write_file(
        &auth_path,
        &server_auth_config(&creds.user_public_key(), &issuer.public_key()),
        0o644,
        force,
    )?;
    write_file(&config, &text, 0o644, force)?;
    write_file(&creds_path, &creds.to_file_text(), 0o600, force)?;
    write_file(
        &service_path,
        &creds.without_issuer().to_file_text(),
        0o600,
        force,
    )?;
    Ok(Initialized {
        config,
        creds: creds_path,
        service_creds: service_path,
        auth_config: auth_path,
        platform_user: creds.user_public_key(),
        issuer: issuer.public_key(),
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32, replace: bool) -> anyhow::Result<()> {
    if replace {
        let _ = std::fs::remove_file(path);
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_private_credentials_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("nats");
        let made = init(&d, "127.0.0.1:4222", false).unwrap();
        let conf = std::fs::read_to_string(&made.config).unwrap();
        assert!(conf.contains("sync_interval: always"));
        assert!(conf.contains("include ./auth.conf"));
        let conf = std::fs::read_to_string(&made.auth_config).unwrap();
        assert!(conf.contains(&format!("issuer: {}", made.issuer)));
        assert!(conf.contains(&format!("nkey: {}", made.platform_user)));
        let creds = PlatformCreds::read(&made.creds).unwrap();
        assert_eq!(creds.user_public_key(), made.platform_user);
        assert!(PlatformCreds::read(&made.service_creds)
            .unwrap()
            .issuer_seed
            .is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&made.creds).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = init(&d, "127.0.0.1:4222", false).unwrap_err();
        assert!(format!("{again}").contains("--force"), "{again}");
        let forced = init(&d, "127.0.0.1:4222", true).unwrap();
        assert_ne!(forced.platform_user, made.platform_user);
    }
}
