//! The CLI's config file: contexts (a named API URL, its token and the CA
//! pinned for it) and the current one, in YAML at
//! `$POWERNODE_CONFIG`, else `$XDG_CONFIG_HOME/powernode/config.yaml`,
//! else `~/.config/powernode/config.yaml`. It holds tokens, so it is
//! written atomically with mode 0600, and a group- or world-readable one
//! is refused.

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The environment variable naming the config file (tests use it).
pub const ENV_CONFIG: &str = "POWERNODE_CONFIG";

/// One context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Its name.
    pub name: String,
    /// The API base URL.
    pub url: String,
    /// The operator token.
    pub token: String,
    /// The CA certificate pinned for the API (PEM), when https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Its fingerprint (`sha256:…`), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Every context.
    #[serde(default)]
    pub contexts: Vec<Context>,
}

impl Config {
    /// The context called `name`.
    pub fn get(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The context called `name`, or an error naming it and the ones there
    /// are.
    pub fn require(&self, name: &str, path: &Path) -> anyhow::Result<&Context> {
        self.get(name).with_context(|| {
            let names: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
            if names.is_empty() {
                format!(
                    "no context `{name}`: {} holds no contexts (add one with `powernode context add {name} --url URL --token-file F`)",
                    path.display()
                )
            } else {
                format!(
                    "no context `{name}` in {}; there are: {}",
                    path.display(),
                    names.join(", ")
                )
            }
        })
    }
}

/// Where the config file is.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_CONFIG).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(x).join("powernode").join("config.yaml"));
    }
    let home = std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .context("cannot find the config file: no POWERNODE_CONFIG, XDG_CONFIG_HOME or HOME")?;
    Ok(PathBuf::from(home)
        .join(".config")
        .join("powernode")
        .join("config.yaml"))
}

/// Reads the file at `path` (an empty config when there is none).
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} holds tokens but others may read it (mode {mode:o}): `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    serde_norway::from_str(&text)
        .with_context(|| format!("{} is not a powernode config", path.display()))
}

/// Writes `config` to `path` atomically (a temporary file renamed), mode
/// 0600, creating the directory (0700) when needed.
pub fn save(path: &Path, config: &Config) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let text = serde_norway::to_string(config)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.yaml");
        assert_eq!(load(&path).unwrap(), Config::default());
        let config = Config {
            current: Some("a".into()),
            contexts: vec![Context {
                name: "a".into(),
                url: "https://h:1".into(),
                token: "t".into(),
                ca_pem: Some("PEM".into()),
                ca_fingerprint: Some("sha256:00".into()),
            }],
        };
        save(&path, &config).unwrap();
        assert_eq!(load(&path).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load(&path).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
        let e = config.require("b", &path).unwrap_err().to_string();
        assert!(
            e.contains("no context `b`") && e.contains("there are: a"),
            "{e}"
        );
    }
}
