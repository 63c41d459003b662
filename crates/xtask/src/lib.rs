//! `cargo xtask tidy`: the architecture's boundaries as a check (see ARCHITECTURE.md). Also run
//! by `tests/tidy.rs`, so `cargo test --workspace` (what CI runs) fails on a violation.
//!
//! - [`core_deps`]: `drover-core` stays pure: its dependencies are an allowlist and its source
//!   names no I/O, clock, environment or runtime API.
//! - [`sql`]: only `drover-store` contains SQL.
//! - [`size`]: source files and functions stay small enough to read.
//!
//! [`history`] is not a check: `cargo xtask history` runs the history checker's long run.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

pub mod core_deps;
pub mod history;
pub mod lex;
pub mod size;
pub mod sql;

/// One finding: where, what is wrong (with the limit), and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Relative to the workspace root, with `/` separators.
    pub path: String,
    /// 1-based.
    pub line: usize,
    pub what: String,
    pub fix: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}; {}",
            self.path, self.line, self.what, self.fix
        )
    }
}

/// Runs every check on the workspace at `root`; violations sorted by path and line.
pub fn tidy(root: &Path) -> std::io::Result<Vec<Violation>> {
    let mut found = core_deps::check(root)?;
    found.extend(sql::check(root)?);
    found.extend(size::check(root)?);
    found.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    Ok(found)
}

/// The workspace this crate is built in (`crates/xtask/../..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The crates under `root/crates`, by directory name, sorted.
fn crate_dirs(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(root.join("crates"))? {
        let path = entry?.path();
        if path.join("Cargo.toml").is_file() {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            dirs.push((name, path));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Every `.rs` file under `dir`, recursively, sorted; hidden directories and `target` skipped.
fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        if !dir.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    todo.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `path` relative to `root`, `/`-separated, for messages.
fn display(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The part of a source file before its first `#[cfg(test)]` line: what ships.
fn non_test_part(src: &str) -> &str {
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        if line.trim_start().starts_with("#[cfg(test)]") {
            return &src[..offset];
        }
        offset += line.len();
    }
    src
}

/// `needle` in `hay` with no identifier character right before or after it.
pub(crate) fn contains_word(hay: &str, needle: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    hay.match_indices(needle).any(|(at, _)| {
        !ident(hay[..at].chars().next_back()) && !ident(hay[at + needle.len()..].chars().next())
    })
}
