//! Only `drover-store` knows SQL (ARCHITECTURE.md). Any other crate that needs something from
//! the database, tests included, asks the store through a function.
//!
//! The patterns are assembled from words (`["DELETE", "FROM"]`) so that this file does
//! not match itself.

use std::fs;
use std::path::Path;

use crate::{contains_word, crate_dirs, display, rust_files, Violation};

const STORE: &str = "drover-store";
/// Lines after a `SELECT` or `UPDATE` in which its `FROM` or `SET` may follow.
const CONTINUATION: usize = 3;
const FIX: &str = "only drover-store contains SQL: move the statement behind a drover-store \
                   function (a test-support one for tests)";

/// A statement opener, and the keyword that must follow it within [`CONTINUATION`] lines
/// (`None`: the opener alone is SQL).
struct Pattern {
    opener: &'static [&'static str],
    then: Option<&'static str>,
}

const PATTERNS: &[Pattern] = &[
    Pattern {
        opener: &["SELECT"],
        then: Some("FROM"),
    },
    Pattern {
        opener: &["UPDATE"],
        then: Some("SET"),
    },
    Pattern {
        opener: &["INSERT", "INTO"],
        then: None,
    },
    Pattern {
        opener: &["DELETE", "FROM"],
        then: None,
    },
    Pattern {
        opener: &["CREATE", "TABLE"],
        then: None,
    },
    Pattern {
        opener: &["PRAGMA"],
        then: None,
    },
];

pub fn check(root: &Path) -> std::io::Result<Vec<Violation>> {
    let mut found = Vec::new();
    for (name, dir) in crate_dirs(root)? {
        if name == STORE {
            continue;
        }
        for file in rust_files(&dir)? {
            for (line, stmt) in sql_lines(&fs::read_to_string(&file)?) {
                found.push(Violation {
                    path: display(root, &file),
                    line,
                    what: format!("SQL (`{stmt}`) outside {STORE}"),
                    fix: FIX,
                });
            }
        }
    }
    Ok(found)
}

/// `(line, statement keyword)` of each SQL statement in `src` (raw text: SQL lives in strings).
pub fn sql_lines(src: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = src.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        for p in PATTERNS {
            let opener = format!("{} ", p.opener.join(" "));
            let Some(at) = line.find(&opener) else {
                continue;
            };
            let matched = match p.then {
                None => true,
                Some(then) => std::iter::once(&line[at + opener.len()..])
                    .chain(lines[i + 1..].iter().take(CONTINUATION).copied())
                    .any(|l| contains_word(l, then)),
            };
            if matched {
                found.push((i + 1, opener.trim_end().to_string()));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::sql_lines;

    #[test]
    fn finds_statements_across_lines() {
        let src = [
            &["let q = \"SELECT", "id, state"].join(" "),
            &["    \"", "FROM tasks\";"].join(""),
            &["conn.execute(\"DELETE", "FROM events\")"].join(" "),
            "// we SELECT the best worker from the feasible ones",
            &["let p = \"PRAGMA", "journal_mode\";"].join(" "),
        ]
        .join("\n");
        let found: Vec<usize> = sql_lines(&src).into_iter().map(|f| f.0).collect();
        assert_eq!(found, [1, 3, 5]);
    }
}
