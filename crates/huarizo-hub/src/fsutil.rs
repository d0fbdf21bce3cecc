//! Temporary files and folders inside the cache, and the fsync + rename that publishes a
//! finished file. Everything half-done carries a leading `.` and is removed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::HubError;

/// Wrap an `io::Error` with the operation and path.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HubError {
    let path = path.to_path_buf();
    move |source| HubError::Io { op, path, source }
}

/// A name unique to this process and call: `.{stem}.{pid}-{n}{suffix}`.
fn unique_name(stem: &str, suffix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(".{stem}.{}-{n}{suffix}", std::process::id())
}

/// `create_dir_all` with the path in the error.
pub(crate) fn create_dir_all(dir: &Path) -> Result<(), HubError> {
    std::fs::create_dir_all(dir).map_err(io_err("create folder", dir))
}

/// A folder removed (with its contents) when dropped.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh folder inside `parent`.
    pub(crate) fn new_in(parent: &Path, stem: &str) -> Result<TempDir, HubError> {
        let path = parent.join(unique_name(stem, ".tmp"));
        std::fs::create_dir(&path).map_err(io_err("create folder", &path))?;
        Ok(TempDir { path })
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A file being written under a temporary name next to its final `dest`; removed on drop
/// unless [`PartialFile::persist`] published it.
pub(crate) struct PartialFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    done: bool,
}

impl PartialFile {
    /// Create the temporary file in `dest`'s folder.
    pub(crate) fn create(dest: &Path) -> Result<PartialFile, HubError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let stem = dest
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(unique_name(&stem, ".partial"));
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        Ok(PartialFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
            done: false,
        })
    }

    /// The temporary path (for error messages).
    pub(crate) fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// The open file.
    pub(crate) fn file(&mut self) -> Result<&mut File, HubError> {
        let tmp = &self.tmp;
        self.file.as_mut().ok_or_else(|| HubError::Io {
            op: "write",
            path: tmp.clone(),
            source: std::io::Error::other("file already closed"),
        })
    }

    /// fsync, rename over `dest`, fsync the folder; returns `dest`.
    pub(crate) fn persist(mut self) -> Result<PathBuf, HubError> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(io_err("fsync", &self.tmp))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(io_err("rename into", &self.dest))?;
        #[cfg(unix)]
        if let Some(dir) = self.dest.parent() {
            // Makes the rename itself durable; a failure here loses nothing already written.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write `contents` to `dest` atomically (small files: the hf default-file record).
pub(crate) fn write_atomic(dest: &Path, contents: &[u8]) -> Result<(), HubError> {
    use std::io::Write;
    let mut part = PartialFile::create(dest)?;
    let path = part.tmp_path().to_path_buf();
    part.file()?
        .write_all(contents)
        .map_err(io_err("write", &path))?;
    part.persist().map(|_| ())
}
