//! Answers kept on disk, one JSON line per finished job, so that an interrupted run
//! resumes where it stopped. Jobs are keyed by their tokens and settings; a file is
//! specific to one model file (the caller names it after the model's sha256).

use crate::runner::{Job, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    scored: Option<Vec<(f32, bool)>>,
    generated: Option<String>,
}

/// A results cache backed by a JSON-lines file.
pub struct ResultCache {
    path: PathBuf,
    known: HashMap<String, Outcome>,
    file: Option<std::fs::File>,
}

/// The key of a job: a 64-bit hash of its kind, tokens and settings, with the token count.
pub fn key(job: &Job) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let n = match job {
        Job::Score { tokens, from } => {
            (0u8, tokens, from).hash(&mut h);
            tokens.len()
        }
        Job::Generate {
            tokens,
            until,
            max_tokens,
        } => {
            (1u8, tokens, until, max_tokens).hash(&mut h);
            tokens.len()
        }
    };
    format!("{:016x}-{n}", h.finish())
}

impl ResultCache {
    /// Opens (or starts) the cache at `path`. Unreadable lines (a run killed mid-write)
    /// are skipped.
    pub fn open(path: &Path) -> std::io::Result<ResultCache> {
        let mut known = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                if let Ok(l) = serde_json::from_str::<Line>(line) {
                    let outcome = match (l.scored, l.generated) {
                        (Some(s), _) => Outcome::Scored(s),
                        (None, Some(g)) => Outcome::Generated(g),
                        _ => continue,
                    };
                    known.insert(l.key, outcome);
                }
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(ResultCache {
            path: path.to_path_buf(),
            known,
            file: Some(file),
        })
    }

    /// Where the cache lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers already known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The cached outcome of `job`, if any.
    pub fn get(&self, job: &Job) -> Option<&Outcome> {
        self.known.get(&key(job))
    }

    /// Records an outcome (written through at once).
    pub fn put(&mut self, job: &Job, outcome: &Outcome) {
        let k = key(job);
        let line = match outcome {
            Outcome::Scored(s) => Line {
                key: k.clone(),
                scored: Some(s.clone()),
                generated: None,
            },
            Outcome::Generated(g) => Line {
                key: k.clone(),
                scored: None,
                generated: Some(g.clone()),
            },
        };
        if let Some(f) = self.file.as_mut() {
            let text = serde_json::to_string(&line).expect("lines serialize");
            // A failed write only loses the resume point, not the result.
            if writeln!(f, "{text}").is_err() {
                self.file = None;
            }
        }
        self.known.insert(k, outcome.clone());
    }
}
