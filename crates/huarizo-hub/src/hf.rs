//! `hf:owner/repo[:file]`: Hugging Face Hub models through `hf-hub`'s blocking (ureq,
//! rustls) API (a `.gguf` file, or for a repo without one that holds `config.json` and
//! safetensors weights, the checkpoint's files in one snapshot folder), cached in hf-hub's own layout under `<models>/hf`. hf-hub downloads to
//! `<blob>.sync.part` and renames, so a broken download never shows under its final name.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::fsutil::{create_dir_all, write_atomic};
use crate::{HubError, ResolveOptions};

/// Where the file picked for a bare `hf:owner/repo` is remembered, inside the repo's
/// folder, so that the next resolve needs no listing request.
const DEFAULT_RECORD: &str = "huarizo-default-file";

/// Tags preferred, in order, when a repo holds several `.gguf` files.
const PREFERRED: &[&str] = &["q4_k_m", "q4_1", "q8_0"];

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Resolve `spec` (the text after `hf:` in `name`).
pub(crate) fn resolve(name: &str, spec: &str, opts: &ResolveOptions) -> Result<PathBuf, HubError> {
    let (repo_id, file) = parse(name, spec)?;
    let hf_dir = opts.models_dir()?.join("hf");
    let repo = Repo::new(repo_id.to_string(), RepoType::Model);
    let cached = Cache::new(hf_dir.clone()).repo(repo.clone());
    let record = hf_dir.join(repo.folder_name()).join(DEFAULT_RECORD);

    let known_file = match file {
        Some(f) => Some(f.to_string()),
        None => std::fs::read_to_string(&record)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
    };
    if let Some(path) = known_file.as_deref().and_then(|f| cached.get(f)) {
        // A recorded `config.json` stands for a checkpoint folder, recorded only once
        // every file of it was fetched.
        if known_file.as_deref() == Some(CHECKPOINT_CONFIG) {
            if let Some(dir) = path.parent() {
                return Ok(dir.to_path_buf());
            }
        }
        return Ok(path);
    }
    if opts.offline {
        return Err(HubError::Offline {
            name: name.to_string(),
            cache: hf_dir,
        });
    }

    let endpoint = endpoint(opts);
    let api = api(Cache::new(hf_dir), &endpoint, opts)?;
    let api_repo = api.repo(repo);
    let (file, picked) = match known_file {
        Some(f) => (f, false),
        None => {
            let info = api_repo.info().map_err(|e| HubError::Hf {
                url: format!("{endpoint}/api/models/{repo_id}"),
                source: Box::new(e),
            })?;
            let files: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
            if let Some(wanted) = checkpoint_files(&files) {
                // A Hugging Face checkpoint (no GGUF): fetch its files into one snapshot
                // folder and hand back the folder.
                let mut folder = None;
                for f in &wanted {
                    let path = api_repo.download(f).map_err(|e| HubError::Hf {
                        url: api_repo.url(f),
                        source: Box::new(e),
                    })?;
                    if f == CHECKPOINT_CONFIG {
                        folder = path.parent().map(Path::to_path_buf);
                    }
                }
                if let Some(dir) = record.parent() {
                    create_dir_all(dir)?;
                }
                write_atomic(&record, CHECKPOINT_CONFIG.as_bytes())?;
                return folder.ok_or_else(|| HubError::HfNoGguf {
                    repo: repo_id.to_string(),
                    files,
                });
            }
            (pick_gguf(repo_id, files)?, true)
        }
    };
    let path = api_repo.download(&file).map_err(|e| HubError::Hf {
        url: api_repo.url(&file),
        source: Box::new(e),
    })?;
    if picked {
        if let Some(dir) = record.parent() {
            create_dir_all(dir)?;
        }
        write_atomic(&record, file.as_bytes())?;
    }
    Ok(path)
}

/// The hub client: `endpoint`, the user's token, progress bars if allowed.
fn api(
    cache: Cache,
    endpoint: &str,
    opts: &ResolveOptions,
) -> Result<hf_hub::api::sync::Api, HubError> {
    ApiBuilder::from_cache(cache)
        .with_endpoint(endpoint.to_string())
        .with_token(token())
        .with_progress(opts.show_progress())
        .build()
        .map_err(|e| HubError::Hf {
            url: endpoint.to_string(),
            source: Box::new(e),
        })
}

/// Split `owner/repo[:file]`.
fn parse<'a>(name: &str, spec: &'a str) -> Result<(&'a str, Option<&'a str>), HubError> {
    let bad = |reason| HubError::BadHfName {
        name: name.to_string(),
        reason,
    };
    let (repo, file) = match spec.split_once(':') {
        Some((r, f)) => (r, Some(f)),
        None => (spec, None),
    };
    let Some((owner, rname)) = repo.split_once('/') else {
        return Err(bad("the repo must be `owner/repo`"));
    };
    if owner.is_empty() || rname.is_empty() || rname.contains('/') {
        return Err(bad("the repo must be `owner/repo`"));
    }
    if repo.chars().any(char::is_whitespace) {
        return Err(bad("the repo name has whitespace"));
    }
    if file.is_some_and(|f| f.is_empty() || Path::new(f).is_absolute() || f.contains("..")) {
        return Err(bad("the file must be a relative path inside the repo"));
    }
    Ok((repo, file))
}

/// `opts.hf_endpoint`, else `$HF_ENDPOINT`, else the public hub; no trailing `/`.
fn endpoint(opts: &ResolveOptions) -> String {
    let e = opts
        .hf_endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    e.trim_end_matches('/').to_string()
}

/// `$HF_TOKEN`, else the token `huggingface-cli login` saved under `$HF_HOME`
/// (default `~/.cache/huggingface`).
fn token() -> Option<String> {
    if let Some(t) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        return Some(t);
    }
    let home = match std::env::var_os("HF_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => dirs::home_dir()?.join(".cache").join("huggingface"),
    };
    Cache::new(home.join("hub")).token()
}

/// The file whose presence makes a repo (without GGUF files) a checkpoint folder.
const CHECKPOINT_CONFIG: &str = "config.json";

/// Files of a Hugging Face checkpoint fetched besides the weights, when the repo has them.
const CHECKPOINT_EXTRAS: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "model.safetensors.index.json",
];

/// The files to fetch for a repo that has no `.gguf` but is a checkpoint (`config.json`
/// plus top-level `.safetensors` weights): config first, then the extras it has, then
/// every top-level safetensors file. `None` for any other repo.
fn checkpoint_files(files: &[String]) -> Option<Vec<String>> {
    let has = |f: &str| files.iter().any(|x| x == f);
    let weights: Vec<&String> = files
        .iter()
        .filter(|f| f.ends_with(".safetensors") && !f.contains('/'))
        .collect();
    let no_gguf = !files
        .iter()
        .any(|f| f.to_ascii_lowercase().ends_with(".gguf"));
    if !(no_gguf && has(CHECKPOINT_CONFIG) && !weights.is_empty()) {
        return None;
    }
    let mut out = vec![CHECKPOINT_CONFIG.to_string()];
    out.extend(
        CHECKPOINT_EXTRAS
            .iter()
            .filter(|f| has(f))
            .map(|f| f.to_string()),
    );
    out.extend(weights.into_iter().cloned());
    Some(out)
}

/// The `.gguf` to fetch when none is named: the only one, else the only one carrying the
/// first tag of [`PREFERRED`] that some file carries alone.
fn pick_gguf(repo: &str, files: Vec<String>) -> Result<String, HubError> {
    let mut ggufs: Vec<String> = files
        .iter()
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        .cloned()
        .collect();
    ggufs.sort();
    match ggufs.len() {
        0 => {
            return Err(HubError::HfNoGguf {
                repo: repo.to_string(),
                files,
            })
        }
        1 => return Ok(ggufs.remove(0)),
        _ => {}
    }
    for tag in PREFERRED {
        let hits: Vec<&String> = ggufs
            .iter()
            .filter(|f| f.to_ascii_lowercase().contains(tag))
            .collect();
        if let [one] = hits.as_slice() {
            return Ok((*one).clone());
        }
    }
    Err(HubError::HfAmbiguous {
        repo: repo.to_string(),
        files: ggufs,
    })
}

/// The local folder of the Hub dataset `repo_id` (`allenai/ai2_arc`), with the data
/// files (Parquet, JSON lines, JSON) whose paths start with `config/` (or all of them
/// when `config` is `None` or matches no folder), fetched into `<models>/hf-datasets` on
/// first use through `hf-hub` and found there offline afterwards.
pub fn dataset(
    repo_id: &str,
    config: Option<&str>,
    opts: &ResolveOptions,
) -> Result<PathBuf, HubError> {
    let name = format!("hf:{repo_id}");
    let (repo_id, _) = parse(&name, repo_id)?;
    let dir = opts.models_dir()?.join("hf-datasets");
    let repo = Repo::new(repo_id.to_string(), RepoType::Dataset);
    let record = dir
        .join(repo.folder_name())
        .join(format!("huarizo-complete-{}", config.unwrap_or("all")));
    let snapshot = |rev: &str| dir.join(repo.folder_name()).join("snapshots").join(rev);
    if let Ok(rev) = std::fs::read_to_string(&record) {
        let done = snapshot(rev.trim());
        if done.is_dir() {
            return Ok(done);
        }
    }
    if opts.offline {
        return Err(HubError::Offline { name, cache: dir });
    }
    let endpoint = endpoint(opts);
    let api = api(Cache::new(dir.clone()), &endpoint, opts)?;
    let api_repo = api.repo(repo.clone());
    let info = api_repo.info().map_err(|e| HubError::Hf {
        url: format!("{endpoint}/api/datasets/{repo_id}"),
        source: Box::new(e),
    })?;
    let data: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| {
            [".parquet", ".jsonl", ".json"]
                .iter()
                .any(|e| f.ends_with(e))
        })
        .collect();
    let in_config: Vec<&String> = match config {
        Some(c) => data
            .iter()
            .filter(|f| f.starts_with(&format!("{c}/")) || f.contains(&format!("/{c}/")))
            .collect(),
        None => Vec::new(),
    };
    let wanted: Vec<&String> = if in_config.is_empty() {
        data.iter().collect()
    } else {
        in_config
    };
    for f in &wanted {
        api_repo.download(f).map_err(|e| HubError::Hf {
            url: api_repo.url(f),
            source: Box::new(e),
        })?;
    }
    if let Some(parent) = record.parent() {
        create_dir_all(parent)?;
    }
    write_atomic(&record, info.sha.as_bytes())?;
    Ok(snapshot(&info.sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses() {
        assert_eq!(parse("n", "a/b").ok(), Some(("a/b", None)));
        assert_eq!(parse("n", "a/b:x.gguf").ok(), Some(("a/b", Some("x.gguf"))));
        assert_eq!(
            parse("n", "a/b:sub/x.gguf").ok(),
            Some(("a/b", Some("sub/x.gguf")))
        );
        for bad in ["ab", "/b", "a/", "a/b/c", "a/b:", "a b/c", "a/b:../x"] {
            assert!(
                matches!(parse("n", bad), Err(HubError::BadHfName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn picks() {
        let one = names(&["README.md", "m-F16.gguf"]);
        assert_eq!(pick_gguf("o/r", one).ok().as_deref(), Some("m-F16.gguf"));
        let several = names(&["m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-F16.gguf"]);
        assert_eq!(
            pick_gguf("o/r", several).ok().as_deref(),
            Some("m-Q4_K_M.gguf")
        );
        let q41 = names(&["m-q8_0.gguf", "m-q4_1.gguf"]);
        assert_eq!(pick_gguf("o/r", q41).ok().as_deref(), Some("m-q4_1.gguf"));
        match pick_gguf("o/r", names(&["a-F16.gguf", "a-Q6_K.gguf"])) {
            Err(HubError::HfAmbiguous { repo, files }) => {
                assert_eq!(repo, "o/r");
                assert_eq!(files, names(&["a-F16.gguf", "a-Q6_K.gguf"]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            pick_gguf("o/r", names(&["README.md"])),
            Err(HubError::HfNoGguf { .. })
        ));
    }

    #[test]
    fn endpoint_trims() {
        let opts = ResolveOptions {
            hf_endpoint: Some("http://127.0.0.1:1/".into()),
            ..Default::default()
        };
        assert_eq!(endpoint(&opts), "http://127.0.0.1:1");
    }
}
