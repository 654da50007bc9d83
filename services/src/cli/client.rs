//! A small HTTP/1.1 client for the CLI (`powernode call`) and tests: one
//! request per connection, plain HTTP (put a TLS proxy in front of a remote
//! API), JSON in and out.

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
