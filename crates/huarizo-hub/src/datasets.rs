//! Evaluation data that ships on PyPI. BIG-bench's JSON tasks come in the `bigbench==1.0.0`
//! source distribution; the first use downloads it with `pip download`, checks its sha256
//! and unpacks the tasks (`benchmark_tasks/**/task.json`) into the cache. Later uses touch
//! no network.

use crate::fsutil::{create_dir_all, io_err, TempDir};
use crate::{HubError, ResolveOptions};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The BIG-bench release read.
pub const BIGBENCH_VERSION: &str = "1.0.0";
/// sha256 of `bigbench-1.0.0.tar.gz` as PyPI serves it.
pub const BIGBENCH_SHA256: &str =
    "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2";

fn err(message: impl Into<String>) -> HubError {
    HubError::Dataset {
        name: format!("bigbench=={BIGBENCH_VERSION}"),
        message: message.into(),
    }
}

/// The folder holding BIG-bench's `benchmark_tasks` (one subfolder per task), fetching
/// and unpacking it on first use. (Unpacking layout version 2: `task*.json` files.)
pub fn bigbench_tasks(opts: &ResolveOptions) -> Result<PathBuf, HubError> {
    let root = opts
        .models_dir()?
        .join("datasets")
        .join(format!("bigbench-{BIGBENCH_VERSION}-v2"));
    let tasks = root.join("benchmark_tasks");
    if root.join(".complete").exists() {
        return Ok(tasks);
    }
    if opts.offline {
        return Err(err(format!(
            "not in the cache ({}) and offline mode forbids fetching it",
            root.display()
        )));
    }
    create_dir_all(&root)?;
    let tmp = TempDir::new_in(&root, "download")?;
    if opts.show_progress() {
        eprintln!("fetching bigbench=={BIGBENCH_VERSION} from PyPI (358 MB, once)…");
    }
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "-d",
        ])
        .arg(tmp.path())
        .arg(format!("bigbench=={BIGBENCH_VERSION}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| err(format!("cannot run python3 -m pip: {e}")))?;
    if !status.success() {
        return Err(err(format!("pip download failed ({status})")));
    }
    let archive = tmp
        .path()
        .join(format!("bigbench-{BIGBENCH_VERSION}.tar.gz"));
    let bytes = std::fs::read(&archive).map_err(io_err("read", &archive))?;
    let got = crate::alias::hex(Sha256::digest(&bytes).as_slice());
    if got != BIGBENCH_SHA256 {
        return Err(err(format!(
            "sha256 mismatch: expected {BIGBENCH_SHA256}, got {got}"
        )));
    }
    let n = unpack_tasks(&bytes, &tasks)?;
    std::fs::write(root.join(".complete"), format!("{n} task files\n"))
        .map_err(io_err("write", &root))?;
    Ok(tasks)
}

/// Unpacks every `benchmark_tasks/…/task*.json` (with the tasks' README.md and Python
/// files) of the sdist into `dest`; returns how many `task.json` files were written.
fn unpack_tasks(targz: &[u8], dest: &Path) -> Result<usize, HubError> {
    let marker = "/bigbench/benchmark_tasks/";
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(targz));
    let mut n = 0;
    let entries = archive.entries().map_err(|e| err(format!("tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| err(format!("tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| err(format!("tar: {e}")))?
            .to_string_lossy()
            .into_owned();
        let Some(at) = path.find(marker) else {
            continue;
        };
        let rel = &path[at + marker.len()..];
        // Task files (task.json; truthful_qa's task_mc.json), their READMEs, and the
        // Python of programmatic tasks (to tell them apart).
        let file = rel.rsplit('/').next().unwrap_or("");
        let wanted = (file.starts_with("task") && file.ends_with(".json"))
            || file == "README.md"
            || file.ends_with(".py");
        // Only plain relative paths inside the tasks folder are written.
        if !wanted
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            continue;
        }
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            create_dir_all(parent)?;
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| err(format!("tar {path}: {e}")))?;
        std::fs::write(&out, data).map_err(io_err("write", &out))?;
        n += usize::from(rel.ends_with("/task.json"));
    }
    if n == 0 {
        return Err(err("the archive holds no benchmark_tasks/*/task.json"));
    }
    Ok(n)
}
