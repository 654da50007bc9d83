//! A child process for the embedded log's cross-process tests
//! (`tests/tests/embedded_log.rs`): `hold` opens the log and keeps it;
//! `append` appends from 16 tasks until killed, printing `PN-ACK <seq> <id>`
//! for every acknowledged append. Arguments: `<mode> <dir>`.

use powernode_log::embedded::EmbeddedLog;
use powernode_log::Expect;
use powernode_tests::conformance;
use std::path::Path;
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(dir)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: embedded_child hold|append <dir>");
    };
    let log = EmbeddedLog::open_shared(Path::new(&dir))?;
    println!("PN-READY");
    if mode == "append" {
        let account = conformance::fresh_account("child");
        for _ in 0..16 {
            let (log, account) = (log.clone(), account.clone());
            tokio::spawn(async move {
                loop {
                    let ev = conformance::events(&account, 1).remove(0);
                    match log.append(&ev, Expect::Any).await {
                        Ok(a) => println!("PN-ACK {} {}", a.seq, ev.id),
                        Err(e) => println!("PN-ERR {e}"),
                    }
                }
            });
        }
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}
