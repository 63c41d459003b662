//! `drover-core` is pure (ARCHITECTURE.md): no I/O, no clock, no tokio, no SQL. Time and a seed
//! are inputs. A new dependency or an I/O API in its source is a design change that must be
//! made here, on purpose, not slip in.

use std::fs;
use std::path::Path;

use crate::{contains_word, display, lex, non_test_part, rust_files, Violation};

/// drover-core's dependencies today, each pure: errors (thiserror), seeded randomness (rand,
/// rand_chacha), ids (uuid), and cron slots in a time zone (croner, chrono, chrono-tz).
pub const ALLOWED: &[&str] = &[
    "chrono",
    "chrono-tz",
    "croner",
    "rand",
    "rand_chacha",
    "thiserror",
    "uuid",
];

/// Paths whose use in drover-core's shipped code means I/O, a clock, or a runtime.
const FORBIDDEN: &[(&str, &str)] = &[
    ("std::fs", "file I/O"),
    ("std::net", "network I/O"),
    ("std::process", "processes"),
    ("std::thread", "threads"),
    ("std::env", "the environment"),
    ("SystemTime", "a clock"),
    ("Instant", "a clock"),
    ("tokio", "an async runtime"),
];

/// Modules of `std` that a grouped import (`use std::{fs, ..}`) must not name.
const FORBIDDEN_STD_MODULES: &[&str] = &["fs", "net", "process", "thread", "env"];

const FIX_DEP: &str = "drover-core must stay pure: do the I/O in a shell crate, or extend \
                       xtask's core_deps::ALLOWED with a reason";
const FIX_USE: &str = "drover-core must stay pure: pass the value in as an input or do this in \
                       a shell crate (drover-server, drover-store)";

pub fn check(root: &Path) -> std::io::Result<Vec<Violation>> {
    let core = root.join("crates/drover-core");
    let manifest = core.join("Cargo.toml");
    let mut found: Vec<Violation> = dependencies(&fs::read_to_string(&manifest)?)
        .into_iter()
        .filter(|(name, _)| !ALLOWED.contains(&name.as_str()))
        .map(|(name, line)| Violation {
            path: display(root, &manifest),
            line,
            what: format!("drover-core depends on `{name}`, not in the allowlist"),
            fix: FIX_DEP,
        })
        .collect();
    for file in rust_files(&core.join("src"))? {
        let src = fs::read_to_string(&file)?;
        for (line, what) in forbidden_uses(&lex::code_only(non_test_part(&src))) {
            found.push(Violation {
                path: display(root, &file),
                line,
                what,
                fix: FIX_USE,
            });
        }
    }
    Ok(found)
}

/// `(name, line)` of each entry in a `[dependencies]`, `[build-dependencies]` or
/// `[target.*.dependencies]` table of a Cargo manifest (dev-dependencies are free).
pub fn dependencies(manifest: &str) -> Vec<(String, usize)> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for (i, line) in manifest.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            let table = header.rsplit_once('.').map_or(header, |(_, last)| last);
            // `[dependencies.foo]` names one dependency as a table.
            if let Some(name) = header.strip_prefix("dependencies.") {
                deps.push((name.to_string(), i + 1));
                in_deps = false;
            } else {
                in_deps = matches!(table, "dependencies" | "build-dependencies");
            }
        } else if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            deps.push((name.trim_matches('"').to_string(), i + 1));
        }
    }
    deps
}

/// `(line, what)` for each forbidden path named in `code` (comments and strings blanked).
pub fn forbidden_uses(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in code.lines().enumerate() {
        for (path, means) in FORBIDDEN {
            if contains_word(line, path) {
                found.push((i + 1, format!("drover-core uses `{path}` ({means})")));
            }
        }
    }
    for (line, module) in grouped_std_imports(code) {
        found.push((line, format!("drover-core uses `std::{module}`")));
    }
    found
}

/// Forbidden modules named inside `std::{ … }` groups, with the line of the group.
fn grouped_std_imports(code: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("std::{") {
        let group = &code[at + "std::{".len()..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        let line = code[..at].matches('\n').count() + 1;
        let words: Vec<&str> = group
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .collect();
        for module in FORBIDDEN_STD_MODULES {
            if words.contains(module) {
                found.push((line, *module));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_dependency_table_but_dev() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nrand.workspace = true\n\
                        croner = \"4\"\n\n[dev-dependencies]\nproptest = \"1\"\n\n\
                        [target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n\n\
                        [dependencies.tokio]\nversion = \"1\"\n";
        let names: Vec<String> = dependencies(manifest).into_iter().map(|d| d.0).collect();
        assert_eq!(names, ["rand", "croner", "libc", "tokio"]);
    }

    #[test]
    fn finds_io_paths_as_words_and_in_groups() {
        let code = "use std::time::Instant;\nuse std::{collections::HashMap, fs};\n\
                    let fsx = 1; let my_tokio_like = 2;\n";
        let found = forbidden_uses(code);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 1);
        assert_eq!(found[1], (2, "drover-core uses `std::fs`".to_string()));
    }
}
