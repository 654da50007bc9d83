//! kubectl-grade verbs (issue 17 item 3): `get`, `describe`, `create`,
//! `delete`, `apply -f`, `wait`, `completion`, `man`, generated from the
//! action table.
//!
//! * [`kinds`] — the object kinds: list action, name field, columns;
//! * [`flags`] — `create`'s flags from an action's argument schema;
//! * [`create`], [`get`], [`delete`], [`apply`], [`wait`], [`gen`].

pub mod apply;
pub mod create;
pub mod delete;
pub mod flags;
pub mod gen;
pub mod get;
pub mod kinds;
pub mod kubeconfig;
pub mod wait;

use crate::api_args::parse_duration;
use crate::ApiArgs;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use std::path::PathBuf;
use std::time::Duration;

/// The long names of the global options (no generated flag may take one).
pub const GLOBAL_LONGS: &[&str] = &[
    "url",
    "token",
    "context",
    "ca-cert",
    "timeout",
    "data-dir",
    "output",
    "no-headers",
    "log-format",
    "help",
];

/// The kubectl-grade verbs (flattened into the top-level commands).
#[derive(Debug, clap::Subcommand)]
pub enum KubeCommand {
    /// Show objects: `powernode get clusters`, `powernode get cluster prod`
    /// (kinds: clusters (cl), templates (tmpl), nodes (no), instances
    /// (inst), networks (net), peers, grants, tokens, approvals,
    /// executions (skills)).
    Get {
        /// Object kind.
        kind: String,
        /// Object name or id.
        name: Option<String>,
        /// Re-print whenever the list changes, until Ctrl-C.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Ended objects too (decommissioned clusters, decided approvals).
        #[arg(long, short = 'A')]
        all: bool,
    },
    /// One object with what relates to it: `powernode describe cluster prod`.
    Describe {
        /// Object kind.
        kind: String,
        /// Object name or id.
        name: String,
    },
    /// Create an object, with flags generated from its action's arguments:
    /// `powernode create template web`, `powernode create node web-1
    /// --template web --memory-mb 2048`, `powernode create cluster web-1
    /// --template web --network tut --wait`. `powernode create KIND --help`
    /// lists a kind's flags (kinds: account, template, node, instance, network,
    /// peer, grant, token, moduleversion, assignment, cluster, worker).
    #[command(disable_help_flag = true)]
    Create {
        /// Object kind (`--help`: this help and the kinds).
        #[arg(allow_hyphen_values = true)]
        kind: String,
        /// NAME and the kind's flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Delete an object: a cluster is decommissioned (type its name, or
    /// --yes), an instance terminated, a grant or token revoked, an
    /// approval rejected.
    Delete {
        /// Object kind.
        kind: String,
        /// Object name or id.
        name: String,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Why (an approval's rejection).
        #[arg(long)]
        reason: Option<String>,
        /// Wait until the object is gone or ended.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (default: --timeout, else 2m).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        wait_timeout: Option<Duration>,
    },
    /// Run a YAML or JSON list of actions (`- action: NAME` / `args:`),
    /// all validated before the first is sent; `${N.path}` refers to the
    /// answer of the N-th action.
    Apply {
        /// The file (`-`: stdin).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// Validate only: send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Wait until an object meets a condition: `powernode wait
    /// cluster/prod --for status=active`, `--for delete`.
    Wait {
        /// KIND/NAME, e.g. `cluster/prod`.
        target: String,
        /// `FIELD=VALUE` (e.g. `status=active`) or `delete`.
        #[arg(long = "for", value_name = "CONDITION")]
        condition: wait::Condition,
        /// How long to wait (default: --timeout, else 2m).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        wait_timeout: Option<Duration>,
    },
    /// Print a shell completion script: `powernode completion bash >
    /// /etc/bash_completion.d/powernode`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Man pages: the top page on stdout, or every subcommand's page into
    /// --dir.
    Man {
        /// Write `powernode.1`, `powernode-get.1`, … here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `cmd` with the global options (they may follow a `create KIND`).
pub fn with_globals(cmd: clap::Command) -> clap::Command {
    ApiArgs::augment_args(cmd)
}

/// The global options, overridden by those given on `m`'s command line.
pub fn merge_globals(global: &ApiArgs, m: &ArgMatches) -> anyhow::Result<ApiArgs> {
    let given = ApiArgs::from_arg_matches(m)?;
    let here = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    let mut out = global.clone();
    if here("url") {
        out.url = given.url;
    }
    if here("token") {
        out.token = given.token;
    }
    if here("context") {
        out.context = given.context;
    }
    if here("ca_cert") {
        out.ca_cert = given.ca_cert;
    }
    if here("timeout") {
        out.timeout = given.timeout;
    }
    if here("data_dir") {
        out.data_dir = given.data_dir;
    }
    if here("output") {
        out.output = given.output;
    }
    if here("no_headers") {
        out.no_headers = true;
    }
    Ok(out)
}

/// How long a wait lasts: its own flag, else the global --timeout, else
/// [`wait::DEFAULT_WAIT`].
pub fn wait_timeout(own: Option<Duration>, api: &ApiArgs) -> Duration {
    own.or(api.timeout).unwrap_or(wait::DEFAULT_WAIT)
}

/// Runs a verb.
pub async fn run(api: &ApiArgs, cmd: KubeCommand) -> anyhow::Result<()> {
    match cmd {
        KubeCommand::Get {
            kind,
            name,
            watch,
            all,
        } => get::get(api, &kind, name.as_deref(), watch, all).await,
        KubeCommand::Describe { kind, name } => get::describe(api, &kind, &name).await,
        KubeCommand::Create { kind, args } => create::run(api, &kind, args).await,
        KubeCommand::Delete {
            kind,
            name,
            yes,
            reason,
            wait,
            wait_timeout: own,
        } => {
            let wait = wait.then(|| wait_timeout(own, api));
            delete::run(api, &kind, &name, yes, reason, wait).await
        }
        KubeCommand::Apply { file, dry_run } => apply::run(api, &file, dry_run).await,
        KubeCommand::Wait {
            target,
            condition,
            wait_timeout: own,
        } => {
            let client = api.client()?;
            wait::run(
                &client,
                api.output,
                &target,
                &condition,
                wait_timeout(own, api),
            )
            .await
        }
        KubeCommand::Completion { shell } => gen::completion(shell),
        KubeCommand::Man { dir } => gen::man(dir.as_deref()),
    }
}
