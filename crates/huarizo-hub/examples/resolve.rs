//! Resolve model names to local files, fetching them if needed, and print each path:
//! `cargo run -p huarizo-hub --example resolve -- [--offline] [NAME...]`
//! (no name: the default model). Honors `HUARIZO_CACHE` and `HF_ENDPOINT`.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut opts = huarizo_hub::ResolveOptions::default();
    let mut names: Vec<String> = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--offline" => opts.offline = true,
            _ => names.push(arg),
        }
    }
    if names.is_empty() {
        names.push(huarizo_hub::DEFAULT_MODEL.to_string());
    }
    for name in &names {
        let t = Instant::now();
        match huarizo_hub::resolve(name, &opts) {
            Ok(path) => {
                println!("{}", path.display());
                eprintln!("{name}: {:.2} s", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                eprintln!("huarizo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
