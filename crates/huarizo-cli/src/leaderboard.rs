//! `huarizo leaderboard RESULTS…`: models ranked by mean score, as Markdown and HTML.

use anyhow::{Context, Result};
use huarizo_eval::leaderboard::{Entry, Leaderboard};
use huarizo_eval::EvalError;
use std::path::PathBuf;

/// Flags of `huarizo leaderboard`.
#[derive(clap::Args, Debug)]
pub struct LeaderboardArgs {
    /// Results files written by `huarizo eval -o` (or lm-evaluation-harness).
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,
    /// Write the Markdown here instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub md: Option<PathBuf>,
    /// Also write the board as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// The title of both pages.
    #[arg(long, default_value = "huarizo leaderboard")]
    pub title: String,
}

/// Runs `huarizo leaderboard`.
pub fn leaderboard(args: &LeaderboardArgs) -> Result<()> {
    let mut entries = Vec::with_capacity(args.results.len());
    for path in &args.results {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::File {
            path: path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        entries.push(Entry::parse(path, &text)?);
    }
    let board = Leaderboard::new(&args.title, entries);
    if let Some(path) = &args.html {
        std::fs::write(path, board.html())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match &args.md {
        Some(path) => std::fs::write(path, board.markdown())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{}", board.markdown()),
    }
    Ok(())
}
