//! `cargo xtask tidy` (alias in `.cargo/config.toml`): prints each violation as
//! `path:line: what, limit; what to do` and exits 1 if there is any.
//! `cargo xtask history [...]`: the history checker's full run (see `xtask::history`).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tidy") => tidy(),
        Some("history") => history(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask tidy | cargo xtask history [--help]");
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

fn history(args: &[String]) -> ExitCode {
    let env = match xtask::history::env_for(args) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(xtask::workspace_root())
        .args(xtask::history::cargo_args())
        .envs(env.iter().map(|(k, v)| (k, v)));
    let pg = std::env::var("DROVER_TEST_POSTGRES_URL").unwrap_or_default();
    if pg.is_empty() {
        cmd.env("DROVER_TEST_POSTGRES_URL", xtask::history::DEFAULT_POSTGRES);
    }
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "history: {} (database: {})",
        shown.join(" "),
        if pg.is_empty() {
            xtask::history::DEFAULT_POSTGRES
        } else {
            &pg
        }
    );
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("history: cannot run cargo: {e}");
            ExitCode::from(2)
        }
    }
}
