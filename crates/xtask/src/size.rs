//! Size limits for shipped code (`crates/*/src`, the part of each file before its first
//! `#[cfg(test)]`; tests are exempt).
//!
//! - [`MAX_FILE_LINES`] = 800: a file you can read in one sitting. It is the bar the team's
//!   pre-stop hook already uses; past it a file holds more than one job and wants splitting
//!   into modules by what they hold.
//! - [`MAX_FN_LINES`] = 80: a function that fits on a screen or so, from its `fn` line to its
//!   closing brace. The review found 13 functions of 90 lines or more; each read as a sequence
//!   of steps that want names.

use std::fs;
use std::path::Path;

use crate::{crate_dirs, display, lex, non_test_part, rust_files, Violation};

pub const MAX_FILE_LINES: usize = 800;
pub const MAX_FN_LINES: usize = 80;

const FIX_FILE: &str = "split the file into modules, one job each";
const FIX_FN: &str = "split the function into well-named steps";

pub fn check(root: &Path) -> std::io::Result<Vec<Violation>> {
    let mut found = Vec::new();
    for (_, dir) in crate_dirs(root)? {
        for file in rust_files(&dir.join("src"))? {
            let src = fs::read_to_string(&file)?;
            let shipped = non_test_part(&src);
            let path = display(root, &file);
            let lines = shipped.lines().count();
            if lines > MAX_FILE_LINES {
                found.push(Violation {
                    path: path.clone(),
                    line: 1,
                    what: format!("{lines} non-test lines, limit {MAX_FILE_LINES}"),
                    fix: FIX_FILE,
                });
            }
            for f in functions(&lex::code_only(shipped)) {
                if f.lines > MAX_FN_LINES {
                    found.push(Violation {
                        path: path.clone(),
                        line: f.line,
                        what: format!("fn `{}` is {} lines, limit {MAX_FN_LINES}", f.name, f.lines),
                        fix: FIX_FN,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// A function with a body.
#[derive(Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// 1-based line of the `fn` keyword.
    pub line: usize,
    /// From the `fn` line to the closing brace, both included.
    pub lines: usize,
}

/// Every function with a body in `code` (already through [`lex::code_only`]), nested ones
/// included; declarations without a body (`fn f();`) and `fn(..)` pointer types are skipped.
pub fn functions(code: &str) -> Vec<Function> {
    let bytes = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (at, _) in code.match_indices("fn") {
        let before = code[..at].chars().next_back();
        let after = &code[at + 2..];
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let is_keyword = !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && after.starts_with(char::is_whitespace);
        if !is_keyword || name.is_empty() {
            continue;
        }
        if let Some(close) = body_end(bytes, at + 2) {
            let line = line_of(at);
            found.push(Function {
                name,
                line,
                lines: line_of(close) - line + 1,
            });
        }
    }
    found
}

/// The index of the `}` closing the body of the function whose signature starts at `from`,
/// or `None` if the signature ends in `;`. `;` and `{` inside `( )` or `[ ]` (e.g. `[u8; 4]`)
/// belong to the signature.
fn body_end(code: &[u8], from: usize) -> Option<usize> {
    let mut nesting = 0i32;
    let mut k = from;
    while k < code.len() {
        match code[k] {
            b'(' | b'[' => nesting += 1,
            b')' | b']' => nesting -= 1,
            b';' if nesting == 0 => return None,
            b'{' if nesting == 0 => break,
            _ => {}
        }
        k += 1;
    }
    let mut depth = 0;
    for (j, &b) in code.iter().enumerate().skip(k) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_functions_from_fn_to_closing_brace() {
        let code = lex::code_only(
            "trait T {\n    fn decl(&self) -> [u8; 4];\n}\n\
             pub fn outer(f: fn(u8) -> u8) -> u8 {\n    let s = \"}\";\n\
                 fn inner() {}\n    f(1)\n}\n",
        );
        let found = functions(&code);
        assert_eq!(
            found,
            [
                Function {
                    name: "outer".into(),
                    line: 4,
                    lines: 5
                },
                Function {
                    name: "inner".into(),
                    line: 6,
                    lines: 1
                },
            ]
        );
    }
}
