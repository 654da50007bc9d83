//! [`QuickRunner`]: runs `wg` and `ip` for the data plane. Unlike the k3s
//! driver's [`SystemRunner`](crate::driver::runner::SystemRunner), which
//! polls a long-running installer every 50 ms, it checks a short command
//! every millisecond or so: applying a config is on the failover critical
//! path, and a `wg set` takes a few milliseconds.

use crate::driver::runner::{describe_command, CommandOutput, CommandRunner};
use crate::driver::RuntimeError;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs short commands for real, killing one still running after its timeout.
#[derive(Debug, Clone)]
pub struct QuickRunner {
    timeout: Duration,
}

impl QuickRunner {
    /// How long a `wg` or `ip` command may run.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A runner with [`Self::DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl Default for QuickRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandRunner for QuickRunner {
    fn run(
        &mut self,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<CommandOutput, RuntimeError> {
        let failed = |detail: String| RuntimeError::Command {
            command: describe_command(program, args, env, &[]),
            detail,
        };
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("could not start: {e}")))?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_micros(200);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(format!(
                        "still running after {}s, killed",
                        self.timeout.as_secs()
                    )));
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(e) => return Err(failed(format!("could not wait for it: {e}"))),
            }
        };
        let output = CommandOutput {
            status: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        if output.status == 0 {
            return Ok(output);
        }
        let stderr = output.stderr.trim();
        Err(failed(if stderr.is_empty() {
            format!("exit status {}", output.status)
        } else {
            format!("exit status {}: {stderr}", output.status)
        }))
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
