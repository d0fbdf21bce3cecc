//! Errors of evaluation, each naming the task, file or field at fault.

use std::path::PathBuf;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A request does not fit the model's context.
    #[error("request {job} needs {tokens} tokens but the model's context holds {n_ctx}")]
    TooLong {
        /// Index of the request.
        job: usize,
        /// Tokens it needs.
        tokens: usize,
        /// The context.
        n_ctx: usize,
    },
    /// The engine failed.
    #[error("{0}")]
    Engine(String),
    /// A data or task file is missing or malformed.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (naming the field where there is one).
        message: String,
    },
    /// A task name is not known.
    #[error("unknown task {name:?} ({hint})")]
    UnknownTask {
        /// The name given.
        name: String,
        /// What is known.
        hint: String,
    },
}

impl From<huarizo_engine::EngineError> for EvalError {
    fn from(e: huarizo_engine::EngineError) -> Self {
        EvalError::Engine(e.to_string())
    }
}
