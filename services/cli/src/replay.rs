//! `powernode replay`: the fleet rebuilt from the log up to a point and
//! printed (`--show`, table or JSON), its digest (`--hash`), or what each
//! event between two points changed (`--diff A B`). The work is
//! [`powernode_inspect::replay`]; this file parses and prints.
//!
//! Output is deterministic: the same log to the same point prints the same
//! bytes (no clock, no hash-map order; timing goes to the progress bar on
//! stderr only).

use super::output::{emit, line, print_data, Format};
use crate::replay_show::{self as show, Show};
use powernode_archive::{Bound, Source, SourceArgs};
use powernode_inspect::replay::{self, DiffTotals, EventDiff, Folded};
use powernode_inspect::sealed::Mode;
use powernode_runtime::replay::ReplayStats;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Refusals listed in the table header (all of them with `-o json`).
const MAX_REFUSALS: usize = 20;

/// `powernode replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Where to read the log (without --file or --nats: the embedded log of
    /// a stopped `powernode up` in --data-dir).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Where `powernode up` keeps its state (the global `--data-dir`).
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// Stop at the last record at or before this point: a sequence number
    /// or an RFC 3339 time (default: the end of the log).
    #[arg(long, value_name = "SEQ|TIME")]
    pub until: Option<String>,
    /// What to print of each account.
    #[arg(long, value_enum, default_value = "all")]
    pub show: Show,
    /// Print only the digest of the rebuilt state (`sha256:<hex>  seq <n>`).
    #[arg(long, conflicts_with = "diff")]
    pub hash: bool,
    /// What changed between two points (sequence numbers or RFC 3339
    /// times), event by event: the state is rebuilt through A, then each
    /// event after A through B is shown with the paths it changed.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "until")]
    pub diff: Option<Vec<String>>,
    /// Skip the ed25519 checks of agent events. The intake and the live
    /// consumers already verified every stored signature, and recorded the
    /// records they refused as `system.log.record_rejected`: those are
    /// refused here too, everything else is admitted as the consumers do
    /// minus the signature check. Faster; only as faithful as the log's
    /// recorded rejections (a bad record no consumer had reached yet when
    /// the log was exported would be let through).
    #[arg(long)]
    pub trust_signatures: bool,
    /// The seal key sealed ranges are checked with.
    #[command(flatten)]
    pub seal: powernode_inspect::sealed::SealKeyArgs,
    /// The global `-o`.
    #[arg(skip = Format::Table)]
    pub output: Format,
}

/// Runs `powernode replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let source = Source::open(&args.source, &args.data_dir).await?;
    if let Some(points) = &args.diff {
        let (a, b) = match points.as_slice() {
            [a, b] => (Bound::parse(a)?, Bound::parse(b)?),
            _ => anyhow::bail!("--diff takes two points: A B"),
        };
        let backwards = match (a, b) {
            (Bound::Seq(x), Bound::Seq(y)) => x >= y,
            (Bound::Time(x), Bound::Time(y)) => x >= y,
            _ => false,
        };
        if backwards {
            anyhow::bail!("--diff A B: A must come before B");
        }
        return run_diff(&args, &source, a, b).await;
    }
    let until = match args.until.as_deref() {
        Some(u) => Bound::parse(u)?,
        None => Bound::End,
    };
    let (folded, mode) = fold(&source, until, &args).await?;
    let hash = format!("sha256:{}", replay::state_hash(&folded.state));
    let mut header = header_json(&source, until, &folded.stats, &args, &hash);
    header["integrity"] = serde_json::to_value(&mode).unwrap_or(Value::Null);
    match (args.hash, args.output.is_data()) {
        (true, false) => line(&format!("{hash}  seq {}", folded.stats.last_seq)),
        (true, true) => print_data(args.output, &header),
        (false, true) => {
            let mut out = header;
            out["accounts"] = show::json(&folded.state, args.show);
            print_data(args.output, &out);
        }
        (false, false) => {
            let mut out = header_text(&source, until, &folded, &args, &hash);
            let _ = writeln!(out, "integrity:   {}", mode.describe(folded.stats.records));
            out.push_str(&show::tables(&folded.state, args.show));
            emit(&out);
        }
    }
    Ok(())
}

/// The fold `args` ask for: trusted, or verified by the log's seals (every
/// signature, when the log has none); and how it was checked.
async fn fold(source: &Source, until: Bound, args: &ReplayArgs) -> anyhow::Result<(Folded, Mode)> {
    if args.trust_signatures {
        return Ok((
            replay::fold(source, until, true, true).await?,
            Mode::Trusted,
        ));
    }
    let key = args.seal.resolve(&args.data_dir)?;
    powernode_inspect::sealed::fold_sealed(source, until, key, true).await
}

/// `seq 12` or the RFC 3339 time, as given.
fn bound_text(b: Bound) -> String {
    match b {
        Bound::Seq(s) => format!("seq {s}"),
        Bound::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        Bound::End => "the end of the log".to_string(),
    }
}

fn bound_json(b: Bound) -> Value {
    match b {
        Bound::Seq(s) => json!(s),
        Bound::Time(t) => json!(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Bound::End => Value::Null,
    }
}

fn mode(args: &ReplayArgs) -> &'static str {
    if args.trust_signatures {
        "trusted (not re-verified; refusals as recorded in the log)"
    } else {
        "verified"
    }
}

fn header_json(
    source: &Source,
    until: Bound,
    stats: &ReplayStats,
    args: &ReplayArgs,
    hash: &str,
) -> Value {
    let refused: Vec<Value> = stats
        .refused
        .iter()
        .map(|(seq, reason)| json!({ "seq": seq, "reason": reason }))
        .collect();
    json!({
        "source": source.describe(),
        "until": bound_json(until),
        "first_seq": stats.first_seq,
        "seq": stats.last_seq,
        "records": stats.records,
        "applied": stats.applied,
        "refused": refused,
        "signatures": if args.trust_signatures { "trusted" } else { "verified" },
        "state_hash": hash,
    })
}

fn header_text(
    source: &Source,
    until: Bound,
    folded: &Folded,
    args: &ReplayArgs,
    hash: &str,
) -> String {
    let s = &folded.stats;
    let mut out = String::new();
    let _ = writeln!(out, "source:      {}", source.describe());
    let range = if s.records == 0 {
        "no records".to_string()
    } else {
        format!("seq {} through {}", s.first_seq, s.last_seq)
    };
    let _ = writeln!(out, "replayed:    {range} (until {})", bound_text(until));
    let _ = writeln!(
        out,
        "records:     {} read, {} applied, {} refused",
        s.records,
        s.applied,
        s.refused.len()
    );
    let _ = writeln!(out, "signatures:  {}", mode(args));
    let _ = writeln!(out, "state:       {hash}");
    for (seq, reason) in s.refused.iter().take(MAX_REFUSALS) {
        let _ = writeln!(out, "  refused #{seq}: {reason}");
    }
    if s.refused.len() > MAX_REFUSALS {
        let _ = writeln!(
            out,
            "  … {} more refused (-o json)",
            s.refused.len() - MAX_REFUSALS
        );
    }
    out
}

/// `--diff A B`.
async fn run_diff(args: &ReplayArgs, source: &Source, a: Bound, b: Bound) -> anyhow::Result<()> {
    let folded = replay::fold(source, a, args.trust_signatures, true).await?;
    let json = args.output.is_data();
    if !json {
        let mut out = String::new();
        let _ = writeln!(out, "source:      {}", source.describe());
        let _ = writeln!(
            out,
            "from:        {} (state through seq {}: {} applied, {} refused; {})",
            bound_text(a),
            folded.stats.last_seq,
            folded.stats.applied,
            folded.stats.refused.len(),
            format_args!("sha256:{}", replay::state_hash(&folded.state)),
        );
        let _ = writeln!(out, "to:          {}", bound_text(b));
        let _ = writeln!(out, "signatures:  {}", mode(args));
        emit(&out);
    }
    let (state, totals) = replay::diff(source, folded, b, |d| {
        if json {
            line(&serde_json::to_string(d).unwrap_or_default());
        } else {
            emit(&render_event(d));
        }
    })
    .await?;
    if !json {
        emit(&render_totals(&totals, &replay::state_hash(&state)));
    }
    Ok(())
}

/// One event of a diff: `#seq kind aggregate actor` and its changes.
pub fn render_event(d: &EventDiff) -> String {
    let mut out = format!(
        "\n#{}  {}  {}  {}  (account {})\n",
        d.seq,
        d.kind,
        d.aggregate,
        d.actor.as_deref().unwrap_or("-"),
        d.account
    );
    if let Some(reason) = &d.refused {
        let _ = writeln!(out, "    refused: {reason} (changed nothing)");
    } else if d.changes.is_empty() {
        out.push_str("    (changed nothing)\n");
    } else {
        for c in &d.changes {
            let _ = writeln!(out, "    {}", c.render());
        }
    }
    out
}

fn render_totals(t: &DiffTotals, hash: &str) -> String {
    if t.records == 0 {
        return "\nno events in the range\n".to_string();
    }
    format!(
        "\n{} event(s) through seq {}: {} changed the state, {} changed nothing, {} refused\nstate:       sha256:{hash}\n",
        t.records,
        t.last_seq,
        t.changed,
        t.records - t.changed - t.refused,
        t.refused
    )
}
