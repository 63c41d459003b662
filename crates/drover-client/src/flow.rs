//! Queues and workflows: `/v1/queues`, `/v1/workflows`.

use reqwest::Method;

pub use drover_api::flow::{
    QueueList, QueueSetRequest, QueueView, RerunRequest, WorkflowList, WorkflowNodeView,
    WorkflowRequest, WorkflowTaskRequest, WorkflowView,
};

use std::time::Duration;

use crate::{next_pause, Client, EventQuery, Result};

/// Path segments are names without `/`-free guarantees: escape them.
pub(crate) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    /// `GET /v1/queues`: every configured or active queue with its counts.
    pub async fn queues(&self) -> Result<QueueList> {
        self.get("/v1/queues", &self.ns_query()).await
    }

    /// `PUT /v1/queues/{name}`: changes a queue's concurrency, strategy or pause.
    pub async fn set_queue(&self, name: &str, req: &QueueSetRequest) -> Result<QueueView> {
        self.send(
            Method::PUT,
            &format!("/v1/queues/{}", seg(name)),
            &self.ns_query(),
            Some(req),
        )
        .await
    }

    /// `POST /v1/queues/{name}/pause` or `/resume`.
    pub async fn pause_queue(&self, name: &str, pause: bool) -> Result<QueueView> {
        let verb = if pause { "pause" } else { "resume" };
        self.send::<(), _>(
            Method::POST,
            &format!("/v1/queues/{}/{verb}", seg(name)),
            &self.ns_query(),
            None,
        )
        .await
    }

    /// `POST /v1/workflows`: submits a DAG; answered once every node is committed. Refused
    /// whole for now (429: a queue is full), it is sent again (see the crate docs).
    pub async fn submit_workflow(&self, req: &WorkflowRequest) -> Result<WorkflowView> {
        let req = WorkflowRequest {
            namespace: self.ns_or(&req.namespace),
            ..req.clone()
        };
        self.send_as(Method::POST, "/v1/workflows", &[], Some(&req), true)
            .await
    }

    /// `GET /v1/workflows/{id}`: the workflow and each node's state.
    pub async fn workflow(&self, id: &str) -> Result<WorkflowView> {
        self.get(&format!("/v1/workflows/{}", seg(id)), &[]).await
    }

    /// Waits until the workflow has ended: listens to its workflow events (subscribed before
    /// it reads the workflow, so its end is never missed) and reads it again at the final one;
    /// polls if the event stream is unavailable or breaks.
    pub async fn wait_workflow(&self, id: &str) -> Result<WorkflowView> {
        let ended = |w: &WorkflowView| !matches!(w.state.as_str(), "pending" | "running");
        let query = EventQuery {
            workflow: Some(id.to_string()),
            kind: Some("workflow".into()),
            ..Default::default()
        };
        if let Ok(mut stream) = self.events(&query).await {
            let w = self.workflow(id).await?;
            if ended(&w) {
                return Ok(w);
            }
            while let Ok(Some(ev)) = stream.next().await {
                if ev.is_terminal_workflow_event() {
                    return self.workflow(id).await;
                }
            }
        }
        let mut pause = Duration::from_millis(20);
        loop {
            let w = self.workflow(id).await?;
            if ended(&w) {
                return Ok(w);
            }
            tokio::time::sleep(pause).await;
            pause = next_pause(pause);
        }
    }

    /// `GET /v1/workflows`: the newest workflows.
    pub async fn workflows(&self) -> Result<WorkflowList> {
        self.get("/v1/workflows", &self.ns_query()).await
    }

    /// `POST /v1/workflows/{id}/rerun`: reruns the nodes that did not succeed.
    pub async fn rerun_workflow(&self, id: &str) -> Result<WorkflowView> {
        self.send_as(
            Method::POST,
            &format!("/v1/workflows/{}/rerun", seg(id)),
            &[],
            Some(&RerunRequest { from_failed: true }),
            true,
        )
        .await
    }
}
