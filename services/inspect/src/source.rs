//! The log to inspect, with a running node's API as the fallback.

use anyhow::Context;
use powernode_archive::source::{open_embedded, Local};
use powernode_archive::{OpenedSource, Source, SourceArgs};
use powernode_client::ApiArgs;
use std::path::Path;

/// Opens a log source like [`Source::open`], but without --file or --nats reads the
/// running node through its API when the embedded log in `data_dir` is
/// missing or cannot be opened (a running `powernode up` holds it): the
/// whole log the token may see (`GET /v1/events/export`) is downloaded
/// into a temporary export file, deleted when the answer is dropped.
pub async fn open_source(
    args: &SourceArgs,
    data_dir: &Path,
    api: &ApiArgs,
) -> anyhow::Result<OpenedSource> {
    if args.file.is_some() || args.nats.is_some() {
        return Ok(OpenedSource::from(Source::open(args, data_dir).await?));
    }
    let why = match open_embedded(data_dir) {
        Local::Log(log) => return Ok(OpenedSource::from(Source::Log(log))),
        Local::Unavailable(why) => why,
    };
    let download = tempfile::Builder::new()
        .prefix("powernode-export-")
        .suffix(".pnx")
        .tempfile()
        .context("cannot create a temporary file for the download")?
        .into_temp_path();
    let token = powernode_client::download::token(api, data_dir)
        .with_context(|| format!("{why}; and the API cannot be used"))?;
    let query = powernode_client::download::ExportQuery::default();
    powernode_client::download::download(&api.url, &token, &query, &download, |_| {})
        .await
        .with_context(|| format!("{why}; and exporting through the API at {} failed", api.url))?;
    Ok(OpenedSource::downloaded(
        download,
        format!("the API at {}", api.url),
    ))
}
