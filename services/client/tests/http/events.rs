//! The event stream: parsing, refusals, silence, filters, resuming with
//! `Last-Event-ID`.

use crate::support::{chunked, scripted, send, serve, serve_raw_once, Step};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use powernode_client::{ActionError, Api, EventStream, EventsQuery, EVENTS_PATH};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stream endpoint saw of each opening.
#[derive(Debug, Clone, Default)]
struct Opening {
    last_event_id: Option<String>,
    accept: Option<String>,
    auth: Option<String>,
}

type Openings = Arc<Mutex<Vec<Opening>>>;

/// The raw query and its decoded pairs, per opening.
type Queries = Arc<Mutex<Vec<(Option<String>, HashMap<String, String>)>>>;

fn header_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn sse(steps: Vec<Step>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        scripted(steps),
    )
        .into_response()
}

/// The first opening sends events 1 and 2 and then breaks the connection;
/// a later one sends the event after its `Last-Event-ID` and ends.
async fn stream(State(openings): State<Openings>, headers: HeaderMap) -> Response {
    let opening = Opening {
        last_event_id: header_of(&headers, "last-event-id"),
        accept: header_of(&headers, "accept"),
        auth: header_of(&headers, "authorization"),
    };
    let first = {
        let mut all = openings.lock().expect("openings");
        all.push(opening.clone());
        all.len() == 1
    };
    if first {
        return sse(vec![
            send(": hello\n\n"),
            send("id: 1\nevent: system.a\ndata: {\"seq\":1}\n\n"),
            send("id: 2\nevent: system.b\ndata: {\"seq\":2}\n\n"),
            Step::Sleep(Duration::from_millis(50)),
            Step::Fail,
        ]);
    }
    let after: u64 = opening
        .last_event_id
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    sse(vec![send(&format!(
        "id: {n}\nevent: system.c\ndata: {{\"seq\":{n}}}\n\n",
        n = after + 1
    ))])
}

#[tokio::test]
async fn a_dropped_stream_resumes_after_the_last_event_id() {
    let openings = Openings::default();
    let server = serve(
        Router::new()
            .route(EVENTS_PATH, get(stream))
            .with_state(openings.clone()),
    )
    .await;
    let api = Api::new(&server.url, "tok").unwrap();
    let mut s = api.events(EVENTS_PATH, None).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap().seq(), Some(1));
    let e = s.next().await.unwrap().unwrap();
    assert_eq!((e.seq(), e.event.as_deref()), (Some(2), Some("system.b")));
    assert_eq!(e.data.as_deref(), Some("{\"seq\":2}"));
    // The server breaks the connection mid-stream.
    let broken = s.next().await.unwrap_err();
    assert!(
        matches!(broken, ActionError::Transport { .. }),
        "{broken:?}"
    );
    assert_eq!(s.last_event_id(), Some("2"));

    s.reconnect().await.unwrap();
    let e = s.next().await.unwrap().unwrap();
    assert_eq!(e.seq(), Some(3));
    assert_eq!(s.next().await.unwrap(), None, "the server ended the stream");

    // Opening with a position sends it too.
    let mut s = EventStream::open(&api, EVENTS_PATH, Some(41))
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap().unwrap().seq(), Some(42));

    let seen = openings.lock().unwrap().clone();
    let ids: Vec<Option<&str>> = seen.iter().map(|o| o.last_event_id.as_deref()).collect();
    assert_eq!(ids, [None, Some("2"), Some("41")]);
    assert!(seen
        .iter()
        .all(|o| o.accept.as_deref() == Some("text/event-stream")
            && o.auth.as_deref() == Some("Bearer tok")));
}

#[tokio::test]
async fn filters_are_sent_percent_encoded() {
    let seen = Queries::default();
    let record = seen.clone();
    let server =
        serve(
            Router::new().route(
                EVENTS_PATH,
                get(
                    move |uri: Uri,
                          axum::extract::Query(q): axum::extract::Query<
                        HashMap<String, String>,
                    >| {
                        let record = record.clone();
                        async move {
                            record
                                .lock()
                                .expect("seen")
                                .push((uri.query().map(str::to_string), q));
                            sse(vec![])
                        }
                    },
                ),
            ),
        )
        .await;
    let query = EventsQuery {
        kind_prefix: Some("system.k3s".into()),
        since: Some("2026-11-21T10:00:00+01:00".into()),
        cluster: Some("c 1&x=y".into()),
        instance: None,
    };
    let api = Api::new(&server.url, "t").unwrap();
    let mut s = api.events(&query.path(), None).await.unwrap();
    assert_eq!(s.next().await.unwrap(), None);
    let (raw, parsed) = seen.lock().unwrap()[0].clone();
    assert_eq!(
        raw.as_deref(),
        Some(
            "kind_prefix=system.k3s&since=2026-11-21T10%3A00%3A00%2B01%3A00&cluster=c%201%26x%3Dy"
        )
    );
    assert_eq!(parsed["since"], "2026-11-21T10:00:00+01:00");
    assert_eq!(parsed["cluster"], "c 1&x=y");
    assert!(!parsed.contains_key("instance"));
}

#[tokio::test]
async fn chunked_events_are_parsed_wherever_the_chunks_split() {
    let body = "id: 7\nretry: 1000\n\n: keep-alive\n\nid: 8\r\nevent: system.x\r\ndata: {\"a\":1}\r\n\r\ndata:two\ndata: lines\n\n";
    let url = serve_raw_once(chunked("200 OK", "text/event-stream", body, &[3, 11, 5])).await;
    let api = Api::new(&url, "t").unwrap();
    let mut s = EventStream::open(&api, "/s", Some(6)).await.unwrap();
    let e = s.next().await.unwrap().unwrap();
    assert_eq!((e.seq(), e.data), (Some(7), None));
    let e = s.next().await.unwrap().unwrap();
    assert_eq!(e.seq(), Some(8));
    assert_eq!(e.event.as_deref(), Some("system.x"));
    assert_eq!(e.data.as_deref(), Some("{\"a\":1}"));
    let e = s.next().await.unwrap().unwrap();
    assert_eq!((e.id, e.data.as_deref()), (None, Some("two\nlines")));
    assert_eq!(s.next().await.unwrap(), None);
    assert_eq!(s.last_event_id(), Some("8"));
}

#[tokio::test]
async fn a_refused_stream_is_a_refusal() {
    let server = serve(Router::new().route(
        EVENTS_PATH,
        get(|| async {
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"code": "invalid_arguments", "message": "since: bad"}})),
            )
        }),
    ))
    .await;
    let api = Api::new(&server.url, "t").unwrap();
    let e = api.events(EVENTS_PATH, None).await.unwrap_err();
    let r = e.refusal().expect("a refusal");
    assert_eq!((r.status, r.code.as_str()), (400, "invalid_arguments"));
}

#[tokio::test]
async fn a_silent_stream_is_a_timeout() {
    let server = serve(Router::new().route(
        EVENTS_PATH,
        get(|| async {
            sse(vec![
                send(": open\n\n"),
                Step::Sleep(Duration::from_secs(10)),
            ])
        }),
    ))
    .await;
    let api = Api::new(&server.url, "t").unwrap();
    let mut s = api.events(EVENTS_PATH, None).await.unwrap();
    s.set_idle_timeout(Duration::from_millis(200));
    let e = s.next().await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
}
