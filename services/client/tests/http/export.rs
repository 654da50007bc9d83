//! The export download: streamed to a file with progress, as a stream,
//! cut short, refused.

use crate::support::{scripted, serve, Step};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use powernode_client::{ActionError, Api, DownloadError, ExportQuery, EXPORT_PATH};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Three pieces of 100 KiB each, distinct bytes.
fn pieces() -> Vec<Vec<u8>> {
    (0..3u8)
        .map(|i| (0..100 * 1024).map(|j| (j % 251) as u8 ^ i).collect())
        .collect()
}

/// What the export endpoint saw: the query and the token.
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// `account=cut` breaks the connection after the first piece, `account=no`
/// is refused; otherwise the three pieces, with pauses.
async fn export(State(seen): State<Seen>, headers: HeaderMap, uri: Uri) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query = uri.query().map(str::to_string);
    seen.lock().expect("seen").push((query.clone(), auth));
    let query = query.unwrap_or_default();
    if query.contains("account=no") {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": {"code": "forbidden", "message": "not your account"}})),
        )
            .into_response();
    }
    let mut steps = Vec::new();
    for (i, piece) in pieces().into_iter().enumerate() {
        if i > 0 {
            steps.push(Step::Sleep(Duration::from_millis(20)));
            if query.contains("account=cut") {
                steps.push(Step::Fail);
                break;
            }
        }
        steps.push(Step::Send(piece));
    }
    scripted(steps).into_response()
}

async fn server(seen: Seen) -> crate::support::Server {
    serve(
        Router::new()
            .route(EXPORT_PATH, get(export))
            .with_state(seen),
    )
    .await
}

#[tokio::test]
async fn an_export_is_streamed_into_a_file_with_progress() {
    let seen = Seen::default();
    let server = server(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.pnx");
    std::fs::write(&out, b"old content, replaced").unwrap();
    let api = Api::new(&server.url, "tok").unwrap();
    let query = ExportQuery {
        since: Some("2026-11-21T10:00:00+01:00".into()),
        kind_prefix: Some("system.k3s".into()),
        ..ExportQuery::default()
    };
    let mut progress = Vec::new();
    let n = api
        .download(&query, &out, |bytes| progress.push(bytes))
        .await
        .unwrap();
    let want: Vec<u8> = pieces().concat();
    assert_eq!(n, want.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), want);
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&n));
    let (q, auth) = seen.lock().unwrap()[0].clone();
    assert_eq!(
        q.as_deref(),
        Some("since=2026-11-21T10%3A00%3A00%2B01%3A00&kind_prefix=system.k3s")
    );
    assert_eq!(auth.as_deref(), Some("Bearer tok"));
}

#[tokio::test]
async fn an_export_can_be_read_as_a_stream() {
    let server = server(Seen::default()).await;
    let api = Api::new(&server.url, "tok").unwrap();
    let body = api.export(&ExportQuery::default()).await.unwrap();
    assert_eq!(body.content_length(), None, "the body is chunked");
    let mut got = Vec::new();
    let mut stream = Box::pin(body.into_stream());
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(got, pieces().concat());
}

#[tokio::test]
async fn a_cut_short_export_is_an_error_not_an_end() {
    let server = server(Seen::default()).await;
    let api = Api::new(&server.url, "tok").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let query = ExportQuery {
        account: Some("cut".into()),
        ..ExportQuery::default()
    };
    let e = api
        .download(&query, &dir.path().join("x"), |_| {})
        .await
        .unwrap_err();
    match e {
        DownloadError::Api(ActionError::Transport { .. }) => {}
        other => panic!("expected a transport error, got {other:?}"),
    }
    // The stream reports it too, then ends.
    let body = api.export(&query).await.unwrap();
    let items: Vec<_> = body.into_stream().collect().await;
    assert!(items.last().is_some_and(Result::is_err), "{items:?}");
}

#[tokio::test]
async fn a_refused_export_is_a_refusal() {
    let server = server(Seen::default()).await;
    let api = Api::new(&server.url, "tok").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let query = ExportQuery {
        account: Some("no".into()),
        ..ExportQuery::default()
    };
    let e = api.download(&query, &out, |_| {}).await.unwrap_err();
    match &e {
        DownloadError::Api(a) => {
            assert_eq!((a.status(), a.code()), (Some(403), "forbidden"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!out.exists(), "no file for a refused export");
}

#[tokio::test]
async fn an_unwritable_file_is_a_file_error() {
    let server = server(Seen::default()).await;
    let api = Api::new(&server.url, "tok").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no-such-dir").join("x");
    let e = api
        .download(&ExportQuery::default(), &out, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, DownloadError::File { .. }), "{e:?}");
}
