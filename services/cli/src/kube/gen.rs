//! `powernode completion bash|zsh|fish` (clap_complete) and `powernode
//! man [--dir DIR]` (clap_mangen), both from the command line's own
//! definition.

use anyhow::Context;
use clap::CommandFactory;
use std::path::Path;

/// Prints the completion script of `shell`.
pub fn completion(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "powernode", &mut out);
    crate::output::emit(&String::from_utf8_lossy(&out));
    Ok(())
}

/// Prints the top man page, or writes every command's page into `dir`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let cmd = crate::Cli::command();
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            crate::output::emit(&String::from_utf8_lossy(&out));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            let mut pages: Vec<String> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".1"))
                .collect();
            pages.sort();
            eprintln!("wrote {} man page(s) into {}", pages.len(), dir.display());
        }
    }
    Ok(())
}
