//! An export arriving as a stream of bytes (the body of
//! `GET /v1/events/export`, from the HTTP client's `ExportBody`), written
//! to a file and checked frame by frame by the [`Reader`] as it arrives, so
//! a broken download is never taken for a good export. No HTTP here: the
//! caller opens the export with the client and hands over its body.

use crate::{ArchiveError, Reader, Summary};
use anyhow::Context;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use powernode_log::Record;
use std::io::{Read, Write};
use std::path::Path;
use tokio::sync::mpsc;

/// Writes `body` into `out` (created or replaced), checking every frame as
/// it arrives; the export's summary. `on_record` sees each record (for
/// progress). An error of the stream (a connection that broke before the
/// end) is reported by the reader with the byte offset where the export
/// broke; a body that ends early is an incomplete export, never a good one.
pub async fn receive<S, E>(
    body: S,
    out: &Path,
    on_record: impl FnMut(&Record) + Send + 'static,
) -> anyhow::Result<Summary>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
    let display = out.display().to_string();
    let check = tokio::task::spawn_blocking(move || check(rx, file, &display, on_record));
    let mut body = std::pin::pin!(body);
    while let Some(piece) = body.next().await {
        let failed = piece.is_err();
        // The checker reports an error with the offset where the export broke.
        let piece = piece
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, chain_text(&e)));
        if tx.send(piece).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    check.await.context("the export checker stopped")?
}

/// `e` and its sources, `: `-separated.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
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

/// Hands the body pieces to the [`Reader`], writing them to the file as it
/// goes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Writer;

    fn export(n: u64) -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).expect("writer");
        for seq in 1..=n {
            w.write(&Record {
                seq,
                subject: format!("pn.evt.acct-1.cluster.c-{seq}.system.k3s.cluster.requested"),
                stored_at: chrono::Utc::now(),
                bytes: vec![seq as u8; 10].into(),
            })
            .expect("write");
        }
        w.finish().expect("finish")
    }

    #[tokio::test]
    async fn a_whole_export_is_written_and_counted() {
        let bytes = export(5);
        let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("x.pnx");
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = seen.clone();
        let summary = receive(futures::stream::iter(pieces), &out, move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .await
        .expect("receive");
        assert_eq!(summary.records, 5);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 5);
        assert_eq!(std::fs::read(&out).expect("read"), bytes);
    }

    #[tokio::test]
    async fn a_broken_or_short_body_is_not_an_export() {
        let bytes = export(5);
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("x.pnx");
        let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
        let short = futures::stream::iter(vec![Ok::<_, std::io::Error>(half.clone())]);
        let e = receive(short, &out, |_| {}).await.expect_err("short");
        assert!(
            format!("{e:#}").contains("the export from the API"),
            "{e:#}"
        );
        let broken = futures::stream::iter(vec![
            Ok(half),
            Err(std::io::Error::other("the connection broke")),
        ]);
        let e = receive(broken, &out, |_| {}).await.expect_err("broken");
        assert!(format!("{e:#}").contains("the connection broke"), "{e:#}");
    }
}
