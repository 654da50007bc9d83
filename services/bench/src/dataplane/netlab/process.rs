//! A long-running process inside a host: its own process group, killed
//! with SIGKILL (the whole group) on drop.

use anyhow::Context as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A process started by [`Host::spawn`](super::Host::spawn).
pub struct HostProcess {
    child: Option<Child>,
    /// Where its stdout and stderr go (appended).
    pub log: PathBuf,
}

impl HostProcess {
    /// Spawns `cmd` in a new process group, output appended to `log`.
    pub(super) fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", super::describe(&cmd)))?;
        Ok(Self {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// Its pid (also its process group), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL to its whole process group, then reaps it. A daemon it
    /// started in a new session (a `boringtun-cli` that daemonized) keeps
    /// running until its host is dropped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pgid) = i32::try_from(c.id()) {
                // SAFETY: kill has no memory preconditions; a gone group fails with ESRCH.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
