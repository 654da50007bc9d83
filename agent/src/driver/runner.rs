//! How the k3s driver runs commands: [`SystemRunner`] on a node,
//! [`RecordingRunner`] in tests.
//!
//! A runner turns a non-zero exit into [`RuntimeError::Command`]; the command
//! shown in that error never carries a secret (`K3S_TOKEN`, the value after
//! `--token`, or any string the runner was told is secret).

use super::RuntimeError;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What replaces a secret in anything a runner reports.
pub const REDACTED: &str = "<redacted>";

/// What a finished command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit status (`-1` when the process was killed by a signal).
    pub status: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Runs a program with arguments and extra environment variables.
pub trait CommandRunner: Send {
    /// Runs `program` with `args` and `env` added to the inherited
    /// environment, waits for it, and returns its output. A non-zero exit or
    /// a failure to start is [`RuntimeError::Command`].
    fn run(
        &mut self,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<CommandOutput, RuntimeError>;
}

/// Runs commands for real with [`std::process::Command`].
#[derive(Debug, Clone)]
pub struct SystemRunner {
    secrets: Vec<String>,
    timeout: Duration,
}

impl SystemRunner {
    /// How long a command may run before it is killed: long enough for the
    /// installer to download k3s and for a first `systemctl restart k3s`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

    /// A runner with the default timeout and no extra secrets.
    pub fn new() -> Self {
        Self {
            secrets: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Also redacts these strings wherever they appear in a reported
    /// command or its stderr.
    pub fn with_secrets(mut self, secrets: impl IntoIterator<Item = String>) -> Self {
        self.secrets
            .extend(secrets.into_iter().filter(|s| !s.is_empty()));
        self
    }

    /// Kills a command still running after `timeout` (the command fails).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Default for SystemRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandRunner for SystemRunner {
    fn run(
        &mut self,
        program: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<CommandOutput, RuntimeError> {
        let failed = |detail: String| RuntimeError::Command {
            command: describe_command(program, args, env, &self.secrets),
            detail: redact(&detail, &self.secrets),
        };
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("could not start: {e}")))?;
        // Drain both pipes on their own threads so a chatty command cannot
        // fill a pipe and block while we wait for it.
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + self.timeout;
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
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(failed(format!("could not wait for it: {e}"))),
            }
        };
        let output = CommandOutput {
            status: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        check_status(program, args, env, &self.secrets, output)
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

/// Passes a zero exit through; turns any other into [`RuntimeError::Command`]
/// naming the (redacted) command, the status and the (redacted) stderr.
fn check_status(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    secrets: &[String],
    output: CommandOutput,
) -> Result<CommandOutput, RuntimeError> {
    if output.status == 0 {
        return Ok(output);
    }
    let stderr = output.stderr.trim();
    let detail = if stderr.is_empty() {
        format!("exit status {}", output.status)
    } else {
        format!("exit status {}: {stderr}", output.status)
    };
    // Values passed as secret arguments or environment may be echoed back.
    let mut all: Vec<String> = secrets.to_vec();
    all.extend(secret_values(args, env).map(str::to_owned));
    Err(RuntimeError::Command {
        command: describe_command(program, args, env, secrets),
        detail: redact(&detail, &all),
    })
}

/// Whether an environment variable holds a secret (`K3S_TOKEN`,
/// `K3S_AGENT_TOKEN`, anything named `…TOKEN…`, `…SECRET…`, `…PASSWORD…`).
fn is_secret_env(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|word| name.contains(word))
}

/// Flags whose value is a secret (`--token <t>` or `--token=<t>`).
const SECRET_FLAGS: &[&str] = &["--token", "--agent-token"];

/// The values in `args` / `env` that are secret by their position or name.
fn secret_values<'a>(
    args: &'a [String],
    env: &'a [(String, String)],
) -> impl Iterator<Item = &'a str> {
    let after_flag = args
        .windows(2)
        .filter(|w| SECRET_FLAGS.contains(&w[0].as_str()))
        .map(|w| w[1].as_str());
    let inline = args.iter().filter_map(|a| {
        let (flag, value) = a.split_once('=')?;
        SECRET_FLAGS.contains(&flag).then_some(value)
    });
    let env = env
        .iter()
        .filter(|(k, _)| is_secret_env(k))
        .map(|(_, v)| v.as_str());
    after_flag
        .chain(inline)
        .chain(env)
        .filter(|v| !v.is_empty())
}

/// Replaces every occurrence of each non-empty secret in `text` by
/// [`REDACTED`].
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), REDACTED);
    }
    out
}

/// A shell-like rendering of a command for errors and logs:
/// `NAME=value … program arg …`, with the values of secret variables, the
/// argument after `--token` (or of `--token=…`) and every string in
/// `secrets` replaced by [`REDACTED`].
pub fn describe_command(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    secrets: &[String],
) -> String {
    let mut words = Vec::with_capacity(env.len() + args.len() + 1);
    for (name, value) in env {
        let value = if is_secret_env(name) {
            REDACTED.to_owned()
        } else {
            redact(value, secrets)
        };
        words.push(format!("{name}={}", shell_quote(&value)));
    }
    words.push(shell_quote(&redact(program, secrets)));
    let mut hide_next = false;
    for arg in args {
        let shown = if hide_next {
            REDACTED.to_owned()
        } else {
            match arg.split_once('=') {
                Some((flag, _)) if SECRET_FLAGS.contains(&flag) => format!("{flag}={REDACTED}"),
                _ => redact(arg, secrets),
            }
        };
        hide_next = SECRET_FLAGS.contains(&arg.as_str());
        words.push(shell_quote(&shown));
    }
    words.join(" ")
}

/// Quotes a word for display the way a POSIX shell would need it (a
/// [`REDACTED`] placeholder alone does not make a word need quotes).
fn shell_quote(word: &str) -> String {
    let probe = word.replace(REDACTED, "x");
    let plain = !probe.is_empty()
        && probe
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@%[]".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// One call a [`RecordingRunner`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCommand {
    /// The program, e.g. `systemctl`.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The environment variables it was given (beyond the inherited ones).
    pub env: Vec<(String, String)>,
}

impl RecordedCommand {
    /// `program arg arg …`, space-joined without quoting (for assertions
    /// such as `call.line() == "systemctl restart k3s"`).
    pub fn line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The value of environment variable `name`, if given.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The side effect a [`RecordingRunner`] simulates for a call: gets the call
/// and the runner's root directory, returns the command's output (a non-zero
/// status makes the call fail like a real command would).
pub type RunHook = Box<dyn FnMut(&RecordedCommand, &Path) -> CommandOutput + Send>;

/// A runner that runs nothing: it records every call for the test to
/// inspect and answers status 0, or whatever its [`RunHook`] answers.
pub struct RecordingRunner {
    root: PathBuf,
    calls: Arc<Mutex<Vec<RecordedCommand>>>,
    on_run: Option<RunHook>,
}

impl RecordingRunner {
    /// A runner whose hook (if any) is handed `root` — the same root the
    /// driver under test writes under.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            calls: Arc::default(),
            on_run: None,
        }
    }

    /// Simulates side effects: `hook` runs for every call, after it is
    /// recorded, and its output is the call's output.
    pub fn on_run(
        mut self,
        hook: impl FnMut(&RecordedCommand, &Path) -> CommandOutput + Send + 'static,
    ) -> Self {
        self.on_run = Some(Box::new(hook));
        self
    }

    /// A handle on the recorded calls; keep it before boxing the runner.
    pub fn calls(&self) -> Arc<Mutex<Vec<RecordedCommand>>> {
        Arc::clone(&self.calls)
    }
}

impl std::fmt::Debug for RecordingRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRunner")
            .field("root", &self.root)
            .field("has_hook", &self.on_run.is_some())
            .finish_non_exhaustive()
    }
}

impl CommandRunner for RecordingRunner {
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
        // A poisoned lock only means another test thread panicked while
        // holding it; the list itself is still usable.
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(call.clone());
        let output = match self.on_run.as_mut() {
            Some(hook) => hook(&call, &self.root),
            None => CommandOutput::default(),
        };
        check_status(program, args, env, &[], output)
    }
}
