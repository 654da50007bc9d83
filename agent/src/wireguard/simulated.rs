//! A simulated kernel behind a `RecordingRunner`: it answers the `ip`,
//! `wg` and `sysctl` commands the data plane runs and keeps the links,
//! peers, addresses and routes they made in memory. The simulated runtime's
//! agents (`powernode up --simulate-agents`, the demo) run their data plane
//! on it, so configs are applied and reported like on a real node without
//! touching the host; tests assert both the commands and the state.

use crate::driver::runner::{CommandOutput, CommandRunner, RecordedCommand, RecordingRunner};
use crate::driver::RuntimeError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One WireGuard link.
#[derive(Debug, Clone, Default)]
pub struct Link {
    pub up: bool,
    /// Made by a userspace implementation: like boringtun 0.7, it refuses
    /// to modify an existing peer in place.
    pub userspace: bool,
    pub listen_port: Option<String>,
    pub private_key: Option<String>,
    /// Public key → (endpoint, allowed ips).
    pub peers: BTreeMap<String, (Option<String>, Vec<String>)>,
    pub addrs: BTreeSet<String>,
    /// `(family, destination)`; kernel routes are marked by the test.
    pub routes: BTreeSet<(String, String)>,
    pub kernel_routes: BTreeSet<(String, String)>,
}

/// The fake kernel's state.
#[derive(Debug, Default)]
pub struct Kernel {
    pub links: BTreeMap<String, Link>,
    /// Whether `ip link add … type wireguard` works.
    pub has_wireguard: bool,
    pub sysctls: BTreeSet<String>,
}

pub type Shared = Arc<Mutex<Kernel>>;

fn ok(stdout: String) -> CommandOutput {
    CommandOutput {
        status: 0,
        stdout,
        stderr: String::new(),
    }
}

fn fail(stderr: &str) -> CommandOutput {
    CommandOutput {
        status: 1,
        stdout: String::new(),
        stderr: stderr.to_owned(),
    }
}

/// A runner backed by `kernel`, and the handle on its recorded calls. A
/// userspace WireGuard (`…boringtun-cli`) makes the link and its UAPI
/// socket in `socket_dir`.
pub fn runner(
    kernel: &Shared,
    socket_dir: &std::path::Path,
) -> (RecordingRunner, Arc<Mutex<Vec<RecordedCommand>>>) {
    let k = kernel.clone();
    let runner = RecordingRunner::new(socket_dir).on_run(move |call, root| {
        simulate(&mut k.lock().unwrap_or_else(|e| e.into_inner()), call, root)
    });
    let calls = runner.calls();
    (runner, calls)
}

/// A runner on a simulated kernel of its own that keeps no record of the
/// calls (for long-running simulated agents): a node whose kernel has a
/// WireGuard module, so interfaces are made with `ip link add`.
#[derive(Debug)]
pub struct SimulatedRunner {
    kernel: Kernel,
    socket_dir: PathBuf,
}

impl SimulatedRunner {
    /// A simulated node whose userspace WireGuard sockets (if one is ever
    /// started) go to `socket_dir`.
    pub fn new(socket_dir: impl Into<PathBuf>) -> Self {
        Self {
            kernel: Kernel {
                has_wireguard: true,
                ..Kernel::default()
            },
            socket_dir: socket_dir.into(),
        }
    }
}

impl CommandRunner for SimulatedRunner {
    fn run(
        &mut self,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<CommandOutput, RuntimeError> {
        let call = RecordedCommand {
            program: program.to_owned(),
            args: args.to_vec(),
            env: env.to_vec(),
        };
        let out = simulate(&mut self.kernel, &call, &self.socket_dir);
        if out.status == 0 {
            Ok(out)
        } else {
            Err(RuntimeError::Command {
                command: call.line(),
                detail: out.stderr,
            })
        }
    }
}

/// One command against `k`: a userspace WireGuard start, a `wg show …
/// listen-port` (answered only through a visible socket for a userspace
/// link), or any other command [`answer`] knows.
fn simulate(k: &mut Kernel, call: &RecordedCommand, root: &Path) -> CommandOutput {
    if call.program.ends_with("boringtun-cli") {
        let name = call.args.last().cloned().unwrap_or_default();
        k.links.insert(
            name.clone(),
            Link {
                userspace: true,
                ..Link::default()
            },
        );
        return match std::fs::write(root.join(format!("{name}.sock")), b"") {
            Ok(()) => ok(String::new()),
            Err(e) => fail(&format!("cannot make the UAPI socket: {e}")),
        };
    }
    if let ("wg", [show, name, port]) = (call.program.as_str(), call.args.as_slice()) {
        if show == "show" && port == "listen-port" {
            // A userspace link answers only through its visible socket.
            return match k.links.get(name) {
                Some(l) if !l.userspace || root.join(format!("{name}.sock")).exists() => {
                    ok("51820\n".into())
                }
                _ => fail("Unable to access interface: Protocol not supported"),
            };
        }
    }
    answer(k, call)
}

/// The calls made so far as lines, and forgets them.
pub fn drain(calls: &Arc<Mutex<Vec<RecordedCommand>>>) -> Vec<String> {
    std::mem::take(&mut *calls.lock().unwrap_or_else(|e| e.into_inner()))
        .into_iter()
        .map(|c| c.line())
        .collect()
}

fn answer(k: &mut Kernel, call: &RecordedCommand) -> CommandOutput {
    let a: Vec<&str> = call.args.iter().map(String::as_str).collect();
    match (call.program.as_str(), a.as_slice()) {
        ("ip", ["link", "show", name]) => match k.links.get(*name) {
            Some(l) => ok(format!(
                "7: {name}: <POINTOPOINT,NOARP{}> mtu 1420\n",
                if l.up { ",UP,LOWER_UP" } else { "" }
            )),
            None => fail(&format!("Device \"{name}\" does not exist.")),
        },
        ("ip", ["link", "add", name, "type", "wireguard"]) => {
            if !k.has_wireguard {
                return fail("Error: Unknown device type.");
            }
            k.links.insert((*name).to_owned(), Link::default());
            ok(String::new())
        }
        ("ip", ["link", "del", name]) => match k.links.remove(*name) {
            Some(_) => ok(String::new()),
            None => fail("Cannot find device"),
        },
        ("ip", ["link", "set", name, "up"]) => match k.links.get_mut(*name) {
            Some(l) => {
                l.up = true;
                ok(String::new())
            }
            None => fail("Cannot find device"),
        },
        ("ip", ["-6", "addr", op, cidr, "dev", name]) => {
            let Some(l) = k.links.get_mut(*name) else {
                return fail("Cannot find device");
            };
            match *op {
                "replace" => {
                    l.addrs.insert((*cidr).to_owned());
                }
                "del" if l.addrs.remove(*cidr) => {}
                "del" => return fail("RTNETLINK answers: Cannot assign requested address"),
                _ => return fail("bad addr op"),
            }
            ok(String::new())
        }
        ("ip", ["-6", "addr", "show", "dev", name]) => match k.links.get(*name) {
            Some(l) => ok(l
                .addrs
                .iter()
                .map(|a| format!("    inet6 {a} scope global \n       valid_lft forever\n"))
                .chain(std::iter::once(
                    "    inet6 fe80::1/64 scope link \n".to_owned(),
                ))
                .collect()),
            None => fail("Cannot find device"),
        },
        ("ip", [family, "route", "show", "dev", name]) => match k.links.get(*name) {
            Some(l) => {
                let mut out = String::new();
                for (f, d) in &l.kernel_routes {
                    if f == family {
                        out += &format!("{d} proto kernel metric 256 pref medium\n");
                    }
                }
                for (f, d) in &l.routes {
                    if f == family {
                        // `ip` prints a host route without its length.
                        let shown = d.trim_end_matches("/128").trim_end_matches("/32");
                        out += &format!("{shown} metric 1024 pref medium\n");
                    }
                }
                ok(out)
            }
            None => fail("Cannot find device"),
        },
        ("ip", [family, "route", op, dst, "dev", name]) => {
            let Some(l) = k.links.get_mut(*name) else {
                return fail("Cannot find device");
            };
            let key = ((*family).to_owned(), (*dst).to_owned());
            match *op {
                "replace" => {
                    l.routes.insert(key);
                }
                "del" if l.routes.remove(&key) => {}
                "del" => return fail("RTNETLINK answers: No such process"),
                _ => return fail("bad route op"),
            }
            ok(String::new())
        }
        ("wg", ["show", name, "peers"]) => match k.links.get(*name) {
            Some(l) => ok(l.peers.keys().map(|p| format!("{p}\n")).collect()),
            None => fail("Unable to access interface: No such device"),
        },
        ("wg", ["set", name, rest @ ..]) => {
            let Some(l) = k.links.get_mut(*name) else {
                return fail("Unable to access interface: No such device");
            };
            let mut i = 0;
            let mut peer: Option<String> = None;
            while i < rest.len() {
                let value = rest.get(i + 1).copied();
                if rest[i] == "remove" {
                    if let Some(p) = peer.take() {
                        l.peers.remove(&p);
                    }
                    i += 1;
                    continue;
                }
                let Some(value) = value else {
                    return fail(&format!("Invalid argument: {} needs a value", rest[i]));
                };
                match rest[i] {
                    "listen-port" => l.listen_port = Some(value.to_owned()),
                    "private-key" => l.private_key = Some(value.to_owned()),
                    "peer" => {
                        let removing = rest.get(i + 2) == Some(&"remove");
                        if l.userspace && !removing && l.peers.contains_key(value) {
                            return fail("Unable to modify interface: Protocol error");
                        }
                        l.peers.entry(value.to_owned()).or_default();
                        peer = Some(value.to_owned());
                    }
                    "persistent-keepalive" => {}
                    "endpoint" | "allowed-ips" => {
                        let Some(pk) = peer.clone() else {
                            return fail(&format!("Invalid argument: {} before any peer", rest[i]));
                        };
                        if rest[i] == "allowed-ips" {
                            let ips: Vec<String> = value
                                .split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_owned)
                                .collect();
                            // An allowed IP belongs to one peer only.
                            for (_, (_, other)) in l.peers.iter_mut() {
                                other.retain(|x| !ips.contains(x));
                            }
                            l.peers.entry(pk).or_default().1 = ips;
                        } else {
                            l.peers.entry(pk).or_default().0 = Some(value.to_owned());
                        }
                    }
                    other => return fail(&format!("Invalid argument: {other}")),
                }
                i += 2;
            }
            ok(String::new())
        }
        ("sysctl", ["-w", setting]) => {
            k.sysctls.insert((*setting).to_owned());
            ok(String::new())
        }
        _ => fail(&format!(
            "the simulated kernel does not know `{}`",
            call.line()
        )),
    }
}
