//! `cargo xtask history`: the history checker's full run (issue 11, point 6). It runs the
//! integration test `crates/drover-cli/tests/history.rs` with the long parameters and
//! `--nocapture`, so its figures print; CI runs the same test with its short defaults.

/// The test it runs.
pub const TEST: &str = "history_of_a_cluster_under_failovers";
/// The database when `DROVER_TEST_POSTGRES_URL` is unset: the machine's own (CI's).
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

const USAGE: &str = "usage: cargo xtask history [--leader-kills N] [--worker-kills N] \
                     [--seconds N] [--seed N] [--workers N]";

/// The flags, their environment variables, and the full run's defaults.
const FLAGS: [(&str, &str, Option<&str>); 5] = [
    ("--leader-kills", "DROVER_HISTORY_LEADER_KILLS", Some("5")),
    ("--worker-kills", "DROVER_HISTORY_WORKER_KILLS", Some("3")),
    ("--seconds", "DROVER_HISTORY_SECONDS", Some("120")),
    ("--seed", "DROVER_HISTORY_SEED", None),
    ("--workers", "DROVER_HISTORY_WORKERS", None),
];

/// The test's environment for `args` (`--flag N` or `--flag=N`): each flag given, else the
/// full run's default (the seed and the workers keep the test's own defaults).
pub fn env_for(args: &[String]) -> Result<Vec<(&'static str, String)>, String> {
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            return Err(USAGE.into());
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let Some((_, var, _)) = FLAGS.iter().find(|(f, _, _)| *f == flag) else {
            return Err(format!("unknown argument '{a}'\n{USAGE}"));
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))?,
        };
        if value.parse::<u64>().is_err() {
            return Err(format!("{flag} {value}: not a whole number\n{USAGE}"));
        }
        given.retain(|(v, _)| v != var);
        given.push((var, value));
    }
    let mut env = Vec::new();
    for (_, var, default) in FLAGS {
        match given.iter().find(|(v, _)| *v == var) {
            Some((_, value)) => env.push((var, value.clone())),
            None => {
                if let Some(d) = default {
                    env.push((var, d.to_string()));
                }
            }
        }
    }
    Ok(env)
}

/// `cargo test` arguments of the run.
pub fn cargo_args() -> Vec<&'static str> {
    vec![
        "test",
        "-p",
        "drover-cli",
        "--test",
        "history",
        "--",
        "--nocapture",
        "--exact",
        TEST,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_the_full_run() {
        let env = env_for(&[]).unwrap();
        assert_eq!(
            env,
            [
                ("DROVER_HISTORY_LEADER_KILLS", "5".to_string()),
                ("DROVER_HISTORY_WORKER_KILLS", "3".to_string()),
                ("DROVER_HISTORY_SECONDS", "120".to_string()),
            ]
        );
    }

    #[test]
    fn flags_override_and_add() {
        let env = env_for(&args(&[
            "--seconds",
            "30",
            "--seed=7",
            "--leader-kills",
            "8",
        ]))
        .unwrap();
        assert!(env.contains(&("DROVER_HISTORY_SECONDS", "30".into())));
        assert!(env.contains(&("DROVER_HISTORY_SEED", "7".into())));
        assert!(env.contains(&("DROVER_HISTORY_LEADER_KILLS", "8".into())));
        assert!(env.contains(&("DROVER_HISTORY_WORKER_KILLS", "3".into())));
    }

    #[test]
    fn bad_arguments_are_refused_with_the_usage() {
        for bad in [&["--kills", "3"][..], &["--seed"], &["--seconds", "soon"]] {
            let e = env_for(&args(bad)).unwrap_err();
            assert!(e.contains("usage: cargo xtask history"), "{e}");
        }
    }
}
