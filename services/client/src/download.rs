//! An export streamed from a running node: `GET /v1/events/export` over
//! plain HTTP/1.1 (the API answers with a chunked body), written to a file
//! and checked frame by frame as it arrives, so a broken download is never
//! taken for a good export.

use crate::{ActionError, ApiArgs};
use anyhow::{bail, Context};
use bytes::Bytes;
use powernode_archive::{ArchiveError, Reader, Summary};
use powernode_log::Record;
use std::io::{Read, Write};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub use powernode_archive::EXPORT_PATH;

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
        let pairs: Vec<String> = [
            ("since", &self.since),
            ("until", &self.until),
            ("kind_prefix", &self.kind_prefix),
            ("account", &self.account),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
        .collect();
        if pairs.is_empty() {
            EXPORT_PATH.to_string()
        } else {
            format!("{EXPORT_PATH}?{}", pairs.join("&"))
        }
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The operator token the API options select: `--token` / `POWERNODE_TOKEN`,
/// or the admin token `powernode up` wrote into `data_dir`.
pub fn token(api: &ApiArgs, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(t) = &api.token {
        return Ok(t.trim().to_string());
    }
    let path = data_dir.join("admin.token");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| {
            format!(
                "no --token / POWERNODE_TOKEN and cannot read {}",
                path.display()
            )
        })?
        .trim()
        .to_string())
}

/// Downloads an export from the API at `url` into `out` (created or
/// replaced), checking every frame as it arrives; its summary. `on_record`
/// sees each record (for progress). A refusal of the API comes back as an
/// [`ActionError`] inside the error.
pub async fn download(
    url: &str,
    token: &str,
    query: &ExportQuery,
    out: &Path,
    on_record: impl FnMut(&Record) + Send + 'static,
) -> anyhow::Result<Summary> {
    if url.starts_with("https://") {
        bail!("https is not supported by the built-in client; use http:// or a local TLS proxy");
    }
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the powernode API at http://{addr}"))?;
    let mut conn = BufReader::with_capacity(256 * 1024, stream);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n",
        query.path()
    );
    conn.get_mut().write_all(request.as_bytes()).await?;
    let head = read_head(&mut conn)
        .await
        .with_context(|| format!("reading the answer of the powernode API at http://{addr}"))?;
    if head.status != 200 {
        return Err(refusal(&mut conn, &head).await);
    }
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
    let display = out.display().to_string();
    let check = tokio::task::spawn_blocking(move || check(rx, file, &display, on_record));
    let body = copy_body(&mut conn, &head, &tx).await;
    if let Err(e) = body {
        // The checker reports it with the offset where the export broke.
        let _ = tx.send(Err(e)).await;
    }
    drop(tx);
    check.await.context("the export checker stopped")?
}

/// Reads the export arriving on `rx` into `file`, checking it.
fn check(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    file: std::fs::File,
    display: &str,
    mut on_record: impl FnMut(&Record),
) -> anyhow::Result<Summary> {
    let tee = Tee {
        rx,
        chunk: Bytes::new(),
        file: std::io::BufWriter::with_capacity(256 * 1024, file),
    };
    let at = |e: ArchiveError| anyhow::anyhow!("the export from the API {e}");
    let mut reader = Reader::new(tee).map_err(at)?;
    for item in reader.by_ref() {
        on_record(&item.map_err(at)?);
    }
    let summary = reader.summary().cloned().context("export not complete")?;
    reader
        .into_inner()
        .file
        .flush()
        .with_context(|| format!("cannot write {display}"))?;
    Ok(summary)
}

/// Hands the body chunks to the [`Reader`], writing them to the file as it goes.
struct Tee {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
    file: std::io::BufWriter<std::fs::File>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => self.chunk = b,
            }
        }
        let n = buf.len().min(self.chunk.len());
        let part = self.chunk.split_to(n);
        self.file.write_all(&part)?;
        buf[..n].copy_from_slice(&part);
        Ok(n)
    }
}

/// Status and the headers that matter.
struct Head {
    status: u16,
    length: Option<u64>,
    chunked: bool,
}

async fn read_head(conn: &mut BufReader<TcpStream>) -> anyhow::Result<Head> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        bail!("the connection closed without an answer");
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let mut head = Head {
        status,
        length: None,
        chunked: false,
    };
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            bail!("malformed HTTP answer: headers cut short");
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => head.length = Some(value.parse().context("bad Content-Length")?),
            "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
}

/// The API's `{"error": {code, message}}` as an [`ActionError`].
async fn refusal(conn: &mut BufReader<TcpStream>, head: &Head) -> anyhow::Error {
    let mut raw = Vec::new();
    let read = match head.length {
        Some(n) => conn.take(n).read_to_end(&mut raw).await,
        None => conn.read_to_end(&mut raw).await,
    };
    if let Err(e) = read {
        return anyhow::anyhow!("the API answered {} and then: {e}", head.status);
    }
    let body: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    let error = &body["error"];
    ActionError {
        status: head.status,
        code: error["code"].as_str().unwrap_or("error").to_string(),
        message: error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&raw).into_owned()),
    }
    .into()
}

fn cut_short() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the API closed the connection before the end of the export",
    )
}

/// Sends the body to `tx` as it arrives: chunked, by length, or to the end.
async fn copy_body(
    conn: &mut BufReader<TcpStream>,
    head: &Head,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    if !head.chunked {
        let mut left = head.length.unwrap_or(u64::MAX);
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = conn.read(&mut buf[..want]).await?;
            if n == 0 {
                return match head.length {
                    Some(_) => Err(cut_short()),
                    None => Ok(()),
                };
            }
            left -= n as u64;
            if tx
                .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(cut_short());
        }
        let size = line.trim().split(';').next().unwrap_or_default();
        let mut left = u64::from_str_radix(size.trim(), 16).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("malformed chunk size {size:?} in the API's answer"),
            )
        })?;
        if left == 0 {
            // Trailers (none expected) up to the empty line.
            loop {
                line.clear();
                if conn.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = conn.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(cut_short());
            }
            left -= n as u64;
            if tx
                .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        let mut crlf = [0u8; 2];
        conn.read_exact(&mut crlf).await.map_err(|_| cut_short())?;
    }
}
