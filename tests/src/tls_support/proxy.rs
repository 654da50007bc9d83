//! A TLS-terminating reverse proxy serving the API under a path prefix:
//! `https://127.0.0.1:PORT/<prefix>/…` forwarded to `http://<upstream>/…`
//! (the prefix stripped), as an ingress would. Its certificate comes from a
//! CA of its own, made in `dir` (`<dir>/tls/ca.pem`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Upstream {
    base: String,
    prefix: String,
    http: reqwest::Client,
}

/// The proxy's URL (`https://127.0.0.1:PORT/<prefix>`) and CA file; it
/// runs until the test's runtime ends.
pub async fn start(dir: &Path, prefix: &str, upstream: &str) -> anyhow::Result<(String, PathBuf)> {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let tls = powernode_server::tls::prepare(&Default::default(), dir, addr)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(client_tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let state = Arc::new(Upstream {
        base: format!("http://{upstream}"),
        prefix: format!("/{}", prefix.trim_matches('/')),
        http,
    });
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = powernode_server::tls::TlsListener::new(tcp, tls.config)?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((
        format!(
            "https://127.0.0.1:{}/{}",
            addr.port(),
            prefix.trim_matches('/')
        ),
        tls.ca_file.expect("a made CA"),
    ))
}

async fn forward(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let Some(rest) = path_and_query.strip_prefix(&up.prefix) else {
        return plain(StatusCode::NOT_FOUND, "not under the prefix");
    };
    let url = format!("{}/{}", up.base, rest.trim_start_matches('/'));
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap_or_default();
    let mut out = up.http.request(method, url);
    for name in ["authorization", "content-type", "accept", "last-event-id"] {
        if let Some(v) = req.headers().get(name) {
            out = out.header(name, v.as_bytes());
        }
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "body"),
    };
    let answer = match out.body(body).send().await {
        Ok(a) => a,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get("content-type")
        .map(|v| v.as_bytes().to_vec());
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        if let Ok(v) = axum::http::HeaderValue::from_bytes(&ct) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("content-type"), v);
        }
    }
    response
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = Response::new(Body::from(text.to_string()));
    *r.status_mut() = status;
    r
}
