//! A small HTTP/1.1 client for the CLI (`powernode call`, the friendly
//! subcommands, `powernode demo`), benchmarks and tests: plain HTTP (put a
//! TLS proxy in front of a remote API), JSON in and out. [`Api`] keeps its
//! connections open between calls (HTTP keep-alive); [`request`] is one
//! request on a connection of its own.

pub mod download;
pub mod sse;

use anyhow::{bail, Context};
use serde_json::Value;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where the API is and who we are: global options of every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The API address (client commands).
    #[arg(
        long,
        env = "POWERNODE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// Operator token (client commands); defaults to `<data-dir>/admin.token`.
    #[arg(long, env = "POWERNODE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl ApiArgs {
    /// The client these options select; without a token, the admin token
    /// `powernode up` wrote into `data_dir`.
    pub fn connect(&self, data_dir: &Path) -> anyhow::Result<Api> {
        let token = match &self.token {
            Some(t) => t.trim().to_string(),
            None => {
                let path = data_dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no --token / POWERNODE_TOKEN and cannot read {}",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Api::new(&self.url, &token))
    }
}

/// An action the API refused or failed: its `{"error": {code, message}}`.
/// Displays as `<code> (<status>): <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    /// HTTP status.
    pub status: u16,
    /// The stable error code, e.g. `already_decommissioned`.
    pub code: String,
    /// The human message.
    pub message: String,
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Both come from the server: shown with control characters escaped.
        let printable = |t: &str| powernode_events::text::escape_unsafe(t).into_owned();
        write!(
            f,
            "{} ({}): {}",
            printable(&self.code),
            self.status,
            printable(&self.message)
        )
    }
}

impl std::error::Error for ActionError {}

impl ActionError {
    /// The action error inside `e`, if that is what it is.
    pub fn of(e: &anyhow::Error) -> Option<&ActionError> {
        e.downcast_ref::<ActionError>()
    }

    /// True when `e` is an action error with this code.
    pub fn is(e: &anyhow::Error, code: &str) -> bool {
        Self::of(e).is_some_and(|a| a.code == code)
    }
}

/// A connection to the operator API with one token. Clones share their
/// idle connections.
#[derive(Debug, Clone)]
pub struct Api {
    url: String,
    token: String,
    idle: Arc<Mutex<Vec<BufReader<TcpStream>>>>,
}

/// Idle connections an [`Api`] keeps for reuse.
const MAX_IDLE: usize = 64;

impl Api {
    /// A client for `url` (`http://host:port` or `host:port`) with `token`.
    pub fn new(url: &str, token: &str) -> Self {
        Self {
            url: url.to_string(),
            token: token.to_string(),
            idle: Arc::default(),
        }
    }

    /// One request on a kept-alive connection (a new one when none is idle).
    /// A reused connection the server has closed meanwhile answers nothing
    /// at all: the request was never read, so it is sent again on a new one.
    async fn send(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        let addr = host_port(&self.url)?;
        let reused = self.idle.lock().expect("idle connections lock").pop();
        if let Some(mut conn) = reused {
            match exchange(&mut conn, addr, method, path, Some(&self.token), body, true).await {
                Ok((answer, keep)) => {
                    self.keep(conn, keep);
                    return Ok(answer);
                }
                Err(Exchange::NothingRead) => {}
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        let mut conn = BufReader::new(connect(addr).await?);
        match exchange(&mut conn, addr, method, path, Some(&self.token), body, true).await {
            Ok((answer, keep)) => {
                self.keep(conn, keep);
                Ok(answer)
            }
            Err(Exchange::NothingRead) => {
                bail!("the powernode API at http://{addr} closed the connection without answering")
            }
            Err(Exchange::Failed(e)) => Err(e),
        }
    }

    fn keep(&self, conn: BufReader<TcpStream>, keep: bool) {
        let mut idle = self.idle.lock().expect("idle connections lock");
        if keep && idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// The API address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The same API with another token (sharing the idle connections).
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// Runs `action` with a raw JSON body; answers its `data`, or an
    /// [`ActionError`] (inside the `anyhow::Error`) when refused.
    pub async fn call_raw(&self, action: &str, body: &[u8]) -> anyhow::Result<Value> {
        let answer = self
            .send("POST", &format!("/v1/actions/{action}"), body)
            .await?;
        if answer.status == 200 {
            return Ok(answer.body.get("data").cloned().unwrap_or(Value::Null));
        }
        let error = &answer.body["error"];
        Err(ActionError {
            status: answer.status,
            code: error["code"].as_str().unwrap_or("error").to_string(),
            message: error["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| answer.body.to_string()),
        }
        .into())
    }

    /// Runs `action` with `args` (a JSON object); see [`Api::call_raw`].
    pub async fn call(&self, action: &str, args: &Value) -> anyhow::Result<Value> {
        self.call_raw(action, args.to_string().as_bytes()).await
    }
}

/// An answer: status code and JSON body (`Null` when the body is empty).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
}

/// Sends one request to `host:port` (an `http://host:port` URL is accepted
/// too) on a connection of its own.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Answer> {
    let addr = host_port(addr)?;
    let mut conn = BufReader::new(connect(addr).await?);
    match exchange(&mut conn, addr, method, path, token, body, false).await {
        Ok((answer, _)) => Ok(answer),
        Err(Exchange::NothingRead) => {
            bail!("the powernode API at http://{addr} closed the connection without answering")
        }
        Err(Exchange::Failed(e)) => Err(e),
    }
}

fn host_port(url: &str) -> anyhow::Result<&str> {
    if url.starts_with("https://") {
        bail!("https is not supported by the built-in client; use http:// or a local TLS proxy");
    }
    Ok(url.trim_start_matches("http://").trim_end_matches('/'))
}

async fn connect(addr: &str) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the powernode API at http://{addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// How one request/answer exchange failed.
enum Exchange {
    /// The connection ended before any byte of an answer.
    NothingRead,
    /// Anything else.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Exchange {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

/// Writes one request and reads its answer (by `Content-Length`, or to the
/// end of the stream). Answers whether the connection may be reused.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    keep_alive: bool,
) -> Result<(Answer, bool), Exchange> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: {connection}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    if conn.get_mut().write_all(&out).await.is_err() {
        return Err(Exchange::NothingRead);
    }
    let mut status_line = String::new();
    match conn.read_line(&mut status_line).await {
        Ok(0) | Err(_) => return Err(Exchange::NothingRead),
        Ok(_) => {}
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let mut length: Option<usize> = None;
    let mut reusable = keep_alive;
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(anyhow::anyhow!("malformed HTTP answer: headers cut short").into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                length = Some(value.parse().context("malformed Content-Length")?);
            }
            "transfer-encoding" if value.eq_ignore_ascii_case("chunked") => {
                return Err(anyhow::anyhow!(
                    "chunked answers are not supported by the built-in client"
                )
                .into());
            }
            "connection" if value.eq_ignore_ascii_case("close") => reusable = false,
            _ => {}
        }
    }
    let mut raw = Vec::new();
    match length {
        Some(n) => {
            raw.resize(n, 0);
            conn.read_exact(&mut raw).await?;
        }
        None => {
            conn.read_to_end(&mut raw).await?;
            reusable = false;
        }
    }
    let text = String::from_utf8(raw).context("answer is not UTF-8")?;
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).with_context(|| format!("answer is not JSON: {text}"))?
    };
    Ok((Answer { status, body }, reusable))
}
