//! A server-sent-events reader for the CLI and tests: one streaming `GET`
//! on a connection of its own (plain HTTP/1.1, chunked or not), parsed
//! into [`SseEvent`]s as they arrive. `powernode events tail --follow`
//! reads `GET /v1/events/stream` with it.

use crate::ActionError;
use anyhow::{bail, Context};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long a stream may stay silent (the server sends a keep-alive
/// comment every 15 s) before it counts as lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

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

/// How the body is framed.
enum Framing {
    /// `Transfer-Encoding: chunked`; bytes left in the current chunk.
    Chunked { left: usize },
    /// `Content-Length`; bytes left.
    Length(usize),
    /// Until the server closes the connection.
    Close,
}

/// An open event stream.
pub struct EventStream {
    conn: BufReader<TcpStream>,
    framing: Framing,
    /// Decoded body bytes not yet split into lines.
    pending: Vec<u8>,
    /// The event being assembled.
    current: SseEvent,
    ended: bool,
    idle: Duration,
}

impl EventStream {
    /// `GET path` on `url` (`http://host:port`) with a bearer token and,
    /// when given, `Last-Event-ID`. A non-200 answer is an error; a JSON
    /// `{"error": …}` answer becomes an [`ActionError`].
    pub async fn open(
        url: &str,
        path: &str,
        token: &str,
        last_event_id: Option<u64>,
    ) -> anyhow::Result<Self> {
        if url.starts_with("https://") {
            bail!(
                "https is not supported by the built-in client; use http:// or a local TLS proxy"
            );
        }
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach the powernode API at http://{addr}"))?;
        stream.set_nodelay(true)?;
        let mut conn = BufReader::new(stream);
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
        );
        conn.get_mut().write_all(head.as_bytes()).await?;
        let mut status_line = String::new();
        timed(IDLE_TIMEOUT, conn.read_line(&mut status_line)).await?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("the API at http://{addr} answered no HTTP status"))?;
        let mut framing = Framing::Close;
        loop {
            let mut line = String::new();
            if timed(IDLE_TIMEOUT, conn.read_line(&mut line)).await? == 0 {
                bail!("malformed HTTP answer: headers cut short");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                framing = Framing::Chunked { left: 0 };
            } else if name == "content-length" && !matches!(framing, Framing::Chunked { .. }) {
                framing = Framing::Length(value.parse().context("malformed Content-Length")?);
            }
        }
        let mut stream = Self {
            conn,
            framing,
            pending: Vec::new(),
            current: SseEvent::default(),
            ended: false,
            idle: IDLE_TIMEOUT,
        };
        if status != 200 {
            let mut body = Vec::new();
            while let Some(piece) = stream.body_piece().await? {
                body.extend_from_slice(&piece);
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = &v["error"];
            return Err(ActionError {
                status,
                code: error["code"].as_str().unwrap_or("error").to_string(),
                message: error["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(text),
            }
            .into());
        }
        Ok(stream)
    }

    /// Changes how long the stream may stay silent before [`next`](Self::next) fails.
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// The next event; `None` when the server ended the stream. Fails when
    /// the connection breaks or stays silent longer than the idle timeout.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.line(&String::from_utf8_lossy(&line)) {
                    return Ok(Some(event));
                }
            }
            if self.ended {
                return Ok(None);
            }
            match self.body_piece().await? {
                Some(piece) => self.pending.extend_from_slice(&piece),
                None => self.ended = true,
            }
        }
    }

    /// Applies one line; a blank line dispatches the event assembled so far.
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

    /// The next piece of the (de-chunked) body; `None` at its end.
    async fn body_piece(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let idle = self.idle;
        match &mut self.framing {
            Framing::Chunked { left } => {
                if *left == 0 {
                    let mut size_line = String::new();
                    if timed(idle, self.conn.read_line(&mut size_line)).await? == 0 {
                        bail!("the event stream was cut off");
                    }
                    let hex = size_line.trim().split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16)
                        .with_context(|| format!("malformed chunk size {hex:?}"))?;
                    if size == 0 {
                        return Ok(None);
                    }
                    *left = size;
                }
                let want = (*left).min(64 * 1024);
                let mut buf = vec![0; want];
                let n = timed(idle, self.conn.read(&mut buf)).await?;
                if n == 0 {
                    bail!("the event stream was cut off");
                }
                buf.truncate(n);
                *left -= n;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    timed(idle, self.conn.read_exact(&mut crlf)).await?;
                }
                Ok(Some(buf))
            }
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(None);
                }
                let mut buf = vec![0; (*left).min(64 * 1024)];
                let n = timed(idle, self.conn.read(&mut buf)).await?;
                if n == 0 {
                    bail!("the event stream was cut off");
                }
                buf.truncate(n);
                *left -= n;
                Ok(Some(buf))
            }
            Framing::Close => {
                let mut buf = vec![0; 64 * 1024];
                let n = timed(idle, self.conn.read(&mut buf)).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
        }
    }
}

/// `fut` with a silence limit.
async fn timed<T, E: Into<anyhow::Error>>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => bail!("the event stream was silent for {} s", limit.as_secs()),
    }
}

/// `key=value&…` with values percent-encoded; `None` values left out.
pub fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        let Some(v) = v else { continue };
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `answer` once on a loopback port; the URL.
    async fn serve_once(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let _ = s.read(&mut head).await;
            // Dribble the answer out in small pieces, lines split anywhere.
            for piece in answer.chunks(7) {
                s.write_all(piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        url
    }

    fn chunked(body: &str, sizes: &[usize]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let mut rest = body.as_bytes();
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (c, r) = rest.split_at(n.min(rest.len()));
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
            rest = r;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn chunked_events_are_parsed_wherever_the_chunks_split() {
        let body = "id: 7\nretry: 1000\n\n: keep-alive\n\nid: 8\r\nevent: system.x\r\ndata: {\"a\":1}\r\n\r\ndata:two\ndata: lines\n\n";
        let url = serve_once(chunked(body, &[3, 11, 5])).await;
        let mut s = EventStream::open(&url, "/s", "t", Some(6)).await.unwrap();
        let e = s.next().await.unwrap().unwrap();
        assert_eq!((e.seq(), e.data), (Some(7), None));
        let e = s.next().await.unwrap().unwrap();
        assert_eq!(e.seq(), Some(8));
        assert_eq!(e.event.as_deref(), Some("system.x"));
        assert_eq!(e.data.as_deref(), Some("{\"a\":1}"));
        let e = s.next().await.unwrap().unwrap();
        assert_eq!((e.id, e.data.as_deref()), (None, Some("two\nlines")));
        assert_eq!(s.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn refusals_are_action_errors() {
        let body = r#"{"error":{"code":"invalid_arguments","message":"since: bad"}}"#;
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let url = serve_once(answer.into_bytes()).await;
        let e = EventStream::open(&url, "/s", "t", None)
            .await
            .err()
            .unwrap();
        let a = ActionError::of(&e).unwrap();
        assert_eq!((a.status, a.code.as_str()), (400, "invalid_arguments"));
    }

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
    }
}
