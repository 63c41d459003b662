//! Tasks as functions from the caller's side: submit a typed payload to the handler of a
//! kind, await its typed result.
//!
//! ```no_run
//! # async fn demo() -> Result<(), drover_client::ClientError> {
//! use drover_client::Client;
//! #[derive(serde::Serialize)]
//! struct Resize { w: u32, h: u32 }
//! #[derive(serde::Deserialize)]
//! struct Resized { pixels: u64 }
//!
//! let client = Client::new("http://127.0.0.1:7070", None)?;
//! let task = client.submit_payload("resize", &Resize { w: 100, h: 50 }).await?;
//! let out: Resized = client.wait_result(&task.id).await?;
//! assert_eq!(out.pixels, 5000);
//! # Ok(()) }
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{segment, Client, ClientError, Result, SubmitRequest, TaskView};

impl Client {
    /// `POST /v1/tasks` with `kind` and `payload`: a task for the handler of `kind`.
    pub async fn submit_payload<P: Serialize + ?Sized>(
        &self,
        kind: &str,
        payload: &P,
    ) -> Result<TaskView> {
        self.submit_payload_with(kind, payload, SubmitRequest::default())
            .await
    }

    /// [`Client::submit_payload`] with the other options of `options` (queue, retries,
    /// timeout, priority, idempotency key, ...).
    pub async fn submit_payload_with<P: Serialize + ?Sized>(
        &self,
        kind: &str,
        payload: &P,
        options: SubmitRequest,
    ) -> Result<TaskView> {
        let payload = serde_json::to_value(payload).map_err(|e| ClientError::BadResult {
            task_id: String::new(),
            detail: format!("the payload does not serialize to JSON: {e}"),
        })?;
        let req = SubmitRequest {
            kind: Some(kind.to_string()),
            payload: Some(payload),
            ..options
        };
        self.submit(&req).await
    }

    /// `GET /v1/tasks/{id}/result`: a succeeded handler task's result as `R`.
    pub async fn result<R: DeserializeOwned>(&self, id: &str) -> Result<R> {
        let v: serde_json::Value = self
            .get(&format!("/v1/tasks/{}/result", segment(id)), &[])
            .await?;
        R::deserialize(v).map_err(|e| ClientError::BadResult {
            task_id: id.to_string(),
            detail: e.to_string(),
        })
    }

    /// Waits for the task to end, then returns its result as `R`; a task that did not
    /// succeed is [`ClientError::TaskFailed`] with the handler's error message.
    pub async fn wait_result<R: DeserializeOwned>(&self, id: &str) -> Result<R> {
        let done = self.wait(id, |_| {}).await?;
        if done.state != "succeeded" {
            return Err(ClientError::TaskFailed {
                task_id: done.id,
                state: done.state,
                error: done.error,
            });
        }
        self.result(id).await
    }

    /// Submits `payload` to the handler of `kind` and awaits its result.
    pub async fn call<P: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        kind: &str,
        payload: &P,
    ) -> Result<R> {
        let t = self.submit_payload(kind, payload).await?;
        self.wait_result(&t.id).await
    }
}
