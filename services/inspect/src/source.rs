//! The log to inspect, with a running node's API as the fallback.

use anyhow::Context;
use powernode_archive::source::{open_embedded, Local};
use powernode_archive::{OpenedSource, Source, SourceArgs, Summary};
use powernode_client::{Api, ExportQuery};
use powernode_log::Record;
use std::path::Path;

/// Opens a log source like [`Source::open`], but without --file or --nats reads the
/// running node through its API when the embedded log in `data_dir` is
/// missing or cannot be opened (a running `powernode up` holds it): the
/// whole log the token may see (`GET /v1/events/export`) is downloaded
/// into a temporary export file, deleted when the answer is dropped.
/// `connect` makes the API client (the CLI's `ApiArgs::connect`: it may
/// read the admin token from `data_dir`); it is only called for the
/// fallback.
pub async fn open_source(
    args: &SourceArgs,
    data_dir: &Path,
    connect: impl FnOnce() -> anyhow::Result<Api>,
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
    let api = connect().with_context(|| format!("{why}; and the API cannot be used"))?;
    download_export(&api, &ExportQuery::default(), &download, |_| {})
        .await
        .with_context(|| {
            format!(
                "{why}; and exporting through the API at {} failed",
                api.url()
            )
        })?;
    Ok(OpenedSource::downloaded(
        download,
        format!("the API at {}", api.url()),
    ))
}

/// Downloads an export from the API into `out` (created or replaced),
/// checking every frame as it arrives ([`powernode_archive::download`]);
/// its summary. `on_record` sees each record (for progress). A refusal of
/// the API is a [`powernode_client::Refusal`] inside the error.
pub async fn download_export(
    api: &Api,
    query: &ExportQuery,
    out: &Path,
    on_record: impl FnMut(&Record) + Send + 'static,
) -> anyhow::Result<Summary> {
    let body = api.export(query).await?;
    powernode_archive::download::receive(body.into_stream(), out, on_record).await
}
