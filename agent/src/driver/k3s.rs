//! The real driver: installs k3s with its official installer, writes
//! `/etc/rancher/k3s/config.yaml` and a systemd drop-in, and drives
//! `systemctl`.
//!
//! Every path is under a root directory (`/` on a node, a temp dir in tests)
//! and every command goes through a [`CommandRunner`]. Files holding a token
//! are mode 0600; tokens never appear in an error.
//!
//! Starting is idempotent without being disruptive: once a unit has been
//! restarted with some configuration, a stamp records it, and a later call
//! with the same configuration while the unit is active restarts nothing.
//!
//! A held virtual IP is a `/128` on the SD-WAN WireGuard interface
//! (`ip -6 addr replace` / `ip -6 addr del`, see [`vip`]).

use super::runner::{redact, CommandRunner, SystemRunner};
use super::{
    AgentPlan, BootstrapArtifacts, ModuleVersionPin, Role, Runtime, RuntimeError, ServerPlan,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod config;
pub mod upgrade;
pub mod vip;
use config::{invalid, server_config, server_drop_in, systemd_env, ExtraFlags};
pub(crate) use config::{validate_agent_plan, validate_server_plan};
pub use vip::DEFAULT_VIP_INTERFACE;

/// The k3s version installed unless told otherwise.
pub const DEFAULT_VERSION: &str = "v1.30.5+k3s1";
/// The official installer script.
pub const INSTALLER_URL: &str = "https://get.k3s.io";
/// The port of the Kubernetes API (and of k3s's supervisor).
pub const API_PORT: u16 = 6443;
/// The directory the installer is told to put the binary in (the drop-in's
/// `ExecStart` names it).
pub const BIN_DIR: &str = "/usr/local/bin";
/// The k3s binary.
pub const K3S_BIN: &str = "/usr/local/bin/k3s";
/// The server configuration k3s reads at start.
pub const CONFIG_FILE: &str = "/etc/rancher/k3s/config.yaml";
/// The drop-in overriding `k3s.service`'s `ExecStart`.
pub const SERVER_DROP_IN: &str = "/etc/systemd/system/k3s.service.d/10-powernode.conf";
/// The drop-in giving `k3s-agent.service` its `K3S_URL` / `K3S_TOKEN`.
pub const AGENT_DROP_IN: &str = "/etc/systemd/system/k3s-agent.service.d/10-powernode.conf";
/// The admin kubeconfig a k3s server writes.
pub const KUBECONFIG_FILE: &str = "/etc/rancher/k3s/k3s.yaml";
/// The node token (`K10<ca hash>::server:<password>`) a k3s server writes.
pub const NODE_TOKEN_FILE: &str = "/var/lib/rancher/k3s/server/node-token";
/// The cluster CA a k3s server generates at its first start (its SHA-256
/// is the hash in a `K10…` token).
pub const SERVER_CA_FILE: &str = "/var/lib/rancher/k3s/server/tls/server-ca.crt";
/// What was installed: `<version> <server|agent>`, written after the
/// installer succeeded.
pub const INSTALLED_MARKER: &str = "/var/lib/powernode-agent/k3s-installed";
/// Fingerprint of the configuration `k3s` was last restarted with.
const SERVER_APPLIED: &str = "/var/lib/powernode-agent/k3s-applied";
/// Fingerprint of the configuration `k3s-agent` was last restarted with.
const AGENT_APPLIED: &str = "/var/lib/powernode-agent/k3s-agent-applied";
/// Keys of the server configuration the plan itself sets; an extra flag may
/// not set them too.
const PLAN_KEYS: &[&str] = &["cluster-init", "server", "token", "token-file"];
const FILE_HEADER: &str = "# Written by powernode-agent; rewritten on every start, do not edit.\n";

/// `https://<host>:6443` for a VIP or host name; an IPv6 address is
/// bracketed (`https://[fd00:abcd:1::100]:6443`), brackets already there are
/// kept.
pub fn api_server_url(host: &str) -> String {
    let bare = bare_host(host);
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("https://[{bare}]:{API_PORT}")
    } else {
        format!("https://{bare}:{API_PORT}")
    }
}

/// A host without the brackets of a bracketed IPv6 literal (what
/// `--tls-san` takes).
fn bare_host(host: &str) -> &str {
    let host = host.trim();
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The real k3s driver.
pub struct K3sRuntime {
    root: PathBuf,
    runner: Box<dyn CommandRunner>,
    version: String,
    node_name: String,
    artifact_timeout: Duration,
    /// The interface virtual IPs are put on.
    vip_interface: String,
    /// Tokens seen in plans, scrubbed from every command error.
    secrets: Vec<String>,
    /// The server plan last started (for a re-stamp).
    last_server: Option<ServerPlan>,
}

impl std::fmt::Debug for K3sRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K3sRuntime")
            .field("root", &self.root)
            .field("version", &self.version)
            .field("node_name", &self.node_name)
            .field("artifact_timeout", &self.artifact_timeout)
            .field("vip_interface", &self.vip_interface)
            .finish_non_exhaustive()
    }
}

impl K3sRuntime {
    /// How long [`Runtime::read_artifacts`] waits for k3s to write the
    /// kubeconfig and node token unless told otherwise.
    pub const DEFAULT_ARTIFACT_TIMEOUT: Duration = Duration::from_secs(120);
    const POLL_INTERVAL: Duration = Duration::from_millis(200);

    /// A driver writing under `root` and running commands with `runner`.
    pub fn new(
        root: PathBuf,
        runner: Box<dyn CommandRunner>,
        version: String,
        node_name: String,
    ) -> Self {
        Self {
            root,
            runner,
            version,
            node_name,
            artifact_timeout: Self::DEFAULT_ARTIFACT_TIMEOUT,
            vip_interface: DEFAULT_VIP_INTERFACE.to_owned(),
            secrets: Vec::new(),
            last_server: None,
        }
    }

    /// The driver for this machine: root `/`, a [`SystemRunner`],
    /// [`DEFAULT_VERSION`], and the hostname (lower-cased, as k3s names the
    /// node) from `/etc/hostname`, the kernel, or `hostname`.
    pub fn system() -> Self {
        Self::new(
            PathBuf::from("/"),
            Box::new(SystemRunner::new()),
            DEFAULT_VERSION.to_owned(),
            detect_hostname(),
        )
    }

    /// Waits at most `timeout` for the kubeconfig and node token.
    pub fn with_artifact_timeout(mut self, timeout: Duration) -> Self {
        self.artifact_timeout = timeout;
        self
    }

    /// Puts virtual IPs on `interface` (default [`DEFAULT_VIP_INTERFACE`]:
    /// the SD-WAN's WireGuard interface).
    pub fn with_vip_interface(mut self, interface: impl Into<String>) -> Self {
        self.vip_interface = interface.into();
        self
    }

    /// The interface virtual IPs are put on.
    pub fn vip_interface(&self) -> &str {
        &self.vip_interface
    }

    /// The root directory everything is written under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the node path `node_path` (e.g. [`CONFIG_FILE`]) is under the
    /// root.
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.root.join(node_path.trim_start_matches('/'))
    }

    fn remember_secret(&mut self, token: &str) {
        let mut add = |s: &str| {
            if !s.is_empty() && !self.secrets.iter().any(|known| known == s) {
                self.secrets.push(s.to_owned());
            }
        };
        add(token);
        // The password part of a `K10…::server:<password>` token may be
        // echoed on its own.
        if let Some((_, credentials)) = token.split_once("::") {
            add(credentials);
            if let Some((_, password)) = credentials.split_once(':') {
                add(password);
            }
        }
    }

    /// Runs a command, scrubbing every known token from its error.
    fn run(
        &mut self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<(), RuntimeError> {
        self.run_output(program, args, env).map(drop)
    }

    /// [`Self::run`], answering the command's stdout.
    fn run_output(
        &mut self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<String, RuntimeError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match self.runner.run(program, &args, &env) {
            Ok(out) => Ok(out.stdout),
            Err(RuntimeError::Command { command, detail }) => Err(RuntimeError::Command {
                command: redact(&command, &self.secrets),
                detail: redact(&detail, &self.secrets),
            }),
            Err(other) => Err(other),
        }
    }

    /// A `cluster_init` server given a secure token: k3s accepts it only
    /// when the cluster CA already exists and hashes to the token's hash.
    fn check_cluster_ca(&self, token: &str) -> Result<(), RuntimeError> {
        let Some((hash, _)) = secure_token_parts(token) else {
            return Ok(());
        };
        match read_optional(&self.path(SERVER_CA_FILE))? {
            None => Err(invalid(SECURE_TOKEN_ON_FIRST_SERVER)),
            Some(ca) if !hex::encode(Sha256::digest(ca.as_bytes())).eq_ignore_ascii_case(hash) => {
                Err(invalid(format!(
                    "the token's CA hash does not match {}: it is another cluster's token",
                    self.path(SERVER_CA_FILE).display()
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Reloads systemd, enables and restarts `unit` — unless it was already
    /// restarted with exactly these files and is still active.
    fn apply(&mut self, unit: &str, stamp: &str, files: &[&str]) -> Result<(), RuntimeError> {
        let mut hash = Sha256::new();
        hash.update(unit.as_bytes());
        for file in files {
            hash.update([0u8]);
            hash.update(file.as_bytes());
        }
        let fingerprint = format!("sha256:{}\n", hex::encode(hash.finalize()));
        let stamp = self.path(stamp);
        let applied = read_optional(&stamp)?.is_some_and(|s| s == fingerprint);
        if applied
            && self
                .run("systemctl", &["is-active", "--quiet", unit], &[])
                .is_ok()
        {
            tracing::debug!(
                unit,
                "configuration unchanged and unit active; not restarting"
            );
            return Ok(());
        }
        tracing::info!(unit, "restarting with new configuration");
        self.run("systemctl", &["daemon-reload"], &[])?;
        self.run("systemctl", &["enable", unit], &[])?;
        self.run("systemctl", &["restart", unit], &[])?;
        write_file(&stamp, &fingerprint, 0o600)
    }
}

impl Runtime for K3sRuntime {
    fn name(&self) -> &'static str {
        "k3s"
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    fn install(&mut self, role: Role) -> Result<(), RuntimeError> {
        let bin = self.path(K3S_BIN);
        let marker = self.path(INSTALLED_MARKER);
        let installed = format!("{} {}", self.version, role_word(role));
        if bin.exists() && read_optional(&marker)?.is_some_and(|m| m.trim() == installed) {
            tracing::debug!(version = %self.version, role = role_word(role), "k3s already installed");
            return Ok(());
        }
        tracing::info!(version = %self.version, role = role_word(role), "installing k3s");
        let script = format!("curl -sfL {INSTALLER_URL} | sh -s - {}", role_word(role));
        let version = self.version.clone();
        self.run(
            "sh",
            &["-c", &script],
            &[
                ("INSTALL_K3S_VERSION", version.as_str()),
                ("INSTALL_K3S_SKIP_START", "true"),
                ("INSTALL_K3S_SKIP_ENABLE", "true"),
                ("INSTALL_K3S_BIN_DIR", BIN_DIR),
            ],
        )?;
        // `curl … | sh` succeeds when curl fails and sh reads nothing.
        if !bin.exists() {
            return Err(RuntimeError::Unexpected(format!(
                "the k3s installer finished but {} does not exist",
                bin.display()
            )));
        }
        write_file(&marker, &format!("{installed}\n"), 0o644)
    }

    fn start_server(&mut self, plan: &ServerPlan) -> Result<(), RuntimeError> {
        validate_server_plan(plan)?;
        self.remember_secret(&plan.token);
        if plan.cluster_init {
            self.check_cluster_ca(&plan.token)?;
        }
        let flags = ExtraFlags::parse(&plan.sans(), &plan.extra_flags)?;
        let config = server_config(plan, &flags);
        let drop_in = server_drop_in(plan, &flags);
        write_file(&self.path(CONFIG_FILE), &config, 0o600)?;
        write_file(&self.path(SERVER_DROP_IN), &drop_in, 0o600)?;
        self.last_server = Some(plan.clone());
        self.apply("k3s", SERVER_APPLIED, &[&config, &drop_in])
    }

    fn read_artifacts(&mut self) -> Result<BootstrapArtifacts, RuntimeError> {
        let kubeconfig_path = self.path(KUBECONFIG_FILE);
        let token_path = self.path(NODE_TOKEN_FILE);
        let deadline = Instant::now() + self.artifact_timeout;
        loop {
            let kubeconfig = read_optional(&kubeconfig_path)?.filter(|s| !s.trim().is_empty());
            let token = read_optional(&token_path)?
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            let (kubeconfig, node_token) = match (kubeconfig, token) {
                (Some(kubeconfig), Some(node_token)) => (kubeconfig, node_token),
                (kubeconfig, token) => {
                    let now = Instant::now();
                    if now < deadline {
                        std::thread::sleep(Self::POLL_INTERVAL.min(deadline - now));
                        continue;
                    }
                    let missing: Vec<String> = [
                        (kubeconfig.is_none(), &kubeconfig_path),
                        (token.is_none(), &token_path),
                    ]
                    .into_iter()
                    .filter(|(missing, _)| *missing)
                    .map(|(_, path)| path.display().to_string())
                    .collect();
                    return Err(RuntimeError::Unexpected(format!(
                        "k3s did not write {} within {:?}",
                        missing.join(" nor "),
                        self.artifact_timeout
                    )));
                }
            };
            return Ok(BootstrapArtifacts {
                kubeconfig,
                node_token,
                // k3s shares its CA with joining servers itself.
                cluster_ca: None,
            });
        }
    }

    fn start_agent(&mut self, plan: &AgentPlan) -> Result<(), RuntimeError> {
        validate_agent_plan(plan)?;
        self.remember_secret(&plan.token);
        let drop_in = format!(
            "{FILE_HEADER}[Service]\nEnvironment={}\nEnvironment={}\n",
            systemd_env("K3S_URL", &plan.server_url),
            systemd_env("K3S_TOKEN", &plan.token),
        );
        write_file(&self.path(AGENT_DROP_IN), &drop_in, 0o600)?;
        self.apply("k3s-agent", AGENT_APPLIED, &[&drop_in])
    }

    fn hold_vip(&mut self, vip: &str, generation: u64) -> Result<(), RuntimeError> {
        self.add_vip(vip, generation)
    }

    fn release_vip(&mut self, vip: &str) -> Result<(), RuntimeError> {
        self.del_vip(vip)
    }

    fn install_version(
        &mut self,
        role: Role,
        pin: Option<&ModuleVersionPin>,
    ) -> Result<(), RuntimeError> {
        self.install_pinned(role, pin)
    }

    fn cordon(&mut self, role: Role) -> Result<(), RuntimeError> {
        self.cordon_node(role)
    }

    fn drain(&mut self, role: Role, timeout: Duration) -> Result<(), RuntimeError> {
        self.drain_node(role, timeout)
    }

    fn upgrade(&mut self, role: Role, pin: Option<&ModuleVersionPin>) -> Result<(), RuntimeError> {
        self.upgrade_node(role, pin)
    }

    fn restamp(&mut self, role: Role, extra_flags: &[String]) -> Result<(), RuntimeError> {
        if role == Role::Agent {
            return self.restamp_agent(extra_flags);
        }
        self.restamp_server(extra_flags)
    }

    fn wait_ready(&mut self, role: Role, timeout: Duration) -> Result<(), RuntimeError> {
        self.wait_node_ready(role, timeout)
    }

    fn uncordon(&mut self, role: Role) -> Result<(), RuntimeError> {
        self.uncordon_node(role)
    }

    fn adopt_token(
        &mut self,
        role: Role,
        old: &str,
        new: &str,
        rotate: bool,
    ) -> Result<(), RuntimeError> {
        self.adopt_join_token(role, old, new, rotate)
    }
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Server => "server",
        Role::Agent => "agent",
    }
}

/// The CA hash and credentials of a token in k3s's secure format
/// `K10<ca hash>::<credentials>`; `None` for a short (password-only) token.
pub(crate) fn secure_token_parts(token: &str) -> Option<(&str, &str)> {
    let (hash, credentials) = token.strip_prefix("K10")?.split_once("::")?;
    let valid =
        !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()) && !credentials.is_empty();
    valid.then_some((hash, credentials))
}

/// The password of a token: all of a short token, the part after
/// `<user>:` of a secure one (what k3s encrypts its datastore with).
pub(crate) fn token_password(token: &str) -> &str {
    match secure_token_parts(token) {
        Some((_, credentials)) => credentials
            .split_once(':')
            .map_or(credentials, |(_, password)| password),
        None => token,
    }
}

/// Why a first server cannot be started with a secure token.
pub(crate) const SECURE_TOKEN_ON_FIRST_SERVER: &str =
    "the first server of a cluster takes a short token (password only): k3s cannot check a \
     K10… token's CA hash before it has generated the cluster CA";

/// The contents of `path`, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, RuntimeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RuntimeError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes `contents` to `path` with `mode` (atomically: a temp file renamed
/// over it, so no reader sees half a file and no token is ever in a file
/// with a wider mode). Leaves an identical file alone but fixes its mode.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: path.display().to_string(),
        source,
    };
    if read_optional(path)?.is_some_and(|existing| existing == contents) {
        return set_mode(path, mode).map_err(io);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.powernode-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let result = (|| {
        use std::io::Write;
        let mut file = options.open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        set_mode(&tmp, mode)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// The node's hostname as k3s names the node (lower-cased): from
/// `/etc/hostname`, else the kernel's, else `hostname`, else `localhost`.
fn detect_hostname() -> String {
    let from_file = |path: &str| {
        std::fs::read_to_string(path).ok().and_then(|text| {
            text.lines()
                .map(str::trim)
                .find(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_owned)
        })
    };
    from_file("/etc/hostname")
        .or_else(|| from_file("/proc/sys/kernel/hostname"))
        .or_else(|| {
            let out = std::process::Command::new("hostname").output().ok()?;
            let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !name.is_empty()).then_some(name)
        })
        .unwrap_or_else(|| "localhost".to_owned())
        .to_lowercase()
}

#[cfg(test)]
mod tests;
