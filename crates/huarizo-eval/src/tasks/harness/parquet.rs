//! Parquet data files (the Hub's dataset format), read row by row into JSON objects.

use crate::error::EvalError;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;
use std::path::Path;

/// Every row of a Parquet file as a JSON object (nested lists and structs included).
pub fn read(path: &Path) -> Result<Vec<Value>, EvalError> {
    let err = |m: String| EvalError::File {
        path: path.to_path_buf(),
        message: m,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| err(format!("not a Parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| err(format!("unreadable rows: {e}")))?;
    let mut docs = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| err(format!("row {i}: {e}")))?;
        docs.push(row.to_json_value());
    }
    Ok(docs)
}
