//! The event stream: `GET {base}/v1/events/stream?…` read as server-sent
//! events ([`EventStream`]), resumable with `Last-Event-ID`; and the one
//! percent-encoder of query values ([`query_string`]).

use crate::api::Api;
use crate::error::{ActionError, Refusal};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use std::time::Duration;

/// The API path of the event stream.
pub const EVENTS_PATH: &str = "/v1/events/stream";

/// How long a stream may stay silent (the server sends a keep-alive
/// comment every 15 s) before it counts as lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// What stays as it is in a query value: the unreserved characters of
/// RFC 3986 (letters, digits, `-`, `_`, `.`, `~`); everything else is
/// `%XX`-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` percent-encoded for a query (every byte but the unreserved ones).
pub fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// `key=value&…` with keys and values percent-encoded; `None` values left
/// out.
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", percent_encode(k), percent_encode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// `path?query`, or `path` alone when the query is empty.
pub(crate) fn with_query(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let query = query_string(pairs);
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// The filters of `GET /v1/events/stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsQuery {
    /// Only kinds starting with this plain prefix.
    pub kind_prefix: Option<String>,
    /// Where to start: a sequence, an RFC 3339 time or a duration back
    /// from now (`10m`); ignored by the server when `Last-Event-ID` is sent.
    pub since: Option<String>,
    /// Only events about this cluster.
    pub cluster: Option<String>,
    /// Only events about this instance.
    pub instance: Option<String>,
}

impl EventsQuery {
    /// `/v1/events/stream?…`, values percent-encoded.
    pub fn path(&self) -> String {
        with_query(
            EVENTS_PATH,
            &[
                ("kind_prefix", self.kind_prefix.as_deref()),
                ("since", self.since.as_deref()),
                ("cluster", self.cluster.as_deref()),
                ("instance", self.instance.as_deref()),
            ],
        )
    }
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `id:` (the log sequence on the events stream).
    pub id: Option<String>,
    /// `event:` (the kind on the events stream).
    pub event: Option<String>,
    /// `data:` lines joined with `\n`; `None` for an event that only moves
    /// the last event id (the stream's opening position).
    pub data: Option<String>,
}

impl SseEvent {
    /// `id` as a sequence number.
    pub fn seq(&self) -> Option<u64> {
        self.id.as_deref().and_then(|i| i.trim().parse().ok())
    }
}

/// An open event stream. It remembers the last event id it dispatched, so
/// [`reconnect`](EventStream::reconnect) after a drop resumes right after
/// it (`Last-Event-ID`).
#[derive(Debug)]
pub struct EventStream {
    api: Api,
    /// The API path, query included.
    path: String,
    answer: reqwest::Response,
    /// Body bytes not yet split into lines.
    pending: Vec<u8>,
    /// The event being assembled.
    current: SseEvent,
    ended: bool,
    idle: Duration,
    /// The id of the last event dispatched (or the one it was opened with).
    last_event_id: Option<String>,
}

impl EventStream {
    /// `GET path` (an API path with its query, e.g. from
    /// [`EventsQuery::path`]) on `api`, with its bearer token and, when
    /// given, `Last-Event-ID`. A non-2xx answer is an
    /// [`ActionError::Refused`]. The answer's head must arrive within the
    /// client's time limit, or [`IDLE_TIMEOUT`] when it has none.
    pub async fn open(
        api: &Api,
        path: &str,
        last_event_id: Option<u64>,
    ) -> Result<Self, ActionError> {
        let last = last_event_id.map(|id| id.to_string());
        let answer = Self::connect(api, path, last.as_deref()).await?;
        Ok(Self {
            api: api.clone(),
            path: path.to_string(),
            answer,
            pending: Vec::new(),
            current: SseEvent::default(),
            ended: false,
            idle: IDLE_TIMEOUT,
            last_event_id: last,
        })
    }

    async fn connect(
        api: &Api,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, ActionError> {
        let mut req = api
            .get(path)?
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let limit = api.timeout().unwrap_or(IDLE_TIMEOUT);
        let timed_out = || ActionError::Timeout {
            url: api.url().to_string(),
            after: limit,
        };
        let answer = tokio::time::timeout(limit, req.send())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| api.http_error(e))?;
        if answer.status().is_success() {
            return Ok(answer);
        }
        let status = answer.status().as_u16();
        let body = tokio::time::timeout(limit, answer.bytes())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| api.http_error(e))?;
        Err(Refusal::from_answer(status, &body).into())
    }

    /// Opens the same stream again, after the last event id dispatched (or
    /// the one it was opened with): what a client does after a dropped
    /// connection. Keeps the idle limit.
    pub async fn reconnect(&mut self) -> Result<(), ActionError> {
        self.answer = Self::connect(&self.api, &self.path, self.last_event_id.as_deref()).await?;
        self.pending.clear();
        self.current = SseEvent::default();
        self.ended = false;
        Ok(())
    }

    /// The id of the last event dispatched, or the one the stream was opened
    /// with: where a reconnection resumes.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Changes how long the stream may stay silent before
    /// [`next`](Self::next) fails.
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// The next event; `None` when the server ended the stream. Fails
    /// ([`ActionError::Transport`]) when the connection breaks, or
    /// ([`ActionError::Timeout`]) when it stays silent longer than the idle
    /// limit.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ActionError> {
        loop {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                    if event.id.is_some() {
                        self.last_event_id.clone_from(&event.id);
                    }
                    return Ok(Some(event));
                }
            }
            if self.ended {
                return Ok(None);
            }
            let piece = tokio::time::timeout(self.idle, self.answer.chunk())
                .await
                .map_err(|_| ActionError::Timeout {
                    url: self.api.url().to_string(),
                    after: self.idle,
                })?
                .map_err(|e| self.api.http_error(e))?;
            match piece {
                Some(piece) => self.pending.extend_from_slice(&piece),
                None => self.ended = true,
            }
        }
    }

    /// Applies one line; a blank line dispatches the event assembled so far
    /// (when it has data or an id).
    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.current);
            return (event.data.is_some() || event.id.is_some()).then_some(event);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.current.id = Some(value.to_string()),
            "event" => self.current.event = Some(value.to_string()),
            "data" => match &mut self.current.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.current.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

impl Api {
    /// [`EventStream::open`] on this client.
    pub async fn events(
        &self,
        path: &str,
        last_event_id: Option<u64>,
    ) -> Result<EventStream, ActionError> {
        EventStream::open(self, path, last_event_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            query_string(&[
                ("kind_prefix", Some("system.k3s")),
                ("cluster", None),
                ("since", Some("2026-11-21T10:00:00+01:00")),
            ]),
            "kind_prefix=system.k3s&since=2026-11-21T10%3A00%3A00%2B01%3A00"
        );
        assert_eq!(percent_encode("a b/ü~"), "a%20b%2F%C3%BC~");
        assert_eq!(EventsQuery::default().path(), EVENTS_PATH);
        let q = EventsQuery {
            cluster: Some("c 1".into()),
            ..EventsQuery::default()
        };
        assert_eq!(q.path(), "/v1/events/stream?cluster=c%201");
    }
}
