//! `drover submit [flags] -- CMD ARGS...` and its `--wait`.

use drover_client::{Client, SubmitRequest, TaskView};

use crate::cli::SubmitArgs;
use crate::exit::{self, usage};
use crate::output::{self, Format};
use crate::parse;

pub async fn run(args: SubmitArgs) -> anyhow::Result<u8> {
    if let Some(path) = &args.file {
        let client = super::client(&args.client)?;
        return super::flow::submit_file(&client, path, args.wait, args.client.output).await;
    }
    let mut req = request(&args)?;
    let client = super::client(&args.client)?;
    // With several servers, a key of its own unless given one: the client may then send the
    // submit again after the exchange broke (a leader killed mid-request may have committed
    // it) and still get one task. (With one server there is nothing to fail over to.)
    if client.servers().len() > 1 {
        req.idempotency_key.get_or_insert_with(generated_key);
    }
    let task = client.submit(&req).await?;
    if !args.wait {
        match args.client.output {
            Format::Json => output::json(&task)?,
            Format::Text => output::text(&format!("{}\n", task.id))?,
        }
        return Ok(0);
    }
    let done = client.wait(&task.id, |_| {}).await?;
    let code = exit::for_task(&done.state, done.exit_code);
    match args.client.output {
        Format::Json => output::json(&done)?,
        Format::Text if args.payload.is_some() => {
            if done.state == "succeeded" {
                super::tasks::print_result(&client, &done.id).await?;
            } else {
                print_output(&client, &done).await?;
                output::text_err(&format!("drover: {}\n", ending(&done)))?;
            }
        }
        Format::Text => {
            print_output(&client, &done).await?;
            if code != 0 {
                output::text_err(&format!("drover: {}\n", ending(&done)))?;
            }
        }
    }
    Ok(code)
}

/// The idempotency key of a submit given none: unique per command (a UUIDv7 of the time read
/// through the one clock function, its other bits random).
pub fn generated_key() -> String {
    let us = u64::try_from(drover_server::clock::now_micros()).unwrap_or(0);
    let at = uuid::Timestamp::from_unix(
        uuid::ContextV7::new(),
        us / 1_000_000,
        (us % 1_000_000) as u32 * 1_000,
    );
    format!("drover-submit-{}", uuid::Uuid::new_v7(at))
}

/// The request for the flags, checked here with the server's own rules so that bad input
/// fails before anything is sent.
pub fn request(args: &SubmitArgs) -> anyhow::Result<SubmitRequest> {
    let argv = parse::argv(&args.command).map_err(usage)?;
    let noop = args.kind.as_deref() == Some("noop");
    let payload = args
        .payload
        .as_deref()
        .map(parse::payload)
        .transpose()
        .map_err(usage)?;
    if argv.is_empty() && !noop && payload.is_none() {
        return Err(usage(
            "no command given: put it after `--`, e.g. drover submit -- echo hello",
        ));
    }
    let req = SubmitRequest {
        namespace: None,
        queue: args.queue.clone(),
        kind: args.kind.clone(),
        payload,
        priority: args.priority,
        argv,
        env: parse::env_pairs(&args.env).map_err(usage)?,
        secret_env: parse::secret_pairs(&args.secret_env).map_err(usage)?.into(),
        cwd: args.cwd.clone(),
        retries: args.retries,
        backoff: args.backoff.clone(),
        timeout: args.timeout.clone(),
        delay: args.delay.clone(),
        idempotency_key: args.idempotency_key.clone(),
        label_selector: args.label_selector.clone(),
        strategy: args.strategy.clone(),
        key: args.key.clone(),
        concurrency_key: args.concurrency_key.clone(),
        max_concurrent: args.max_concurrent,
        resources: parse::resources(&args.resources).map_err(usage)?,
        spread_label: args.spread_label.clone(),
        after: args.after.clone(),
        on_upstream_failure: args.on_upstream_failure.clone(),
        serial: args.serial.then_some(true),
        at: args.at.clone(),
        deadline: args.deadline.clone(),
    };
    req.flow(0).map_err(|e| usage(e.message))?;
    req.validate().map_err(|e| usage(e.message))?;
    Ok(req)
}

/// The task's output of its last attempt: stdout to stdout, stderr to stderr.
async fn print_output(client: &Client, t: &TaskView) -> anyhow::Result<()> {
    if t.attempt == 0 {
        return Ok(());
    }
    match client.logs(&t.id, None).await {
        Ok(logs) => {
            output::text(&logs.stdout)?;
            output::text_err(&logs.stderr)?;
            Ok(())
        }
        // Nothing was kept for it; the ending line still says what happened.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// One line on how a task that did not succeed ended.
pub fn ending(t: &TaskView) -> String {
    let mut s = format!("task {} {}", t.id, t.state.replace('_', " "));
    if let Some(c) = t.exit_code {
        s.push_str(&format!(" with exit code {c}"));
    }
    if let Some(e) = t.error.as_deref().filter(|e| !e.is_empty()) {
        s.push_str(": ");
        s.push_str(&e.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(a: &[&str]) -> SubmitArgs {
        match Cli::try_parse_from(["drover", "submit"].iter().chain(a))
            .unwrap()
            .command
        {
            Command::Submit(s) => *s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_become_the_request() {
        let r = request(&args(&[
            "--queue",
            "q",
            "--retries",
            "2",
            "--timeout",
            "30s",
            "--env",
            "X=a=b",
            "--label-selector",
            "zone=a",
            "--",
            "echo",
            "hi there",
        ]))
        .unwrap();
        assert_eq!(r.queue.as_deref(), Some("q"));
        assert_eq!(r.retries, Some(2));
        assert_eq!(r.timeout.as_deref(), Some("30s"));
        assert_eq!(r.env["X"], "a=b");
        assert_eq!(r.label_selector.as_deref(), Some("zone=a"));
        assert_eq!(r.argv, ["echo", "hi there"]);
    }

    #[test]
    fn bad_requests_are_usage_errors() {
        for a in [
            &[][..],
            &["--queue", "bad queue", "--", "true"][..],
            &["--kind", "noop", "--", "true"][..],
            &["--env", "NOEQUALS", "--", "true"][..],
            &["--retries", "1000", "--", "true"][..],
        ] {
            let e = request(&args(a)).unwrap_err();
            assert_eq!(exit::for_error(&e), 2, "{a:?}: {e}");
        }
        let noop = request(&args(&["--kind", "noop"])).unwrap();
        assert!(noop.argv.is_empty());
    }

    #[test]
    fn generated_keys_are_valid_and_unique() {
        let (a, b) = (generated_key(), generated_key());
        assert_ne!(a, b);
        for k in [a, b] {
            let r = SubmitRequest {
                argv: vec!["true".into()],
                idempotency_key: Some(k.clone()),
                ..Default::default()
            };
            r.validate()
                .unwrap_or_else(|e| panic!("{k}: {}", e.message));
        }
    }
}
