//! Threads inside a network namespace, and a TCP forwarder from a
//! namespace to the test machine.

use anyhow::{bail, Context as _};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;

/// Runs `f` on a new thread that first joins network namespace `ns`
/// (`/run/netns/<ns>`); its result. Sockets `f` opens belong to `ns`, and so
/// does a tokio runtime `f` builds and drives (current-thread).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `file` is an open namespace file for the whole call;
            // setns changes only this thread's network namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns into {path}: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in namespace {ns} panicked"))?
    })
}

/// Forwards TCP connections accepted inside a namespace to an address on
/// the test machine; stops (and drops every forwarded connection) on drop.
pub struct TcpForward {
    /// Where it listens, inside the namespace.
    pub listen: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpForward {
    /// Binds `listen` inside `ns` and forwards to `target`. Call inside a
    /// tokio runtime.
    pub fn start(ns: &str, listen: SocketAddr, target: SocketAddr) -> anyhow::Result<Self> {
        let std_listener = in_netns(ns, || std::net::TcpListener::bind(listen))?
            .with_context(|| format!("binding {listen} in namespace {ns}"))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                conns.spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self { listen, task })
    }
}

impl Drop for TcpForward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `f` on a new thread inside network namespace `ns` (as
/// [`in_netns`], without waiting for it); joining gives its result.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    Ok(std::thread::spawn(move || {
        // SAFETY: `file` is an open namespace file; setns changes only this
        // thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns into {path}: {}", std::io::Error::last_os_error());
        }
        Ok(f())
    }))
}
