//! WireGuard made by hand inside hosts: key pairs (`wg genkey`), a
//! `boringtun-cli` interface configured with `wg set`, and a wg-quick file
//! brought up by the real `wg-quick` with boringtun as its userspace
//! implementation (what an operator's laptop does with an access grant).

use super::{run, Host, HostProcess};
use anyhow::{bail, Context as _};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a userspace interface may take to make its UAPI socket.
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// An x25519 key pair made by `wg genkey` / `wg pubkey`. Debug shows the
/// public key only.
#[derive(Clone)]
pub struct KeyPair {
    /// Base64 private key.
    pub private: String,
    /// Base64 public key.
    pub public: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl KeyPair {
    /// A fresh key pair.
    pub fn generate() -> anyhow::Result<Self> {
        let private = run(Command::new("wg").arg("genkey"))?.trim().to_string();
        let mut child = Command::new("wg")
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run wg pubkey")?;
        child
            .stdin
            .take()
            .context("wg pubkey's stdin")?
            .write_all(private.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("wg pubkey failed ({})", out.status);
        }
        let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Self { private, public })
    }

    /// Writes the private key to `path` (mode 0600); the path.
    pub fn write_private(&self, path: &Path) -> anyhow::Result<PathBuf> {
        write_secret(path, &format!("{}\n", self.private))?;
        Ok(path.to_path_buf())
    }
}

/// Writes `text` to `path` with mode 0600 (replacing it).
pub fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Waits until `interface`'s UAPI socket exists in `host`.
pub fn wait_socket(host: &Host, interface: &str) -> anyhow::Result<()> {
    let sock = host.path(&format!("/run/wireguard/{interface}.sock"));
    let start = Instant::now();
    while !sock.exists() {
        if start.elapsed() > SOCKET_WAIT {
            bail!(
                "host {}: no UAPI socket {} after {SOCKET_WAIT:?}",
                host.label,
                sock.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A `boringtun-cli` interface run in the foreground in a host (stops,
/// and its interface goes, on drop).
pub struct Tunnel {
    /// The interface name.
    pub interface: String,
    /// The boringtun process.
    pub process: HostProcess,
}

/// A peer for [`Tunnel::configure`].
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Its public key.
    pub public_key: String,
    /// Its underlay `address:port`, when known.
    pub endpoint: Option<String>,
    /// What is routed to it (also added as routes on the interface).
    pub allowed_ips: Vec<String>,
}

impl Tunnel {
    /// Starts `boringtun-cli -f <interface>` in `host` (log in `log_dir`) and
    /// waits for its UAPI socket.
    pub fn start(host: &Host, interface: &str, log_dir: &Path) -> anyhow::Result<Self> {
        let mut cmd = host.command("boringtun-cli");
        cmd.args(["-f", "--disable-drop-privileges", interface])
            .env("WG_SUDO", "true")
            .env("WG_LOG_LEVEL", "info");
        let log = log_dir.join(format!("{}-{interface}.log", host.label));
        let process = host.spawn(cmd, &log)?;
        wait_socket(host, interface)?;
        Ok(Self {
            interface: interface.to_string(),
            process,
        })
    }

    /// `wg set` the key, port and peers; the address (no DAD) and routes
    /// with `ip`; the interface up.
    pub fn configure(
        &self,
        host: &Host,
        key: &KeyPair,
        listen_port: u16,
        address: &str,
        peers: &[PeerSpec],
        secrets_dir: &Path,
    ) -> anyhow::Result<()> {
        let key_file =
            key.write_private(&secrets_dir.join(format!("{}-{}.key", host.label, self.interface)))?;
        let key_file = key_file.to_string_lossy().into_owned();
        let port = listen_port.to_string();
        host.run(
            "wg",
            &[
                "set",
                &self.interface,
                "private-key",
                &key_file,
                "listen-port",
                &port,
            ],
        )?;
        for p in peers {
            let allowed = p.allowed_ips.join(",");
            let mut args = vec!["set", &self.interface, "peer", &p.public_key];
            if let Some(e) = &p.endpoint {
                args.extend(["endpoint", e]);
            }
            args.extend(["persistent-keepalive", "25", "allowed-ips", &allowed]);
            host.run("wg", &args)?;
        }
        let family = if address.contains(':') { "-6" } else { "-4" };
        host.run(
            "ip",
            &[
                family,
                "addr",
                "add",
                address,
                "dev",
                &self.interface,
                "nodad",
            ],
        )?;
        host.run("ip", &["link", "set", &self.interface, "up"])?;
        for p in peers {
            for net in &p.allowed_ips {
                let family = if net.contains(':') { "-6" } else { "-4" };
                host.run(
                    "ip",
                    &[family, "route", "replace", net, "dev", &self.interface],
                )?;
            }
        }
        Ok(())
    }
}

/// A wg-quick configuration brought up with the real `wg-quick` in a host
/// (`boringtun-cli` as its userspace implementation). `down` on drop.
pub struct WgQuick {
    /// The interface (the file's stem).
    pub interface: String,
    /// The config file.
    pub file: PathBuf,
    host_pid: u32,
}

impl WgQuick {
    /// Writes `config` to `<dir>/<interface>.conf` (0600) and runs
    /// `wg-quick up` on it in `host`.
    pub fn up(host: &Host, interface: &str, config: &str, dir: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(
            interface.len() <= 15,
            "interface name {interface:?} is longer than 15 characters"
        );
        let file = dir.join(format!("{interface}.conf"));
        write_secret(&file, config)?;
        let path = file.to_string_lossy().into_owned();
        run(host
            .command("wg-quick")
            .args(["up", &path])
            .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "boringtun-cli")
            .env("WG_SUDO", "true"))
        .with_context(|| format!("wg-quick up in host {}", host.label))?;
        Ok(Self {
            interface: interface.to_string(),
            file,
            host_pid: host.holder_pid(),
        })
    }
}

impl Drop for WgQuick {
    fn drop(&mut self) {
        let _ = Command::new("nsenter")
            .arg("-t")
            .arg(self.host_pid.to_string())
            .args(["-m", "-n", "--", "wg-quick", "down"])
            .arg(&self.file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `config` (wg-quick text) with `[Interface]`'s private key set to
/// `private`: any line naming `PrivateKey` there (a placeholder or a
/// comment) is replaced.
pub fn with_private_key(config: &str, private: &str) -> String {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in config.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_ascii_lowercase();
            out.push(line.to_string());
            if section == "[interface]" {
                out.push(format!("PrivateKey = {private}"));
            }
            continue;
        }
        if section == "[interface]" && trimmed.contains("PrivateKey") {
            continue;
        }
        out.push(line.to_string());
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_key_replaces_a_placeholder() {
        let c = "[Interface]\n# PrivateKey = <your private key>\nAddress = fd00::9/128\n\n[Peer]\nPublicKey = abc\n";
        let out = with_private_key(c, "SECRET");
        assert_eq!(
            out,
            "[Interface]\nPrivateKey = SECRET\nAddress = fd00::9/128\n\n[Peer]\nPublicKey = abc\n"
        );
    }
}
