//! The export download: `GET {base}/v1/events/export?…` as a stream of
//! body pieces ([`ExportBody`]), or written to a file
//! ([`Api::download`]). Bytes only: checking the archive frames as they
//! arrive is the archive reader's work, on top of [`ExportBody`].

use crate::api::Api;
use crate::error::{ActionError, Refusal};
use crate::events::with_query;
use bytes::Bytes;
use futures::Stream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The API path of an export.
pub const EXPORT_PATH: &str = "/v1/events/export";

/// The query of `GET /v1/events/export`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportQuery {
    /// A sequence or an RFC 3339 time.
    pub since: Option<String>,
    /// A sequence or an RFC 3339 time.
    pub until: Option<String>,
    /// A kind prefix.
    pub kind_prefix: Option<String>,
    /// An account (the admin token only; other tokens export their own).
    pub account: Option<String>,
}

impl ExportQuery {
    /// `/v1/events/export?…`, values percent-encoded.
    pub fn path(&self) -> String {
        with_query(
            EXPORT_PATH,
            &[
                ("since", self.since.as_deref()),
                ("until", self.until.as_deref()),
                ("kind_prefix", self.kind_prefix.as_deref()),
                ("account", self.account.as_deref()),
            ],
        )
    }
}

/// Why a download to a file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The API refused, was not heard, or the connection broke before the
    /// end of the export (a cut-short body is never taken for a whole one).
    #[error(transparent)]
    Api(#[from] ActionError),
    /// The file cannot be created or written.
    #[error("cannot write {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The body of an export answer, piece by piece as it arrives (de-chunked:
/// the API answers with a chunked body).
#[derive(Debug)]
pub struct ExportBody {
    api: Api,
    answer: reqwest::Response,
    idle: Option<Duration>,
    received: u64,
}

impl ExportBody {
    /// The body's announced length, when the API announced one (it streams
    /// chunked, so usually not).
    pub fn content_length(&self) -> Option<u64> {
        self.answer.content_length()
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Fails [`chunk`](Self::chunk) with [`ActionError::Timeout`] when the
    /// API sends nothing for `idle` (by default it may pause as long as the
    /// connection lives, as the hand-written download did).
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle = Some(idle);
    }

    /// The next piece; `None` at the end of the body. A body cut short (the
    /// connection closed before its announced end or its last chunk) is an
    /// [`ActionError::Transport`].
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ActionError> {
        let piece = match self.idle {
            Some(idle) => tokio::time::timeout(idle, self.answer.chunk())
                .await
                .map_err(|_| ActionError::Timeout {
                    url: self.api.url().to_string(),
                    after: idle,
                })?,
            None => self.answer.chunk().await,
        }
        .map_err(|e| self.api.http_error(e))?;
        if let Some(p) = &piece {
            self.received += p.len() as u64;
        }
        Ok(piece)
    }

    /// The pieces as a stream; it ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, ActionError>> + Send + 'static {
        futures::stream::unfold(Some(self), |body| async move {
            let mut body = body?;
            match body.chunk().await {
                Ok(Some(piece)) => Some((Ok(piece), Some(body))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

impl Api {
    /// Starts an export: its body, once the API has accepted the query. A
    /// refusal (bad query, bad token) is an [`ActionError::Refused`]. The
    /// answer's head must arrive within the client's time limit, if any;
    /// the body has none unless [`ExportBody::set_idle_timeout`] sets one.
    pub async fn export(&self, query: &ExportQuery) -> Result<ExportBody, ActionError> {
        let req = self.get(&query.path())?;
        let sent =
            match self.timeout() {
                Some(limit) => tokio::time::timeout(limit, req.send()).await.map_err(|_| {
                    ActionError::Timeout {
                        url: self.url().to_string(),
                        after: limit,
                    }
                })?,
                None => req.send().await,
            };
        let answer = sent.map_err(|e| self.http_error(e))?;
        if !answer.status().is_success() {
            let status = answer.status().as_u16();
            let body = answer.bytes().await.map_err(|e| self.http_error(e))?;
            return Err(Refusal::from_answer(status, &body).into());
        }
        Ok(ExportBody {
            api: self.clone(),
            answer,
            idle: None,
            received: 0,
        })
    }

    /// Downloads an export into `out` (created or replaced); the bytes
    /// written. `on_progress` sees the running byte count after each piece.
    /// On an error the partial file is left for the caller to remove.
    pub async fn download(
        &self,
        query: &ExportQuery,
        out: &Path,
        mut on_progress: impl FnMut(u64) + Send,
    ) -> Result<u64, DownloadError> {
        let mut body = self.export(query).await?;
        let file_error = |source| DownloadError::File {
            path: out.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::create(out).await.map_err(file_error)?;
        let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        while let Some(piece) = body.chunk().await? {
            file.write_all(&piece).await.map_err(file_error)?;
            on_progress(body.received());
        }
        file.flush().await.map_err(file_error)?;
        Ok(body.received())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_paths_are_encoded() {
        assert_eq!(ExportQuery::default().path(), EXPORT_PATH);
        let q = ExportQuery {
            since: Some("2026-11-21T10:00:00+01:00".into()),
            account: Some("acc 1".into()),
            ..ExportQuery::default()
        };
        assert_eq!(
            q.path(),
            "/v1/events/export?since=2026-11-21T10%3A00%3A00%2B01%3A00&account=acc%201"
        );
    }
}
