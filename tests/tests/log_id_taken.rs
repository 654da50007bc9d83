//! A "duplicate" answer is checked against the stored record, on both log
//! backends: an event id already stored for a different record (another
//! aggregate, kind or account) is refused with `LogError::IdTaken`, and
//! nothing is stored (issue 13, finding 2). The check itself is in the
//! conformance suite (`conformance::duplicate_id_of_another_record_is_refused`,
//! also run by `jetstream_log.rs`'s three-node `run_all`).
//!
//! `cargo nextest run -p powernode-tests --test log_id_taken`

use powernode_log::embedded::EmbeddedLog;
use powernode_tests::conformance;
use powernode_tests::jetstream_support::open;
use powernode_tests::nats::NatsServer;

#[tokio::test]
async fn embedded_log_refuses_an_id_taken_by_another_record() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = EmbeddedLog::open_shared(&dir.path().join("log"))?;
    conformance::duplicate_id_of_another_record_is_refused(&log).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_log_refuses_an_id_taken_by_another_record() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let log = open(&server).await?;
    conformance::duplicate_id_of_another_record_is_refused(&log).await
}
