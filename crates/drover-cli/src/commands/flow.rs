//! `drover queue ...`, `drover workflow ...`, `drover submit --file`, and the workflow side of
//! `drover status`.

use std::path::Path;

use drover_client::{Client, QueueSetRequest, QueueView, WorkflowRequest, WorkflowView};

use crate::cli::{QueueCommand, WorkflowCommand};
use crate::exit::usage;
use crate::output::{self, Format, Table};

pub async fn queue(cmd: QueueCommand) -> anyhow::Result<u8> {
    match cmd {
        QueueCommand::List(opts) => {
            let client = super::client(&opts)?;
            let list = client.queues().await?;
            match opts.output {
                Format::Json => output::json(&list)?,
                Format::Text => {
                    let mut t = Table::new(vec![
                        "QUEUE",
                        "DEPTH",
                        "RUNNING",
                        "CONCURRENCY",
                        "PAUSED",
                        "STRATEGY",
                        "WEIGHT",
                        "MAX-QUEUED",
                    ]);
                    for q in &list.queues {
                        t.row(vec![
                            q.name.clone(),
                            q.depth.to_string(),
                            q.running.to_string(),
                            q.concurrency.map_or("-".into(), |c| c.to_string()),
                            if q.paused { "yes".into() } else { "no".into() },
                            q.strategy.clone().unwrap_or_else(|| "-".into()),
                            q.weight.to_string(),
                            q.max_queued.map_or("-".into(), |n| n.to_string()),
                        ]);
                    }
                    output::text(&t.render())?;
                }
            }
            Ok(0)
        }
        QueueCommand::Set(a) => {
            if a.concurrency.is_none()
                && a.strategy.is_none()
                && a.weight.is_none()
                && a.rate.is_none()
                && a.max_queued.is_none()
            {
                return Err(usage(
                    "nothing to set: give --concurrency N, --strategy S, --weight W, \
                     --rate N/s and/or --max-queued N",
                ));
            }
            let client = super::client(&a.client)?;
            let q = client
                .set_queue(
                    &a.name,
                    &QueueSetRequest {
                        concurrency: a.concurrency,
                        strategy: a.strategy.clone(),
                        paused: None,
                        weight: a.weight,
                        rate: a.rate.clone(),
                        max_queued: a.max_queued,
                    },
                )
                .await?;
            print_queue(&q, a.client.output)
        }
        QueueCommand::Pause(a) => {
            let client = super::client(&a.client)?;
            let q = client.pause_queue(&a.name, true).await?;
            print_queue(&q, a.client.output)
        }
        QueueCommand::Resume(a) => {
            let client = super::client(&a.client)?;
            let q = client.pause_queue(&a.name, false).await?;
            print_queue(&q, a.client.output)
        }
    }
}

fn print_queue(q: &QueueView, f: Format) -> anyhow::Result<u8> {
    match f {
        Format::Json => output::json(q)?,
        Format::Text => output::text(&format!(
            "queue {}: depth {}, running {}, concurrency {}, weight {}, rate {}, max queued {}, \
             {}{}\n",
            q.name,
            q.depth,
            q.running,
            q.concurrency.map_or("unlimited".into(), |c| c.to_string()),
            q.weight,
            q.rate.as_deref().unwrap_or("unlimited"),
            q.max_queued.map_or("unlimited".into(), |n| n.to_string()),
            if q.paused { "paused" } else { "active" },
            q.strategy
                .as_ref()
                .map(|s| format!(", strategy {s}"))
                .unwrap_or_default(),
        ))?,
    }
    Ok(0)
}

pub async fn workflow(cmd: WorkflowCommand) -> anyhow::Result<u8> {
    match cmd {
        WorkflowCommand::Rerun(a) => {
            if !a.from_failed {
                return Err(usage(
                    "say what to rerun: --from-failed reruns the nodes that did not succeed",
                ));
            }
            let client = super::client(&a.client)?;
            let w = client.rerun_workflow(&a.id).await?;
            print_workflow(&w, a.client.output)?;
            Ok(0)
        }
        WorkflowCommand::Show(a) => {
            let client = super::client(&a.client)?;
            let w = client.workflow(&a.id).await?;
            print_workflow(&w, a.client.output)?;
            Ok(0)
        }
        WorkflowCommand::List(opts) => {
            let client = super::client(&opts)?;
            let list = client.workflows().await?;
            match opts.output {
                Format::Json => output::json(&list)?,
                Format::Text => {
                    let mut t = Table::new(vec!["ID", "NAME", "STATE", "NODES", "CREATED"]);
                    for w in &list.workflows {
                        t.row(vec![
                            w.id.clone(),
                            w.name.clone(),
                            w.state.clone(),
                            w.nodes.len().to_string(),
                            output::short_time(&w.created_at),
                        ]);
                    }
                    output::text(&t.render())?;
                }
            }
            Ok(0)
        }
    }
}

pub fn print_workflow(w: &WorkflowView, f: Format) -> anyhow::Result<()> {
    match f {
        Format::Json => output::json(w),
        Format::Text => {
            let mut out = format!("workflow {} ({}): {}\n", w.id, w.name, w.state);
            let mut t = Table::new(vec!["NODE", "STATE", "TASK", "AFTER"]);
            for n in &w.nodes {
                t.row(vec![
                    n.name.clone(),
                    n.state.clone(),
                    n.task_id.clone(),
                    if n.after.is_empty() {
                        "-".into()
                    } else {
                        n.after.join(",")
                    },
                ]);
            }
            out.push_str(&t.render());
            output::text(&out)
        }
    }
}

/// Reads a workflow document: YAML (a superset of JSON) or JSON.
pub fn read_workflow(path: &Path) -> anyhow::Result<WorkflowRequest> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let doc: WorkflowRequest = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| usage(format!("{}: not a workflow document: {e}", path.display())))?
    } else {
        serde_yaml::from_str(&text)
            .map_err(|e| usage(format!("{}: not a workflow document: {e}", path.display())))?
    };
    doc.validate()
        .map_err(|e| usage(format!("{}: {}", path.display(), e.message)))?;
    Ok(doc)
}

/// `drover submit --file wf.yaml [--wait]`.
pub async fn submit_file(
    client: &Client,
    path: &Path,
    wait: bool,
    f: Format,
) -> anyhow::Result<u8> {
    let doc = read_workflow(path)?;
    let w = client.submit_workflow(&doc).await?;
    if wait {
        let w = client.wait_workflow(&w.id).await?;
        print_workflow(&w, f)?;
        return Ok(if w.state == "succeeded" { 0 } else { 1 });
    }
    match f {
        Format::Json => output::json(&w)?,
        Format::Text => output::text(&format!("{}\n", w.id))?,
    }
    Ok(0)
}
