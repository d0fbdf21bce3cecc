//! Writes the edited copies lineage is tested on: `make_variants MODEL.gguf OUT_DIR`
//! writes perturbed.gguf, permuted.gguf, renamed.gguf (permuted, then Yi-style renames)
//! and reinit.gguf.

use huarizo_lineage::variants::{write_variant, Edit};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        return Err("usage: make_variants MODEL.gguf OUT_DIR".into());
    }
    let src = PathBuf::from(&args[1]);
    let dir = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&dir)?;
    let perturb = Edit::Perturb {
        noise: 0.02,
        rank: 8,
        lora: 0.03,
        seed: 1,
    };
    write_variant(&src, &dir.join("perturbed.gguf"), &perturb)?;
    write_variant(&src, &dir.join("permuted.gguf"), &Edit::Permute { seed: 2 })?;
    write_variant(
        &dir.join("permuted.gguf"),
        &dir.join("renamed.gguf"),
        &yi_renames(),
    )?;
    write_variant(&src, &dir.join("reinit.gguf"), &Edit::Reinit { seed: 3 })?;
    eprintln!("wrote {}", dir.display());
    Ok(())
}

/// Yi's renames of LLaMA's two norms.
fn yi_renames() -> Edit {
    Edit::Rename(vec![
        ("attn_norm".into(), "ln1".into()),
        ("ffn_norm".into(), "ln2".into()),
    ])
}
