//! Helpers shared by the CLI tests: running the built binary, the test model, and the
//! check that bad input fails cleanly.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `huarizo` with `args` (model cache in the temp folder).
pub fn huarizo(args: &[&str]) -> Output {
    huarizo_with_env(args, &[])
}

/// [`huarizo`] with extra environment variables.
pub fn huarizo_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_huarizo"))
        .args(args)
        .env(
            "HUARIZO_CACHE",
            std::env::temp_dir().join("huarizo-cli-test-cache"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("run huarizo")
}

/// The SmolLM2 test model's path.
pub fn smollm2() -> String {
    huarizo_testdata::file("smollm2.gguf")
        .to_string_lossy()
        .into_owned()
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `huarizo args` and asserts it fails as bad input must: exit code 1, an error on
/// stderr that starts with `huarizo: ` and contains `fault`, no panic. Returns stderr.
pub fn fails_with(args: &[&str], fault: &str) -> String {
    let out = huarizo(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("huarizo: "), "{args:?}: {err}");
    assert!(err.contains(fault), "{args:?}: expected {fault:?} in {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}
