//! `drover events`, `drover webhook ...` and `drover logs -f`: the event-driven commands.

use std::time::Duration;

use drover_client::{DeliveryList, EventQuery, EventView, WebhookCreate, WebhookList, WebhookView};

use crate::cli::{EventsArgs, LogsArgs, WebhookAddArgs, WebhookCommand};
use crate::exit::usage;
use crate::output::{self, cut, Format, Table};

pub async fn events(args: EventsArgs) -> anyhow::Result<u8> {
    let client = super::client(&args.client)?;
    let query = EventQuery {
        task: args.task.clone(),
        queue: args.queue.clone(),
        workflow: args.workflow.clone(),
        state: args.state.clone(),
        kind: args.kind.clone(),
        after: args.after,
        follow: args.follow,
    };
    let mut stream = client.events(&query).await?.reconnecting(args.follow);
    while let Some(e) = stream.next().await? {
        match args.client.output {
            Format::Json => output::json_line(&e)?,
            Format::Text => output::text(&event_line(&e))?,
        }
    }
    Ok(0)
}

/// One line per event: `SEQ  HH:MM:SS.mmm  EVENT  SUBJECT  details`, e.g.
///
/// ```text
///       41  09:30:01.250  task.running        0190a1b2-…  queue=q attempt=1 worker=w1 workflow=0190…
///       42  09:30:02.004  worker.suspect      w1
///       43  09:30:03.117  workflow.succeeded  0190c3d4-…
///       44  09:31:00.000  schedule.fired      nightly  task 0190e5f6-…
///       45  09:32:00.000  schedule.skipped    nightly reason=the previous run is still going
/// ```
pub fn event_line(e: &EventView) -> String {
    let when = e.at.get(11..23).unwrap_or(&e.at);
    let mut s = format!("{:>8}  {when}  {:<18}", e.seq, e.event);
    let mut subject = |v: &str| s.push_str(&format!("  {v}"));
    match e.kind.as_str() {
        "workflow" => {
            if let Some(w) = &e.workflow {
                subject(w);
            }
        }
        "schedule" => {
            if let Some(n) = &e.schedule {
                subject(n);
            }
            if let Some(t) = &e.task_id {
                s.push_str(&format!("  task {t}"));
            }
        }
        "worker" => {
            if let Some(w) = &e.worker {
                subject(w);
            }
        }
        _ => match &e.task_id {
            Some(id) => {
                subject(id);
                if let Some(q) = &e.queue {
                    s.push_str(&format!("  queue={q}"));
                }
                if let Some(a) = e.attempt.filter(|a| *a > 0) {
                    s.push_str(&format!(" attempt={a}"));
                }
                if let Some(w) = &e.worker {
                    s.push_str(&format!(" worker={w}"));
                }
                if let Some(w) = &e.workflow {
                    s.push_str(&format!(" workflow={w}"));
                }
            }
            None => {
                if let Some(w) = &e.worker {
                    subject(w);
                }
            }
        },
    }
    if let Some(r) = e.reason.as_deref().filter(|r| !r.is_empty()) {
        s.push_str(&format!(
            " reason={}",
            cut(&r.split_whitespace().collect::<Vec<_>>().join(" "), 120)
        ));
    }
    s.push('\n');
    s
}

pub async fn webhook(cmd: WebhookCommand) -> anyhow::Result<u8> {
    match cmd {
        WebhookCommand::Add(a) => add(a).await,
        WebhookCommand::List(opts) => {
            let client = super::client(&opts)?;
            let list = client.webhooks().await?;
            match opts.output {
                Format::Json => output::json(&list)?,
                Format::Text => output::text(&webhook_table(&list))?,
            }
            Ok(0)
        }
        WebhookCommand::Rm(a) => {
            let client = super::client(&a.client)?;
            client.remove_webhook(&a.id).await?;
            if a.client.output == Format::Json {
                output::json(&serde_json::json!({ "id": a.id, "removed": true }))?;
            } else {
                output::text(&format!("removed {}\n", a.id))?;
            }
            Ok(0)
        }
        WebhookCommand::Deliveries(a) => {
            if let Some(n) = a.limit {
                if !(1..=drover_api::limits::MAX_PAGE).contains(&n) {
                    return Err(usage(format!(
                        "--limit: {n} is out of range (1 to {})",
                        drover_api::limits::MAX_PAGE
                    )));
                }
            }
            let client = super::client(&a.client)?;
            let list = client.deliveries(&a.id, a.limit).await?;
            match a.client.output {
                Format::Json => output::json(&list)?,
                Format::Text => output::text(&delivery_table(&list))?,
            }
            Ok(0)
        }
    }
}

async fn add(a: WebhookAddArgs) -> anyhow::Result<u8> {
    let req = WebhookCreate {
        namespace: None,
        url: a.url.clone(),
        events: a.events.clone(),
        secret: a.secret.clone(),
    };
    // The server's own rules, so bad input fails before anything is sent.
    req.validate().map_err(|e| usage(e.message))?;
    let client = super::client(&a.client)?;
    let w: WebhookView = client.add_webhook(&req).await?;
    match a.client.output {
        Format::Json => output::json(&w)?,
        Format::Text => {
            output::text(&format!("{}\n", w.id))?;
            if a.secret.is_none() {
                if let Some(s) = &w.secret {
                    output::text_err(&format!(
                        "signing secret (shown only now; receivers check X-Drover-Signature with it): {s}\n"
                    ))?;
                }
            }
        }
    }
    Ok(0)
}

fn webhook_table(list: &WebhookList) -> String {
    let mut t = Table::new(vec!["ID", "URL", "EVENTS", "DELIVERED SEQ", "CREATED"]);
    for w in &list.webhooks {
        t.row(vec![
            w.id.clone(),
            cut(&w.url, 60),
            w.events.join(","),
            w.delivered_seq.to_string(),
            output::short_time(&w.created_at),
        ]);
    }
    t.render()
}

fn delivery_table(list: &DeliveryList) -> String {
    let mut t = Table::new(vec![
        "TIME", "SEQ", "EVENT", "ATTEMPT", "STATUS", "RESULT", "MS",
    ]);
    for d in &list.deliveries {
        let result = if d.ok {
            "ok".to_string()
        } else {
            let why = d.error.clone().unwrap_or_default();
            let what = if d.last { "failed" } else { "retrying" };
            cut(&format!("{what}: {why}"), 60)
        };
        t.row(vec![
            output::short_time(&d.at),
            d.seq.to_string(),
            d.event.clone(),
            d.attempt.to_string(),
            output::opt(&d.status),
            result,
            d.duration_ms.to_string(),
        ]);
    }
    t.render()
}

/// How often `logs -f` looks for new output while the task runs (output is not an event;
/// the task's events wake it at once).
const LOG_POLL: Duration = Duration::from_millis(250);

/// `drover logs ID -f`: prints output as it arrives, until the task ends. Follows the latest
/// attempt (a retry starts over with its own output) unless `--attempt` is given.
pub async fn follow_logs(args: LogsArgs) -> anyhow::Result<u8> {
    let client = super::client(&args.client)?;
    let query = EventQuery {
        task: Some(args.id.clone()),
        ..Default::default()
    };
    // Subscribed before the first read, so the end of the task cannot be missed.
    let mut stream = client.events(&query).await.ok();
    let mut task = client.task(&args.id).await?;
    let mut attempt = args.attempt.unwrap_or(task.attempt);
    let (mut out, mut err) = (0u64, 0u64);
    loop {
        let ended = drover_client::is_terminal(&task.state);
        if attempt > 0 {
            let l = client.logs_from(&args.id, Some(attempt), out, err).await?;
            match args.client.output {
                Format::Json if !l.stdout.is_empty() || !l.stderr.is_empty() => {
                    output::json_line(&l)?
                }
                Format::Json => {}
                Format::Text => {
                    output::text(&l.stdout)?;
                    output::text_err(&l.stderr)?;
                }
            }
            (out, err) = (l.stdout_next, l.stderr_next);
        }
        if ended {
            return Ok(0);
        }
        wait_for_change(&mut stream, LOG_POLL).await;
        task = client.task(&args.id).await?;
        if args.attempt.is_none() && task.attempt > attempt {
            // Print the rest of the old attempt before moving on.
            if attempt > 0 {
                let l = client.logs_from(&args.id, Some(attempt), out, err).await?;
                if args.client.output == Format::Text {
                    output::text(&l.stdout)?;
                    output::text_err(&l.stderr)?;
                } else if !l.stdout.is_empty() || !l.stderr.is_empty() {
                    output::json_line(&l)?;
                }
                if args.client.output == Format::Text {
                    output::text_err(&format!("--- attempt {} ---\n", task.attempt))?;
                }
            }
            attempt = task.attempt;
            (out, err) = (0, 0);
        }
    }
}

/// Returns on the task's next event or after `at_most`, whichever comes first. A broken
/// stream is dropped (polling goes on).
async fn wait_for_change(stream: &mut Option<drover_client::EventStream>, at_most: Duration) {
    let Some(s) = stream.as_mut() else {
        tokio::time::sleep(at_most).await;
        return;
    };
    match tokio::time::timeout(at_most, s.next()).await {
        Ok(Ok(Some(_))) | Err(_) => {}
        Ok(Ok(None)) | Ok(Err(_)) => *stream = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(json: serde_json::Value) -> EventView {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn lines_name_each_kind_of_event() {
        let at = "2026-01-02T09:30:01.250000Z";
        let task = event_line(&view(serde_json::json!({
            "seq": 41, "type": "task", "at": at, "event": "task.running", "state": "running",
            "task_id": "t-1", "queue": "q", "attempt": 1, "worker": "w1", "workflow": "wf-1"
        })));
        assert_eq!(
            task,
            "      41  09:30:01.250  task.running        t-1  queue=q attempt=1 worker=w1 workflow=wf-1\n"
        );
        let worker = event_line(&view(serde_json::json!({
            "seq": 42, "type": "worker", "at": at, "event": "worker.suspect", "state": "suspect",
            "worker": "w1"
        })));
        assert_eq!(worker, "      42  09:30:01.250  worker.suspect      w1\n");
        let wf = event_line(&view(serde_json::json!({
            "seq": 43, "type": "workflow", "at": at, "event": "workflow.succeeded",
            "state": "succeeded", "workflow": "wf-1"
        })));
        assert_eq!(wf, "      43  09:30:01.250  workflow.succeeded  wf-1\n");
        let fired = event_line(&view(serde_json::json!({
            "seq": 44, "type": "schedule", "at": at, "event": "schedule.fired", "state": "fired",
            "schedule": "nightly", "task_id": "t-2"
        })));
        assert_eq!(
            fired,
            "      44  09:30:01.250  schedule.fired      nightly  task t-2\n"
        );
        let skipped = event_line(&view(serde_json::json!({
            "seq": 45, "type": "schedule", "at": at, "event": "schedule.skipped",
            "state": "skipped", "schedule": "nightly", "reason": "still\nrunning"
        })));
        assert_eq!(
            skipped,
            "      45  09:30:01.250  schedule.skipped    nightly reason=still running\n"
        );
    }
}
