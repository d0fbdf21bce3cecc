//! `huarizo lineage A B` and `huarizo lineage scan DIR…`.

use anyhow::{bail, Context, Result};
use huarizo_lineage::{scan, Options};
use std::path::PathBuf;

/// Flags of `huarizo lineage`.
#[derive(clap::Args, Debug)]
pub struct LineageArgs {
    /// Two models A B (paths, `hf:` names or aliases; A is the presumed base), or `scan`
    /// followed by directories of GGUF files.
    #[arg(required = true, num_args = 2..)]
    pub models: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Skip the behaviour probe (running both models on probe texts).
    #[arg(long)]
    pub no_behaviour: bool,
}

/// Runs `huarizo lineage`.
pub fn lineage(args: &LineageArgs) -> Result<()> {
    let options = Options {
        threads: args.threads,
        progress: true,
        behaviour: !args.no_behaviour,
    };
    if args.models[0] == "scan" {
        let dirs: Vec<PathBuf> = args.models[1..].iter().map(PathBuf::from).collect();
        let report = scan::scan(&dirs, &options)?;
        if report.rows.is_empty() {
            bail!("no GGUF files in {}", args.models[1..].join(", "));
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.to_markdown());
        }
        return Ok(());
    }
    if args.models.len() != 2 {
        bail!(
            "lineage compares two models (got {}); use `huarizo lineage scan DIR…` for more",
            args.models.len()
        );
    }
    let a = crate::commands::resolve(&args.models[0])?;
    let b = crate::commands::resolve(&args.models[1])?;
    let report = huarizo_lineage::compare(&a, &b, &options)?;
    if let Some(path) = &args.html {
        std::fs::write(path, huarizo_lineage::html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
