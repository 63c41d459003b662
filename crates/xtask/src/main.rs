//! `cargo xtask tidy` (alias in `.cargo/config.toml`): prints each violation as
//! `path:line: what, limit; what to do` and exits 1 if there is any.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => tidy(),
        _ => {
            eprintln!("usage: cargo xtask tidy");
            ExitCode::from(2)
        }
    }
}

fn tidy() -> ExitCode {
    let root = xtask::workspace_root();
    match xtask::tidy(&root) {
        Ok(found) if found.is_empty() => {
            println!("tidy: ok");
            ExitCode::SUCCESS
        }
        Ok(found) => {
            for v in &found {
                println!("{v}");
            }
            println!("tidy: {} violation(s)", found.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tidy: cannot read the workspace at {}: {e}", root.display());
            ExitCode::from(2)
        }
    }
}
