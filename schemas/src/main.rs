//! `powernode-schemas`: regenerates the checked-in event schemas and examples.
//!
//! ```text
//! cargo run -p powernode-schemas              # (re)write the files
//! cargo run -p powernode-schemas -- --check   # exit 1 and list drift
//! ```

use anyhow::{bail, Context, Result};
use powernode_schemas::{crate_dir, drift, generate, write, REGENERATE};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: powernode-schemas [--check] [--dir <schemas crate dir>]";

fn main() -> Result<ExitCode> {
    let mut check = false;
    let mut dir = crate_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--dir" => dir = PathBuf::from(args.next().context(USAGE)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }

    let expected = generate();
    if check {
        let drifted =
            drift(&dir, &expected).with_context(|| format!("reading {}", dir.display()))?;
        if drifted.is_empty() {
            println!(
                "{} schema files up to date in {}",
                expected.len(),
                dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "{} schema files drifted from the Rust types in {}:",
            drifted.len(),
            dir.display()
        );
        for d in &drifted {
            eprintln!("  {d}");
        }
        eprintln!("run `{REGENERATE}` and commit the result");
        return Ok(ExitCode::FAILURE);
    }

    let changes = write(&dir, &expected).with_context(|| format!("writing {}", dir.display()))?;
    for c in &changes {
        println!("{c}");
    }
    println!(
        "{} schema files in {} ({} updated)",
        expected.len(),
        dir.display(),
        changes.len()
    );
    Ok(ExitCode::SUCCESS)
}
