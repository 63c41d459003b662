//! Exit codes and the one-line error report.
//!
//! 0 success · 1 a failure (server error, unknown id, unreachable server, failed task) ·
//! 2 usage or invalid input (bad flags, values the server refuses) · with `submit --wait`, the
//! task's own exit code, 124 when it timed out and 130 when it was cancelled.

use drover_client::ClientError;

pub const USAGE: u8 = 2;
pub const FAILURE: u8 = 1;
pub const TIMED_OUT: u8 = 124;
pub const CANCELLED: u8 = 130;

/// An error in what the user typed (exit 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds an invalid-input error: `return Err(usage("..."))`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// The exit code for a task that reached `state` with `exit_code`.
pub fn for_task(state: &str, exit_code: Option<i32>) -> u8 {
    match state {
        "succeeded" => 0,
        "failed" => match exit_code {
            Some(c @ 1..=255) => c as u8,
            _ => FAILURE,
        },
        "timed_out" => TIMED_OUT,
        "cancelled" => CANCELLED,
        _ => FAILURE,
    }
}

/// The exit code for an error: 2 when the input was wrong, 1 otherwise.
pub fn for_error(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<UsageError>().is_some() {
        return USAGE;
    }
    if let Some(c) = e.downcast_ref::<ClientError>() {
        if c.is_invalid_input() {
            return USAGE;
        }
    }
    if let Some(c) = e.downcast_ref::<clap::Error>() {
        return c.exit_code().clamp(0, 255) as u8;
    }
    FAILURE
}

/// The error and its causes on one line, without repeating a cause the message already holds.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = flatten(&cause.to_string());
        if s.is_empty() || parts.iter().any(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}

/// A clap error (usage text and all) as one line: the message and its tip, no usage block.
pub fn clap_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(tip) = line.strip_prefix("tip:") {
            parts.push(format!("(tip:{tip})"));
        } else {
            parts.push(line.to_string());
        }
    }
    let s = parts.join(" ");
    let s = s.strip_prefix("error: ").unwrap_or(&s).to_string();
    format!("{s} (see drover --help)")
}

fn flatten(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn task_states_map_to_exit_codes() {
        assert_eq!(for_task("succeeded", Some(0)), 0);
        assert_eq!(for_task("succeeded", None), 0);
        assert_eq!(for_task("failed", Some(7)), 7);
        assert_eq!(for_task("failed", Some(255)), 255);
        assert_eq!(for_task("failed", None), 1);
        assert_eq!(for_task("failed", Some(0)), 1, "failed is never 0");
        assert_eq!(for_task("failed", Some(-9)), 1);
        assert_eq!(for_task("failed", Some(300)), 1);
        assert_eq!(for_task("timed_out", None), 124);
        assert_eq!(for_task("cancelled", Some(143)), 130);
        for s in ["dead", "expired", "skipped"] {
            assert_eq!(for_task(s, None), 1);
        }
    }

    #[test]
    fn errors_map_to_exit_codes() {
        assert_eq!(for_error(&usage("bad")), 2);
        assert_eq!(for_error(&anyhow::anyhow!("boom")), 1);
        let api = |e: drover_api::ApiError| -> anyhow::Error {
            ClientError::Api {
                status: e.code.http_status(),
                error: e,
            }
            .into()
        };
        assert_eq!(
            for_error(&api(drover_api::ApiError::invalid("state", "x"))),
            2
        );
        assert_eq!(for_error(&api(drover_api::ApiError::not_found("x"))), 1);
        let wrapped = api(drover_api::ApiError::invalid("id", "x")).context("reading");
        assert_eq!(for_error(&wrapped), 2);
    }

    #[test]
    fn messages_are_one_line() {
        let e = anyhow::anyhow!("inner\nproblem").context("doing a thing");
        assert_eq!(one_line(&e), "doing a thing: inner problem");
        let e = anyhow::anyhow!("no task with id x").context("no task with id x");
        assert_eq!(one_line(&e), "no task with id x");
    }

    #[derive(Parser, Debug)]
    struct T {
        #[arg(long)]
        n: u32,
    }

    #[test]
    fn clap_errors_fold_to_one_line() {
        let e = T::try_parse_from(["t", "--n", "x"]).unwrap_err();
        let s = clap_line(&e);
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("'x'"), "{s}");
        let e = T::try_parse_from(["t"]).unwrap_err();
        let s = clap_line(&e);
        assert!(s.contains("--n"), "{s}");
        assert!(!s.contains('\n'), "{s}");
        let e = T::try_parse_from(["t", "--bogus"]).unwrap_err();
        let s = clap_line(&e);
        assert!(s.contains("'--bogus'") && !s.contains('\n'), "{s}");
    }
}
