//! `powernode events verify`: is this log (an export file, a stream, the
//! embedded log of a stopped node) intact? Every frame and the trailer of a
//! file, every seal against the records it covers (by digest, one
//! signature per seal), and the agent signatures of the records past the
//! last seal, by folding the log as `powernode replay` does. A changed,
//! missing, reordered or inserted record, or a forged seal, fails it,
//! named by seq. It says which checks it used.

use super::super::output::{emit, print_data, Format};
use powernode_archive::{Bound, Source, SourceArgs};
use powernode_inspect::replay::state_hash;
use powernode_inspect::sealed::{fold_sealed, SealKeyArgs};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// `powernode events verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Where to read the log (without --file or --nats: the embedded log of
    /// a stopped `powernode up` in --data-dir).
    #[command(flatten)]
    pub source: SourceArgs,
    /// The seal key the log's seals are checked with.
    #[command(flatten)]
    pub seal: SealKeyArgs,
    /// `--data-dir` of the `events` group.
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// `-o` of the `events` group.
    #[arg(skip = Format::Table)]
    pub output: Format,
}

/// Runs `powernode events verify`.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let source = Source::open(&args.source, &args.data_dir).await?;
    let key = args.seal.resolve(&args.data_dir)?;
    let (folded, mode) = fold_sealed(&source, Bound::End, key, true).await?;
    let took = started.elapsed().as_secs_f64();
    let s = &folded.stats;
    let hash = format!("sha256:{}", state_hash(&folded.state));
    if args.output.is_data() {
        print_data(
            args.output,
            &json!({
                "source": source.describe(),
                "records": s.records,
                "first_seq": s.first_seq,
                "last_seq": s.last_seq,
                "refused": s.refused.len(),
                "integrity": mode,
                "state_hash": hash,
                "seconds": took,
            }),
        );
        return Ok(());
    }
    emit(&format!(
        "source:      {}\n{}\nrefused:     {} record(s) (as the live consumers refused them)\nstate:       {hash}  seq {}\ntook:        {took:.2} s\n",
        source.describe(),
        mode.describe(s.records),
        s.refused.len(),
        s.last_seq,
    ));
    Ok(())
}
