//! `powernode context add|use|list|current|delete` (issue 17 item 2): named
//! APIs with their token and pinned CA, in the config file ([`file`]).
//!
//! `context add` with an https URL and no `--ca-cert` trusts on first use,
//! as ssh does: it fetches the chain the API presents, shows the CA's
//! subject and fingerprint, asks `Trust this CA? [y/N]` on a terminal
//! (`--yes` accepts; without a terminal and without `--yes` it refuses),
//! then pins the CA in the context and checks the token with one call.

pub mod file;

use crate::output::{emit, print_data, Format, Table};
use crate::ApiArgs;
use anyhow::{bail, Context as _};
use file::Context;
use powernode_client::{cert_info, Api, ClientConfig};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

/// `powernode context`.
#[derive(Debug, clap::Args)]
pub struct ContextArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ContextCommand,
}

/// Subcommands of `powernode context`.
#[derive(Debug, clap::Subcommand)]
pub enum ContextCommand {
    /// Add (or replace) a context: `context add prod --url https://host:8080
    /// --token-file prod.token` (the global --url and --ca-cert). Without
    /// --ca-cert the API's CA is shown and pinned once you trust it.
    Add {
        /// Its name.
        name: String,
        /// Read the token from this file.
        #[arg(long, value_name = "FILE", conflicts_with = "token_stdin")]
        token_file: Option<PathBuf>,
        /// Read the token from stdin.
        #[arg(long)]
        token_stdin: bool,
        /// Trust the CA the API presents without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Make a context the current one.
    Use {
        /// Its name.
        name: String,
    },
    /// List the contexts (the current one marked `*`).
    List,
    /// Print the current context's name.
    Current,
    /// Delete a context.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Runs `powernode context …`.
pub async fn run(api: &ApiArgs, args: ContextArgs) -> anyhow::Result<()> {
    let path = file::path()?;
    let mut config = file::load(&path)?;
    match args.command {
        ContextCommand::Add {
            name,
            token_file,
            token_stdin,
            yes,
        } => {
            let context = add(api, &name, token_file, token_stdin, yes).await?;
            let first = config.current.is_none();
            config.contexts.retain(|c| c.name != name);
            config.contexts.push(context);
            if first {
                config.current = Some(name.clone());
            }
            file::save(&path, &config)?;
            if first {
                eprintln!(
                    "Context `{name}` added to {} and made current.",
                    path.display()
                );
            } else {
                eprintln!(
                    "Context `{name}` added to {} (`powernode context use {name}` to make it current).",
                    path.display()
                );
            }
        }
        ContextCommand::Use { name } => {
            config.require(&name, &path)?;
            config.current = Some(name.clone());
            file::save(&path, &config)?;
            eprintln!("Current context: {name}.");
        }
        ContextCommand::List => list(&config, api.output),
        ContextCommand::Current => match &config.current {
            Some(name) => println!("{name}"),
            None => bail!(
                "no current context in {} (`powernode context use NAME`)",
                path.display()
            ),
        },
        ContextCommand::Delete { name } => {
            config.require(&name, &path)?;
            config.contexts.retain(|c| c.name != name);
            if config.current.as_deref() == Some(name.as_str()) {
                config.current = None;
            }
            file::save(&path, &config)?;
            eprintln!("Context `{name}` deleted.");
        }
    }
    Ok(())
}

fn list(config: &file::Config, format: Format) {
    let current = config.current.as_deref();
    match format {
        Format::Json | Format::Yaml => {
            let rows: Vec<_> = config
                .contexts
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "url": c.url,
                        "ca_fingerprint": c.ca_fingerprint,
                        "current": Some(c.name.as_str()) == current,
                    })
                })
                .collect();
            print_data(format, &json!(rows));
        }
        Format::Name => {
            for c in &config.contexts {
                println!("context/{}", c.name);
            }
        }
        Format::Table | Format::Wide => {
            let mut table = Table::new(&["CURRENT", "NAME", "URL", "CA"]);
            for c in &config.contexts {
                table.row(vec![
                    if Some(c.name.as_str()) == current {
                        "*"
                    } else {
                        ""
                    }
                    .to_string(),
                    c.name.clone(),
                    c.url.clone(),
                    c.ca_fingerprint.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            emit(
                &table
                    .render("No contexts (`powernode context add NAME --url URL --token-file F`)."),
            );
        }
    }
}

/// The context `context add` makes: token read, CA pinned (given, or
/// trusted on first use), token checked with one call.
async fn add(
    api: &ApiArgs,
    name: &str,
    token_file: Option<PathBuf>,
    token_stdin: bool,
    yes: bool,
) -> anyhow::Result<Context> {
    if name.trim().is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("{name:?} cannot be a context name (no spaces or control characters)");
    }
    let url = api
        .url
        .clone()
        .context("`context add` needs the API's address: --url https://host:8080")?;
    let token = match (token_file, token_stdin, &api.token) {
        (Some(f), _, _) => std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read the token file {}", f.display()))?,
        (None, true, _) => {
            let mut t = String::new();
            std::io::stdin().read_to_string(&mut t)?;
            t
        }
        (None, false, Some(t)) => t.clone(),
        (None, false, None) => {
            bail!("`context add` needs a token: --token-file F or --token-stdin")
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("the token is empty");
    }
    let timeout = api.timeout.unwrap_or(Duration::from_secs(10));
    let https = url.trim().to_ascii_lowercase().starts_with("https://");
    let ca_pem = match (&api.ca_cert, https) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the CA file {}", path.display()))?,
        ),
        (None, true) => Some(trust_on_first_use(&url, timeout, yes).await?),
        (None, false) => None,
    };
    let ca_fingerprint = match &ca_pem {
        Some(pem) => Some(first_fingerprint(pem)?),
        None => None,
    };
    let mut config = ClientConfig::new(&url, &token).with_timeout(timeout);
    if let Some(pem) = &ca_pem {
        config = config.with_pinned_ca(name, pem.clone());
    }
    let client = Api::from_config(&config)?;
    let who = client
        .call("system_whoami", &json!({}))
        .await
        .with_context(|| {
            format!("cannot check the token against {url}; the context is not saved")
        })?;
    let account = who["account_id"].as_str().unwrap_or("?");
    match who["account_name"].as_str() {
        Some(n) => eprintln!("The token works: account {account} ({n})."),
        None => eprintln!("The token works: account {account}."),
    }
    Ok(Context {
        name: name.to_string(),
        url,
        token,
        ca_pem,
        ca_fingerprint,
    })
}

fn first_fingerprint(pem: &str) -> anyhow::Result<String> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).context("no CERTIFICATE in the CA PEM")? + begin.len();
    let end = pem[start..]
        .find("-----END CERTIFICATE-----")
        .context("the CA PEM is cut short")?;
    let b64: String = pem[start..start + end].split_whitespace().collect();
    let der = data_encoding::BASE64
        .decode(b64.as_bytes())
        .context("the CA PEM is not valid base64")?;
    Ok(powernode_client::fingerprint(&der))
}

/// Fetches the chain of `url`, shows its CA and asks to trust it; the CA
/// as PEM.
async fn trust_on_first_use(url: &str, timeout: Duration, yes: bool) -> anyhow::Result<String> {
    let chain = powernode_client::probe(url, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("cannot fetch the API's certificate: {e}"))?;
    let ca = chain.last().context("the API presented no certificate")?;
    let info = cert_info(ca).map_err(|e| anyhow::anyhow!("the API's CA certificate: {e}"))?;
    if !info.is_ca {
        bail!(
            "the API at {url} sent only its own certificate, not the CA that signed it \
             ({}); pass its CA with --ca-cert",
            info.subject
        );
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "The API at {url} presents a certificate signed by this CA:"
    )?;
    writeln!(err, "  subject:     {}", info.subject)?;
    writeln!(err, "  fingerprint: {}", info.fingerprint)?;
    writeln!(err, "  expires:     {}", info.not_after)?;
    writeln!(
        err,
        "Compare the fingerprint with the one the server logged (`API listening on https://… (CA sha256:…)`)."
    )?;
    if !yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!(
                "refusing to trust this CA without confirmation: stdin is not a terminal; check \
                 the fingerprint and pass --yes, or pass the CA file with --ca-cert"
            );
        }
        write!(err, "Trust this CA? [y/N] ")?;
        err.flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            bail!("not trusted; no context added");
        }
    }
    Ok(pem_of(ca))
}

/// A DER certificate as PEM text.
fn pem_of(der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
