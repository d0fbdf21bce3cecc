//! Errors of lineage, each naming the file at fault.

use std::path::PathBuf;

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    /// The model file could not be opened or parsed.
    #[error("{}: {message}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A tensor could not be read.
    #[error("{}: tensor {tensor}: {message}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The cause.
        message: String,
    },
    /// A directory given to `scan` could not be read.
    #[error("{}: {message}", path.display())]
    Scan {
        /// The directory.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// Writing a report failed.
    #[error("{}: {message}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}
