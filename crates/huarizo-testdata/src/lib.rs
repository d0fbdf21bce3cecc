//! Where the tests find the real models and data that scripts/fetch-testdata.sh fetches:
//! `$HUARIZO_TESTDATA`, else `~/.cache/huarizo/testdata`. A dev-dependency only.

#![deny(missing_docs)]

use std::path::PathBuf;

/// The test-data folder.
pub fn dir() -> PathBuf {
    std::env::var_os("HUARIZO_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME or HUARIZO_TESTDATA is set");
            PathBuf::from(home).join(".cache/huarizo/testdata")
        })
}

/// A file of the test-data folder, which must exist (the panic says how to fetch it).
pub fn file(name: &str) -> PathBuf {
    let path = dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-testdata.sh",
        path.display()
    );
    path
}
