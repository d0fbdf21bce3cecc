//! Task data: the documents of one split, read from local files in the layouts the
//! Hugging Face Hub uses for datasets (`<config>/<split>-00000-of-00001.parquet`,
//! `data/<split>.jsonl`, `<config>/<split>/0000.parquet`, …) or named one by one in the
//! task's `dataset_kwargs.data_files`. JSON lines, JSON arrays and Parquet are read.

use crate::error::EvalError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a task's documents are.
#[derive(Clone, Debug)]
pub enum DataSource {
    /// Files by split name.
    Files(BTreeMap<String, Vec<PathBuf>>),
    /// A dataset folder in a Hub layout; splits are found by file name.
    Folder {
        /// The dataset's root folder.
        root: PathBuf,
        /// The configuration (`dataset_name`), a subfolder.
        config: Option<String>,
    },
}

const EXTENSIONS: &[&str] = &["parquet", "jsonl", "json"];

/// Other names the Hub accepts for a split, tried when no file has the exact name.
fn synonyms(split: &str) -> &'static [&'static str] {
    match split {
        "train" => &["training"],
        "validation" => &["valid", "val", "dev"],
        "test" => &["testing", "eval", "evaluation"],
        _ => &[],
    }
}

fn is_data_file(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether a file name names `split` as one of its words (`test-00000-of-00001`,
/// `hellaswag_train`, `dev`).
fn names_split(path: &Path, split: &str) -> bool {
    let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    stem.split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| w == split)
}

/// Files of `split` in `dir`: a subfolder named after the split, or files whose names
/// name it.
fn files_in(dir: &Path, split: &str) -> Vec<PathBuf> {
    let sub = dir.join(split);
    if sub.is_dir() {
        let files: Vec<PathBuf> = sorted_entries(&sub)
            .into_iter()
            .filter(|p| is_data_file(p))
            .collect();
        if !files.is_empty() {
            return files;
        }
    }
    sorted_entries(dir)
        .into_iter()
        .filter(|p| is_data_file(p) && names_split(p, split))
        .collect()
}

impl DataSource {
    /// The files of `split`, or none when the dataset does not have it.
    pub fn files(&self, split: &str) -> Vec<PathBuf> {
        match self {
            DataSource::Files(map) => map.get(split).cloned().unwrap_or_default(),
            DataSource::Folder { root, config } => {
                let mut dirs = Vec::new();
                if let Some(c) = config {
                    dirs.push(root.join(c));
                    dirs.push(root.join("data").join(c));
                }
                dirs.push(root.join("data"));
                dirs.push(root.clone());
                for name in std::iter::once(split).chain(synonyms(split).iter().copied()) {
                    for d in dirs.iter().filter(|d| d.is_dir()) {
                        let found = files_in(d, name);
                        if !found.is_empty() {
                            return found;
                        }
                    }
                }
                Vec::new()
            }
        }
    }

    /// The documents of `split`, `None` when the dataset does not have it.
    pub fn load(&self, split: &str) -> Result<Option<Vec<Value>>, EvalError> {
        let files = self.files(split);
        if files.is_empty() {
            return Ok(None);
        }
        let mut docs = Vec::new();
        for f in &files {
            docs.extend(read_file(f)?);
        }
        Ok(Some(docs))
    }

    /// Where the data is, for messages.
    pub fn describe(&self) -> String {
        match self {
            DataSource::Files(map) => map
                .iter()
                .map(|(k, v)| {
                    let files: Vec<String> = v.iter().map(|p| p.display().to_string()).collect();
                    format!("{k}: {}", files.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
            DataSource::Folder { root, config } => match config {
                Some(c) => format!("{} (configuration {c})", root.display()),
                None => root.display().to_string(),
            },
        }
    }
}

fn file_error(path: &Path, message: impl Into<String>) -> EvalError {
    EvalError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Every document (a JSON object) in a data file.
pub fn read_file(path: &Path) -> Result<Vec<Value>, EvalError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "parquet" {
        return super::parquet::read(path);
    }
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
    let trimmed = text.trim_start();
    if ext == "json" && trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| file_error(path, format!("not valid JSON: {e}")))?;
        return objects(path, v.as_array().cloned().unwrap_or_default());
    }
    if ext == "json" && trimmed.starts_with('{') {
        // `{"data": [...]}` (one list field), else JSON lines.
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) {
            let lists: Vec<&Value> = map.values().filter(|v| v.is_array()).collect();
            if map.len() == 1 && lists.len() == 1 {
                return objects(path, lists[0].as_array().cloned().unwrap_or_default());
            }
            return Ok(vec![Value::Object(map)]);
        }
    }
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| file_error(path, format!("line {}: not valid JSON: {e}", i + 1)))?;
        if !v.is_object() {
            return Err(file_error(
                path,
                format!("line {}: a document must be a JSON object", i + 1),
            ));
        }
        docs.push(v);
    }
    Ok(docs)
}

fn objects(path: &Path, items: Vec<Value>) -> Result<Vec<Value>, EvalError> {
    for (i, v) in items.iter().enumerate() {
        if !v.is_object() {
            return Err(file_error(
                path,
                format!("item {i}: a document must be a JSON object"),
            ));
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_splits_in_hub_layouts() {
        let dir = std::env::temp_dir().join(format!("huarizo-data-{}", std::process::id()));
        let cfg = dir.join("ARC-Challenge");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(
            cfg.join("test-00000-of-00001.jsonl"),
            "{\"a\": 1}\n{\"a\": 2}\n",
        )
        .unwrap();
        std::fs::write(cfg.join("train-00000-of-00001.jsonl"), "{\"a\": 3}\n").unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data").join("hellaswag_dev.json"), "[{\"b\": 1}]").unwrap();
        let src = DataSource::Folder {
            root: dir.clone(),
            config: Some("ARC-Challenge".into()),
        };
        assert_eq!(src.load("test").unwrap().unwrap().len(), 2);
        assert_eq!(src.load("train").unwrap().unwrap().len(), 1);
        // "validation" falls back to its synonym "dev".
        assert_eq!(src.load("validation").unwrap().unwrap()[0]["b"], 1);
        std::fs::write(cfg.join("test-00000-of-00001.jsonl"), "{\"a\": 1}\n[2]\n").unwrap();
        let err = src.load("test").unwrap_err().to_string();
        assert!(
            err.contains("test-00000-of-00001.jsonl") && err.contains("line 2"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
