//! Real servers on `127.0.0.1:0` for the client to talk to: axum with a
//! count of accepted connections, bodies played step by step, and a raw
//! socket that writes an answer byte for byte. (The https server is in
//! `tls.rs`.)

use axum::serve::ListenerExt;
use axum::Router;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running server; stopped when dropped.
pub struct Server {
    /// `http://127.0.0.1:<port>` (or `https://localhost:<port>`).
    pub url: String,
    /// TCP connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// The serving task, aborted on drop.
    pub task: JoinHandle<()>,
}

impl Server {
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` over plain HTTP, counting accepted connections.
pub async fn serve(router: Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let listener = listener.tap_io(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server {
        url,
        accepted,
        task,
    }
}

/// Answers the first connection with `answer`, dribbled out in pieces of 7
/// bytes (lines and chunks split anywhere), then closes it; the URL.
pub async fn serve_raw_once(answer: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut head = vec![0u8; 4096];
        let _ = s.read(&mut head).await;
        for piece in answer.chunks(7) {
            if s.write_all(piece).await.is_err() || s.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    url
}

/// `body` as a chunked HTTP answer with `status` and `content_type`, cut
/// into chunks of the `sizes` given (cycled).
pub fn chunked(status: &str, content_type: &str, body: &str, sizes: &[usize]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
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

/// A port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// One step of a [`scripted`] body.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these bytes.
    Send(Vec<u8>),
    /// Wait.
    Sleep(Duration),
    /// Break the connection (the body fails: no last chunk is sent).
    Fail,
}

/// A body that plays `steps` (chunked, as it has no length).
pub fn scripted(steps: Vec<Step>) -> axum::body::Body {
    let stream = futures::stream::unfold(steps.into_iter(), |mut steps| async move {
        loop {
            match steps.next()? {
                Step::Send(bytes) => {
                    return Some((Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)), steps))
                }
                Step::Sleep(d) => tokio::time::sleep(d).await,
                Step::Fail => return Some((Err(std::io::Error::other("dropped")), steps)),
            }
        }
    });
    axum::body::Body::from_stream(stream)
}

/// `Step::Send` of a text.
pub fn send(text: &str) -> Step {
    Step::Send(text.as_bytes().to_vec())
}
