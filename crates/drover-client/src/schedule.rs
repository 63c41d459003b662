//! Schedules: `/v1/schedules`.

use reqwest::Method;

pub use drover_api::schedule::{
    BackfillRequest, FiredTasks, ScheduleList, ScheduleRequest, ScheduleView,
};

use crate::flow::seg;
use crate::{Client, Result};

impl Client {
    /// `GET /v1/schedules`: every schedule with its next fire time.
    pub async fn schedules(&self) -> Result<ScheduleList> {
        self.get("/v1/schedules", &self.ns_query()).await
    }

    /// `POST /v1/schedules`: adds (or replaces, by name) a schedule.
    pub async fn add_schedule(&self, req: &ScheduleRequest) -> Result<ScheduleView> {
        let req = ScheduleRequest {
            namespace: self.ns_or(&req.namespace),
            ..req.clone()
        };
        self.send(Method::POST, "/v1/schedules", &[], Some(&req))
            .await
    }

    /// `DELETE /v1/schedules/{name}`.
    pub async fn remove_schedule(&self, name: &str) -> Result<()> {
        self.send::<(), serde_json::Value>(
            Method::DELETE,
            &format!("/v1/schedules/{}", seg(name)),
            &self.ns_query(),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `POST /v1/schedules/{name}/pause` or `/resume`.
    pub async fn pause_schedule(&self, name: &str, pause: bool) -> Result<ScheduleView> {
        let verb = if pause { "pause" } else { "resume" };
        self.send::<(), _>(
            Method::POST,
            &format!("/v1/schedules/{}/{verb}", seg(name)),
            &self.ns_query(),
            None,
        )
        .await
    }

    /// `POST /v1/schedules/{name}/run`: fires once now.
    pub async fn run_schedule(&self, name: &str) -> Result<FiredTasks> {
        self.send::<(), _>(
            Method::POST,
            &format!("/v1/schedules/{}/run", seg(name)),
            &self.ns_query(),
            None,
        )
        .await
    }

    /// `POST /v1/schedules/{name}/backfill`: fires the slots of a past range.
    pub async fn backfill_schedule(&self, name: &str, req: &BackfillRequest) -> Result<FiredTasks> {
        self.send(
            Method::POST,
            &format!("/v1/schedules/{}/backfill", seg(name)),
            &self.ns_query(),
            Some(req),
        )
        .await
    }
}
