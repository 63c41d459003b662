//! `drover status`, `list`, `cancel`, `logs` and `workers`.

use drover_client::{ListQuery, TaskList, TaskView, WorkerList};

use crate::cli::{ClientOpts, IdArgs, ListArgs, LogsArgs, ResultArgs, StatusArgs, WorkerAction};
use crate::exit::usage;
use crate::output::{self, cut, map, opt, opt_time, short_time, Format, Table};

pub async fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let client = super::client(&args.client)?;
    if !args.watch {
        let t = match client.task(&args.id).await {
            Ok(t) => t,
            // Not a task: maybe a workflow.
            Err(e) if e.is_not_found() => match client.workflow(&args.id).await {
                Ok(w) => {
                    super::flow::print_workflow(&w, args.client.output)?;
                    return Ok(0);
                }
                Err(_) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        match args.client.output {
            Format::Json => output::json(&t)?,
            Format::Text => output::text(&describe(&t))?,
        }
        return Ok(0);
    }
    // Each change as it is seen: a line of text, or a compact JSON document per line.
    let mut failed = None;
    let done = client
        .wait(&args.id, |t| {
            let r = match args.client.output {
                Format::Json => output::json_line(t),
                Format::Text => output::text(&change_line(t)),
            };
            if let Err(e) = r {
                failed.get_or_insert(e);
            }
        })
        .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    if args.client.output == Format::Text {
        output::text(&describe(&done))?;
    }
    Ok(0)
}

pub async fn list(args: ListArgs) -> anyhow::Result<u8> {
    if let Some(n) = args.limit {
        if !(1..=drover_api::limits::MAX_PAGE).contains(&n) {
            return Err(usage(format!(
                "--limit: {n} is out of range (1 to {})",
                drover_api::limits::MAX_PAGE
            )));
        }
    }
    let client = super::client(&args.client)?;
    let mut q = ListQuery {
        state: args.state.clone(),
        queue: args.queue.clone(),
        limit: args.limit,
        cursor: args.cursor.clone(),
    };
    let mut all = TaskList {
        tasks: Vec::new(),
        next_cursor: None,
    };
    loop {
        let page = client.list(&q).await?;
        all.tasks.extend(page.tasks);
        all.next_cursor = page.next_cursor;
        match (&all.next_cursor, args.all) {
            (Some(c), true) => q.cursor = Some(c.clone()),
            _ => break,
        }
    }
    match args.client.output {
        Format::Json => output::json(&all)?,
        Format::Text => {
            output::text(&task_table(&all.tasks))?;
            if let Some(c) = &all.next_cursor {
                output::text_err(&format!(
                    "more tasks: add --cursor {c} for the next page, or --all\n"
                ))?;
            }
        }
    }
    Ok(0)
}

/// `drover result ID [--wait]`: a handler task's result as pretty JSON; a task that did not
/// succeed exits like `submit --wait`, saying how it ended.
pub async fn result(args: ResultArgs) -> anyhow::Result<u8> {
    let client = super::client(&args.client)?;
    let t = if args.wait {
        client.wait(&args.id, |_| {}).await?
    } else {
        client.task(&args.id).await?
    };
    if t.state == "succeeded" && t.result.is_some() {
        print_result(&client, &t.id).await?;
        return Ok(0);
    }
    let why = if drover_client::is_terminal(&t.state) {
        super::submit::ending(&t)
    } else {
        format!(
            "task {} is {}: no result yet (--wait waits for it)",
            t.id, t.state
        )
    };
    output::text_err(&format!("drover: {why}\n"))?;
    Ok(crate::exit::for_task(&t.state, t.exit_code).max(1))
}

/// Prints a task's result, pretty JSON (as `GET /v1/tasks/{id}/result` has it).
pub async fn print_result(client: &drover_client::Client, id: &str) -> anyhow::Result<()> {
    let value: serde_json::Value = client.result(id).await?;
    output::text(&format!("{}\n", serde_json::to_string_pretty(&value)?))
}

pub async fn cancel(args: IdArgs) -> anyhow::Result<u8> {
    let client = super::client(&args.client)?;
    let t = client.cancel(&args.id).await?;
    match args.client.output {
        Format::Json => output::json(&t)?,
        Format::Text => output::text(&format!("{} {}\n", t.id, t.state))?,
    }
    Ok(0)
}

pub async fn logs(args: LogsArgs) -> anyhow::Result<u8> {
    if args.follow {
        return super::events::follow_logs(args).await;
    }
    let client = super::client(&args.client)?;
    let logs = client.logs(&args.id, args.attempt).await?;
    match args.client.output {
        Format::Json => output::json(&logs)?,
        Format::Text => {
            output::text(&logs.stdout)?;
            output::text_err(&logs.stderr)?;
        }
    }
    Ok(0)
}

pub async fn workers(opts: ClientOpts) -> anyhow::Result<u8> {
    let client = super::client(&opts)?;
    let list = client.workers().await?;
    match opts.output {
        Format::Json => output::json(&list)?,
        Format::Text => output::text(&worker_table(&list))?,
    }
    Ok(0)
}

/// `drover worker drain|resume NAME`.
pub async fn worker_action(action: WorkerAction) -> anyhow::Result<u8> {
    let (args, on) = match action {
        WorkerAction::Drain(a) => (a, true),
        WorkerAction::Resume(a) => (a, false),
    };
    let client = super::client(&args.client)?;
    let list = client.drain(&args.name, on).await?;
    match args.client.output {
        Format::Json => output::json(&list)?,
        Format::Text => output::text(&worker_table(&list))?,
    }
    Ok(0)
}

/// A task as `key: value` lines, then its attempts as a table.
pub fn describe(t: &TaskView) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", t.id.clone()),
        ("state", t.state.clone()),
        ("queue", t.queue.clone()),
        ("kind", t.kind.clone()),
        ("command", output::command(t, 200)),
        ("priority", t.priority.to_string()),
        ("attempt", format!("{} of {}", t.attempt, t.max_attempts)),
        ("exit code", opt(&t.exit_code)),
        ("worker", opt(&t.worker)),
        ("created", t.created_at.clone()),
        ("started", opt(&t.started_at)),
        ("finished", opt(&t.finished_at)),
    ];
    if let Some(nb) = &t.not_before {
        rows.push(("not before", nb.clone()));
    }
    if let Some(ms) = t.timeout_ms {
        rows.push(("timeout", format!("{ms} ms")));
    }
    if !t.label_selector.is_empty() {
        rows.push(("selector", t.label_selector.clone()));
    }
    if let Some(s) = &t.strategy {
        rows.push(("strategy", s.clone()));
    }
    if let Some(k) = &t.key {
        rows.push(("key", k.clone()));
    }
    if !t.resources.is_empty() {
        rows.push(("resources", map(&t.resources)));
    }
    if let (Some(i), Some(n)) = (t.shard_index, t.shard_count) {
        rows.push(("shard", format!("{i} of {n}")));
    }
    if let Some(why) = &t.waiting_reason {
        rows.push(("waiting", why.clone()));
    }
    if let Some(r) = &t.result {
        // Long results: `drover result ID` prints them whole.
        rows.push(("result", output::cut(&r.to_string(), 200)));
    }
    if let Some(k) = &t.idempotency_key {
        rows.push(("idempotency", k.clone()));
    }
    if t.lost > 0 {
        rows.push(("lost", t.lost.to_string()));
    }
    if let Some(e) = &t.error {
        rows.push(("error", e.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    let mut s = String::new();
    for (k, v) in rows {
        s.push_str(&format!("{:<12} {v}\n", format!("{k}:")));
    }
    if !t.attempts.is_empty() {
        let mut table = Table::new(vec![
            "ATTEMPT", "WORKER", "OUTCOME", "EXIT", "STARTED", "FINISHED", "ERROR",
        ]);
        for a in &t.attempts {
            table.row(vec![
                a.attempt.to_string(),
                a.worker.clone(),
                a.outcome.clone().unwrap_or_else(|| "running".into()),
                opt(&a.exit_code),
                opt_time(&a.started_at),
                opt_time(&a.finished_at),
                a.error.as_deref().map(|e| cut(e, 60)).unwrap_or_default(),
            ]);
        }
        s.push('\n');
        s.push_str(&table.render());
    }
    s
}

/// `HH:MM:SS.mmm  ID  state  attempt N  worker W`: one line per change seen by `--watch`.
fn change_line(t: &TaskView) -> String {
    let when = t.updated_at.get(11..23).unwrap_or(&t.updated_at);
    let mut s = format!("{when}  {}  {}", t.id, t.state);
    if t.attempt > 0 {
        s.push_str(&format!("  attempt {}", t.attempt));
    }
    if let Some(w) = &t.worker {
        s.push_str(&format!("  worker {w}"));
    }
    s.push('\n');
    s
}

pub fn task_table(tasks: &[TaskView]) -> String {
    let mut t = Table::new(vec![
        "ID", "STATE", "QUEUE", "KIND", "ATTEMPT", "EXIT", "WORKER", "CREATED", "COMMAND",
    ]);
    for task in tasks {
        t.row(vec![
            task.id.clone(),
            task.state.clone(),
            task.queue.clone(),
            task.kind.clone(),
            format!("{}/{}", task.attempt, task.max_attempts),
            opt(&task.exit_code),
            opt(&task.worker),
            short_time(&task.created_at),
            output::command(task, 50),
        ]);
    }
    t.render()
}

/// `850ms`, `12.3s`, `4m05s`.
fn age(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

pub fn worker_table(list: &WorkerList) -> String {
    let mut t = Table::new(vec![
        "NAME",
        "STATE",
        "RUNNING",
        "HELD",
        "SLOTS",
        "PREFETCH",
        "KINDS",
        "LABELS",
        "RESOURCES",
        "LAST HEARTBEAT",
        "AGE",
    ]);
    for w in &list.workers {
        t.row(vec![
            w.name.clone(),
            w.state.clone(),
            w.running.to_string(),
            w.held.to_string(),
            w.slots.to_string(),
            w.prefetch.to_string(),
            if w.kinds.is_empty() {
                "*".into()
            } else {
                w.kinds.join(",")
            },
            map(&w.labels),
            map(&w.resources),
            short_time(&w.last_heartbeat),
            age(w.last_heartbeat_age_ms),
        ]);
    }
    t.render()
}
