//! Actions: what is sent, what comes back, connection reuse, time limits.

use crate::support::{chunked, closed_port, serve, serve_raw_once};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use powernode_client::{request, ActionError, Api, ClientConfig, Refusal};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server saw of one action call.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    auth: Option<String>,
    content_type: Option<String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `POST /v1/actions/{name}`: records the call; `echo` answers its
/// arguments as `data`, `refuse` a 409 error, `proxy_error` a 502 HTML
/// page, `not_json` a 200 that is not JSON, `slow` after 2 s.
async fn action(
    State(log): State<Log>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    log.lock().expect("log").push(Seen {
        name: name.clone(),
        auth: header(&headers, "authorization"),
        content_type: header(&headers, "content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match name.as_str() {
        "refuse" => (
            StatusCode::CONFLICT,
            Json(json!({"error": {"code": "already_decommissioned", "message": "cluster c1 is gone"}})),
        )
            .into_response(),
        "proxy_error" => (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response(),
        "not_json" => (StatusCode::OK, "<html>ok</html>").into_response(),
        "no_data" => Json(json!({})).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Json(json!({"data": "late"})).into_response()
        }
        _ => {
            let args: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Json(json!({"data": {"action": name, "args": args}})).into_response()
        }
    }
}

fn router(log: Log) -> Router {
    Router::new()
        .route("/v1/actions/{name}", post(action))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(log)
}

#[tokio::test]
async fn bearer_token_and_body_are_sent_and_data_is_unwrapped() {
    let log = Log::default();
    let server = serve(router(log.clone())).await;
    let api = Api::new(&server.url, "tok-1").unwrap();
    let data = api
        .call_raw("system_create_template", &json!({"name": "web"}))
        .await
        .unwrap();
    assert_eq!(
        data,
        json!({"action": "system_create_template", "args": {"name": "web"}})
    );
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.name, "system_create_template");
    assert_eq!(seen.auth.as_deref(), Some("Bearer tok-1"));
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&seen.body).unwrap(),
        json!({"name": "web"})
    );

    // The body as typed reaches the server untouched.
    api.call_bytes("raw", b"{\"a\":1,\"a\":2}").await.unwrap();
    assert_eq!(log.lock().unwrap()[1].body, "{\"a\":1,\"a\":2}");
    // Another token on the same pool.
    api.with_token("tok-2").call("x", &json!({})).await.unwrap();
    assert_eq!(log.lock().unwrap()[2].auth.as_deref(), Some("Bearer tok-2"));
    // An answer without data is Null.
    assert_eq!(api.call("no_data", &json!({})).await.unwrap(), Value::Null);
}

#[derive(Serialize)]
struct CreateTemplate<'a> {
    name: &'a str,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Echo {
    action: String,
    args: Args,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Args {
    name: String,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // only its decoding failure is looked at
struct Wrong {
    action: u64,
}

#[tokio::test]
async fn typed_calls_encode_and_decode_through_serde() {
    let server = serve(router(Log::default())).await;
    let api = Api::new(&server.url, "t").unwrap();
    let echo: Echo = api
        .call_json("make", &CreateTemplate { name: "web" })
        .await
        .unwrap();
    assert_eq!(
        echo,
        Echo {
            action: "make".into(),
            args: Args { name: "web".into() }
        }
    );
    let e = api
        .call_json::<_, Wrong>("make", &CreateTemplate { name: "web" })
        .await
        .unwrap_err();
    match &e {
        ActionError::Malformed { status, reason, .. } => {
            assert_eq!(*status, 200);
            assert!(reason.contains("action"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test]
async fn an_error_body_is_a_refusal_with_code_and_status() {
    let server = serve(router(Log::default())).await;
    let api = Api::new(&server.url, "t").unwrap();
    let e = api.call("refuse", &json!({})).await.unwrap_err();
    let r = e.refusal().expect("a refusal");
    assert_eq!(
        (r.status, r.code.as_str(), r.message.as_str()),
        (409, "already_decommissioned", "cluster c1 is gone")
    );
    assert_eq!(
        (e.status(), e.code()),
        (Some(409), "already_decommissioned")
    );
    assert!(e.has_code("already_decommissioned") && !e.is_unheard());
    assert_eq!(
        e.to_string(),
        "already_decommissioned (409): cluster c1 is gone"
    );
    // Through anyhow, as the CLI holds it.
    let any = anyhow::Error::from(e).context("decommissioning c1");
    assert!(ActionError::is(&any, "already_decommissioned"));
    assert_eq!(Refusal::of(&any).map(|r| r.status), Some(409));

    // Not the API's JSON (a proxy's page): code `error`, the status and
    // the first bytes named, never the whole page.
    let e = api.call("proxy_error", &json!({})).await.unwrap_err();
    let r = e.refusal().expect("a refusal");
    assert_eq!((r.status, r.code.as_str()), (502, "error"));
    assert!(
        r.message.contains("HTTP 502") && r.message.contains("begins: <html>bad gateway</html>"),
        "{}",
        r.message
    );
    // A success that is not JSON.
    let e = api.call("not_json", &json!({})).await.unwrap_err();
    assert!(
        matches!(e, ActionError::Malformed { status: 200, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_chunked_answer_is_read_whole() {
    let body = r#"{"data":{"instances":[{"id":"i-1"},{"id":"i-2"}],"more":false}}"#;
    let url = serve_raw_once(chunked("200 OK", "application/json", body, &[5, 17, 3])).await;
    let api = Api::new(&url, "t").unwrap();
    let data = api.call("system_list_instances", &json!({})).await.unwrap();
    assert_eq!(data["instances"][1]["id"], "i-2");

    // A chunked refusal too.
    let body = r#"{"error":{"code":"not_found","message":"no such thing"}}"#;
    let url = serve_raw_once(chunked("404 Not Found", "application/json", body, &[4])).await;
    let e = Api::new(&url, "t")
        .unwrap()
        .call("x", &json!({}))
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(404), "not_found"));
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_kept() {
    let log = Log::default();
    let server = serve(Router::new().nest("/powernode", router(log.clone()))).await;
    for base in [
        format!("{}/powernode", server.url),
        format!("{}/powernode/", server.url),
    ] {
        let api = Api::new(&base, "t").unwrap();
        let data = api.call("ping", &json!({})).await.unwrap();
        assert_eq!(data["action"], "ping");
        let a = api.request("GET", "/healthz", b"").await.unwrap();
        assert_eq!((a.status, &a.body), (200, &json!({"status": "ok"})));
    }
    // Without the prefix the server has no such route.
    let e = Api::new(&server.url, "t")
        .unwrap()
        .call("ping", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
}

#[tokio::test]
async fn one_client_reuses_its_connection() {
    let server = serve(router(Log::default())).await;
    let api = Api::new(&server.url, "t").unwrap();
    let other = api.with_token("u");
    for i in 0..50 {
        let client = if i % 2 == 0 { &api } else { &other };
        client.call("n", &json!({ "i": i })).await.unwrap();
    }
    let n = server.connections();
    assert!(
        (1..=2).contains(&n),
        "50 sequential calls took {n} connections"
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = serve(router(Log::default())).await;
    let config = ClientConfig::new(&server.url, "t").with_timeout(Duration::from_millis(200));
    let api = Api::from_config(&config).unwrap();
    let started = std::time::Instant::now();
    let e = api.call("slow", &json!({})).await.unwrap_err();
    assert!(e.is_timeout() && e.is_unheard(), "{e:?}");
    assert_eq!((e.status(), e.code()), (None, "timeout"));
    assert!(e.refusal().is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(e.to_string().contains("0.2 s"), "{e}");
    // The same client answers fast calls afterwards.
    api.call("fast", &json!({})).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error() {
    let url = format!("http://127.0.0.1:{}", closed_port().await);
    let e = Api::new(&url, "t")
        .unwrap()
        .call("x", &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, ActionError::Transport { .. }), "{e:?}");
    assert!(e.is_unheard() && !e.is_timeout());
    assert_eq!((e.status(), e.code()), (None, "transport"));
    assert!(e.to_string().starts_with("cannot reach"), "{e}");
    assert!(Refusal::of(&anyhow::Error::from(e)).is_none());
}

#[tokio::test]
async fn a_plain_request_sends_the_token_only_when_given() {
    let log = Log::default();
    let server = serve(router(log.clone())).await;
    // A bare host:port, as the tests' helper passes it.
    let addr = server.url.trim_start_matches("http://").to_string();
    let a = request(&addr, "POST", "/v1/actions/anon", None, b"{}")
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(log.lock().unwrap()[0].auth, None);
    let a = request(&server.url, "POST", "/v1/actions/refuse", Some("k"), b"")
        .await
        .unwrap();
    assert_eq!(a.status, 409);
    assert_eq!(a.body["error"]["code"], "already_decommissioned");
    assert_eq!(log.lock().unwrap()[1].auth.as_deref(), Some("Bearer k"));
    let a = request(&server.url, "GET", "/healthz", None, b"")
        .await
        .unwrap();
    assert_eq!(a.body["status"], "ok");
    let e = request(&server.url, "NOT A METHOD", "/healthz", None, b"")
        .await
        .unwrap_err();
    assert!(matches!(e, ActionError::Config(_)), "{e:?}");
}

#[tokio::test]
async fn unusable_urls_are_refused_up_front() {
    for url in ["ftp://h:1", "http://user:pw@h:1", "http://h:1/?x=1"] {
        assert!(Api::new(url, "t").is_err(), "{url}");
    }
}
