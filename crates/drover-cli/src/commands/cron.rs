//! `drover cron add|list|pause|resume|rm|run|backfill`.

use drover_client::{BackfillRequest, ScheduleRequest, ScheduleView, SubmitRequest};

use crate::cli::{ClientOpts, CronAddArgs, CronCommand};
use crate::exit::usage;
use crate::output::{self, Format, Table};
use crate::parse;

pub async fn cron(cmd: CronCommand) -> anyhow::Result<u8> {
    match cmd {
        CronCommand::Add(a) => add(*a).await,
        CronCommand::List(opts) => list(&opts).await,
        CronCommand::Pause(a) => {
            let client = super::client(&a.client)?;
            let s = client.pause_schedule(&a.name, true).await?;
            print(&s, a.client.output)
        }
        CronCommand::Resume(a) => {
            let client = super::client(&a.client)?;
            let s = client.pause_schedule(&a.name, false).await?;
            print(&s, a.client.output)
        }
        CronCommand::Rm(a) => {
            let client = super::client(&a.client)?;
            client.remove_schedule(&a.name).await?;
            if a.client.output == Format::Json {
                output::json(&serde_json::json!({"deleted": a.name}))?;
            }
            Ok(0)
        }
        CronCommand::Run(a) => {
            let client = super::client(&a.client)?;
            let r = client.run_schedule(&a.name).await?;
            match a.client.output {
                Format::Json => output::json(&r)?,
                Format::Text => output::text(&format!("{}\n", r.ids.join("\n")))?,
            }
            Ok(0)
        }
        CronCommand::Backfill(a) => {
            let client = super::client(&a.client)?;
            let r = client
                .backfill_schedule(
                    &a.name,
                    &BackfillRequest {
                        from: a.from.clone(),
                        to: a.to.clone(),
                    },
                )
                .await?;
            match a.client.output {
                Format::Json => output::json(&r)?,
                Format::Text => output::text(&format!(
                    "{} slots fired\n{}{}",
                    r.ids.len(),
                    r.ids.iter().map(|i| format!("{i}\n")).collect::<String>(),
                    r.next
                        .as_ref()
                        .map(|n| format!("more slots remain: run again with --from {n}\n"))
                        .unwrap_or_default()
                ))?,
            }
            Ok(0)
        }
    }
}

/// `drover cron list`: a table, or the JSON list.
async fn list(opts: &ClientOpts) -> anyhow::Result<u8> {
    let client = super::client(opts)?;
    let list = client.schedules().await?;
    match opts.output {
        Format::Json => output::json(&list)?,
        Format::Text => {
            let mut t = Table::new(vec![
                "NAME",
                "TRIGGER",
                "NEXT FIRE",
                "PAUSED",
                "OVERLAP",
                "MISFIRE",
                "COMMAND",
            ]);
            for s in &list.schedules {
                t.row(vec![
                    s.name.clone(),
                    trigger(s),
                    s.next_fire_at
                        .as_deref()
                        .map(output::short_time)
                        .unwrap_or_else(|| "-".into()),
                    if s.paused { "yes".into() } else { "no".into() },
                    s.overlap.clone(),
                    s.misfire.clone(),
                    output::cut(&s.argv.join(" "), 40),
                ]);
            }
            output::text(&t.render())?;
        }
    }
    Ok(0)
}

fn trigger(s: &ScheduleView) -> String {
    if let Some(c) = &s.cron {
        return format!("{c} ({})", s.tz.as_deref().unwrap_or("UTC"));
    }
    if let Some(ms) = s.every_ms {
        return format!("every {}", humanize(ms));
    }
    if let Some(ms) = s.delay_after_previous_ms {
        return format!("{} after previous", humanize(ms));
    }
    "-".into()
}

fn humanize(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn print(s: &ScheduleView, f: Format) -> anyhow::Result<u8> {
    match f {
        Format::Json => output::json(s)?,
        Format::Text => output::text(&format!(
            "{}: {}, next fire {}{}\n",
            s.name,
            trigger(s),
            s.next_fire_at.as_deref().unwrap_or("-"),
            if s.paused { " (paused)" } else { "" }
        ))?,
    }
    Ok(0)
}

async fn add(a: CronAddArgs) -> anyhow::Result<u8> {
    let argv = parse::argv(&a.command).map_err(usage)?;
    if argv.is_empty() && a.kind.as_deref() != Some("noop") {
        return Err(usage(
            "no command given: put it after `--`, e.g. drover cron add nightly --cron \"0 3 * * *\" -- ./backup.sh",
        ));
    }
    let req = ScheduleRequest {
        namespace: None,
        name: a.name.clone(),
        cron: a.cron.clone(),
        tz: a.tz.clone(),
        every: a.every.clone(),
        delay_after_previous: a.delay_after_previous.clone(),
        overlap: a.overlap.clone(),
        misfire: a.misfire.clone(),
        max_catch_up: a.max_catch_up,
        task: SubmitRequest {
            queue: a.queue.clone(),
            kind: a.kind.clone(),
            priority: a.priority,
            argv,
            env: parse::env_pairs(&a.env).map_err(usage)?,
            secret_env: parse::secret_pairs(&a.secret_env).map_err(usage)?.into(),
            retries: a.retries,
            timeout: a.timeout.clone(),
            ..SubmitRequest::default()
        },
    };
    // The server's own checks, before anything is sent.
    req.validate(0).map_err(|e| usage(e.message))?;
    let client = super::client(&a.client)?;
    let s = client.add_schedule(&req).await?;
    print(&s, a.client.output)
}
