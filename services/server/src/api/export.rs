//! `GET /v1/events/export?since=&until=&kind_prefix=&account=`: the log in
//! the portable export format ([`powernode_archive`]), streamed as
//! `application/octet-stream` while it is read.
//!
//! Any operator token may export; a token sees only its account's events.
//! The admin token (which acts in every account) exports the whole log, or
//! one account with `account=`. Events never carry secrets (fingerprints
//! only), so nothing needs redacting. If reading the log fails midway the
//! body ends without its trailer, which every reader refuses.

use super::auth::authenticate;
use super::error::{ApiError, ErrorCode};
use super::ApiState;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use powernode_archive::select::Selection;
use powernode_archive::Source;
use powernode_archive::Writer;
use serde::Deserialize;
use tokio::sync::mpsc;

/// The route.
pub const PATH: &str = powernode_archive::EXPORT_PATH;

/// Bytes gathered before they are sent on.
const CHUNK: usize = 64 * 1024;

/// The query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    since: Option<String>,
    until: Option<String>,
    kind_prefix: Option<String>,
    account: Option<String>,
}

/// Answers the export, or an error before the first byte.
pub async fn export(
    State(st): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<ExportParams>, QueryRejection>,
) -> Response {
    match start(st, &headers, query).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"powernode-events.pnx\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn start(
    st: ApiState,
    headers: &HeaderMap,
    query: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Body, ApiError> {
    let operator = authenticate(headers, &*st.fleet.state.read().await)?;
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(ErrorCode::InvalidArguments, e.body_text()))?;
    let own = operator.account.to_string();
    let account = match q.account.filter(|a| !a.is_empty()) {
        Some(a) if operator.is_admin() || a == own => Some(a),
        Some(a) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a token of account {own} cannot export account {a}"),
            ))
        }
        None if operator.is_admin() => None,
        None => Some(own),
    };
    let selection = Selection::parse(
        q.since.as_deref(),
        q.until.as_deref(),
        q.kind_prefix.as_deref(),
        account.as_deref(),
    )
    .map_err(|e| ApiError::bad_request(ErrorCode::InvalidArguments, format!("{e:#}")))?;
    let source = Source::Log(st.log.clone());
    let header = selection.header(format!("{} (through the API)", st.log.describe()));
    let mut records = selection
        .records(&source)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?
        .records;
    let mut writer = Writer::with_header(Vec::with_capacity(CHUNK * 2), header)
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tracing::info!(token_id = %operator.token_id, account = ?account, "export started");
    // The writer stays a detached task on purpose: it ends with its
    // request — when the log is read through, when the client goes away
    // (its channel closes), or at shutdown (below; the body then ends
    // without its trailer) — so it never outlives the response, which the
    // supervised HTTP server waits for before it stops.
    let shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = records.next() => match item {
                    Some(item) => item,
                    None => break,
                },
                _ = shutdown.cancelled() => {
                    tracing::warn!("export cut short by shutdown; the body ends without its trailer");
                    let _ = tx.send(Err(std::io::Error::other("the server is shutting down"))).await;
                    return;
                }
            };
            let written = item
                .map_err(|e| format!("{e:#}"))
                .and_then(|record| writer.write(&record).map_err(|e| e.to_string()));
            if let Err(e) = written {
                tracing::warn!(error = %e, "export stopped; the body ends without its trailer");
                let _ = tx.send(Err(std::io::Error::other(e))).await;
                return;
            }
            if writer.get_mut().len() >= CHUNK {
                let chunk = std::mem::replace(writer.get_mut(), Vec::with_capacity(CHUNK * 2));
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return; // the client went away
                }
            }
        }
        let records = writer.records();
        match writer.finish() {
            Ok(rest) => {
                let _ = tx.send(Ok(Bytes::from(rest))).await;
                tracing::info!(records, "export sent");
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
    .take_until(st.shutdown.clone().cancelled_owned());
    Ok(Body::from_stream(stream))
}
