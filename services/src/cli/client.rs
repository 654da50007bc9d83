//! A small HTTP/1.1 client for the CLI (`powernode call`, the friendly
//! subcommands, `powernode demo`) and tests: one request per connection,
//! plain HTTP (put a TLS proxy in front of a remote API), JSON in and out.

use anyhow::{bail, Context};
use serde_json::Value;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
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

/// A connection to the operator API with one token.
#[derive(Debug, Clone)]
pub struct Api {
    url: String,
    token: String,
}

impl Api {
    /// A client for `url` (`http://host:port` or `host:port`) with `token`.
    pub fn new(url: &str, token: &str) -> Self {
        Self {
            url: url.to_string(),
            token: token.to_string(),
        }
    }

    /// The API address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same API with another token.
    pub fn with_token(&self, token: &str) -> Self {
        Self::new(&self.url, token)
    }

    /// Runs `action` with a raw JSON body; answers its `data`, or an
    /// [`ActionError`] (inside the `anyhow::Error`) when refused.
    pub async fn call_raw(&self, action: &str, body: &[u8]) -> anyhow::Result<Value> {
        let answer = request(
            &self.url,
            "POST",
            &format!("/v1/actions/{action}"),
            Some(&self.token),
            body,
        )
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

/// Sends one request to `host:port` (an `http://host:port` URL is accepted too).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Answer> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    if addr.starts_with("https://") {
        bail!("https is not supported by the built-in client; use http:// or a local TLS proxy");
    }
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the powernode API at http://{addr}"))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("answer is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked answers are not supported by the built-in client");
    }
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).with_context(|| format!("answer is not JSON: {body}"))?
    };
    Ok(Answer { status, body })
}
