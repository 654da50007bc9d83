//! HTTP helpers for API tests, on the one HTTP client (`powernode-client`):
//! plain requests, the path sent as given (action names unencoded).

pub use powernode_client::Answer;
use serde_json::Value;

/// Sends one request to `127.0.0.1:port`.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Answer> {
    Ok(powernode_client::request(&format!("127.0.0.1:{port}"), method, path, token, body).await?)
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
