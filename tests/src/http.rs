//! A minimal HTTP/1.1 client for tests (one request per connection), so the
//! tests need no HTTP client dependency.

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: status code and JSON body (`Null` when the body is empty).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
}

/// Sends one request to `127.0.0.1:port`.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Answer> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).context("answer is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no header/body separator")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked answers are not supported by this test client");
    }
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).with_context(|| format!("body is not JSON: {body}"))?
    };
    Ok(Answer { status, body })
}

/// `POST /v1/actions/<name>` with a JSON value.
pub async fn action(
    port: u16,
    token: Option<&str>,
    name: &str,
    args: &Value,
) -> anyhow::Result<Answer> {
    request(
        port,
        "POST",
        &format!("/v1/actions/{name}"),
        token,
        args.to_string().as_bytes(),
    )
    .await
}
