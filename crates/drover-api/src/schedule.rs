//! REST types of schedules (`/v1/schedules`): cron expressions with time zones, fixed rate,
//! fixed delay; overlap and misfire policies. Validation lives here, next to the types.

use std::sync::Arc;

use drover_core::schedule::{self, Misfire, Overlap, ScheduleSpec, Trigger, MAX_CATCH_UP};
use drover_core::Micros;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::rest::{parse_duration_ms, SubmitRequest};

/// A schedule to add (or replace, by name).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The namespace of the schedule and the tasks it fires (default `default`); names are
    /// unique within it. The task must not name another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 63, pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub namespace: Option<String>,
    pub name: String,
    /// A cron expression: 5 fields (`min hour dom month dow`) or 6 (seconds first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone of the expression (default `UTC`); daylight-saving changes handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// Fixed rate instead of an expression, e.g. `"90s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Fixed delay: the next run starts this long after the previous one ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_after_previous: Option<String>,
    /// `allow` (default, in parallel), `skip`, `queue` (one after the other), `replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
    /// After downtime: `skip` (default), `run_once`, `run_all` (up to `max_catch_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub misfire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_catch_up: Option<u32>,
    /// The task each fire submits (`after`, `at` and `deadline` do not apply).
    pub task: SubmitRequest,
}

impl ScheduleRequest {
    /// Checks everything; `now` anchors a fixed-rate schedule. The template's secret env is
    /// checked, not sealed: for clients (see [`ScheduleRequest::validate_sealed`]).
    pub fn validate(&self, now: Micros) -> Result<ScheduleSpec, ApiError> {
        self.validate_sealed(now, &crate::secret::CheckOnly)
    }

    /// [`ScheduleRequest::validate`], with the template's secret env sealed by `seal`.
    pub fn validate_sealed(
        &self,
        now: Micros,
        seal: &dyn crate::secret::Seal,
    ) -> Result<ScheduleSpec, ApiError> {
        crate::rest::check_name("name", &self.name)?;
        let trigger = self.trigger(now)?;
        let overlap = self
            .overlap
            .as_deref()
            .map(str::parse::<Overlap>)
            .transpose()
            .map_err(|m| ApiError::invalid("overlap", m))?
            .unwrap_or_default();
        let misfire = self
            .misfire
            .as_deref()
            .map(str::parse::<Misfire>)
            .transpose()
            .map_err(|m| ApiError::invalid("misfire", m))?
            .unwrap_or_default();
        let max_catch_up = self.max_catch_up.unwrap_or(1);
        if max_catch_up == 0 || max_catch_up > MAX_CATCH_UP {
            return Err(ApiError::invalid(
                "max_catch_up",
                format!("1 to {MAX_CATCH_UP}"),
            ));
        }
        let t = &self.task;
        if !t.after.is_empty()
            || t.at.is_some()
            || t.deadline.is_some()
            || t.delay.is_some()
            || t.on_upstream_failure.is_some()
            || t.serial == Some(true)
        {
            return Err(ApiError::invalid(
                "task",
                "after, on_upstream_failure, serial, at, delay and deadline do not apply to a \
                 scheduled task",
            ));
        }
        let namespace = crate::namespace::or_default("namespace", self.namespace.as_deref())?;
        if t.namespace.is_some() {
            return Err(ApiError::invalid(
                "task.namespace",
                format!(
                    "a schedule's tasks run in the schedule's namespace ({namespace}); give \
                     `namespace` on the schedule, not on its task"
                ),
            ));
        }
        let mut v = t.validate_sealed(seal).map_err(|mut e| {
            e.message = format!("task.{}", e.message);
            e.field = e.field.map(|f| format!("task.{f}"));
            e
        })?;
        v.def.namespace = namespace;
        Ok(ScheduleSpec {
            name: self.name.clone(),
            trigger,
            overlap,
            misfire,
            max_catch_up,
            template: Arc::new(v.def),
        })
    }

    /// Exactly one of `cron` (with its `tz`), `every` (anchored at `now`) and
    /// `delay_after_previous`, checked.
    fn trigger(&self, now: Micros) -> Result<Trigger, ApiError> {
        let given = [
            self.cron.is_some(),
            self.every.is_some(),
            self.delay_after_previous.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(ApiError::invalid(
                "cron",
                "give exactly one of cron, every, delay_after_previous",
            ));
        }
        if self.tz.is_some() && self.cron.is_none() {
            return Err(ApiError::invalid(
                "tz",
                "a time zone applies to a cron expression",
            ));
        }
        Ok(if let Some(expr) = &self.cron {
            let tz = self.tz.clone().unwrap_or_else(|| "UTC".into());
            if !crate::patterns::cron_regex().is_match(expr) {
                let m = schedule::parse_cron(expr).err().unwrap_or_else(|| {
                    format!(
                        "'{expr}' is not in the form this server takes: 5 or 6 fields one space \
                         apart, of *, numbers, ranges a-b, steps /n, lists, upper-case month and \
                         weekday names (no L, W, #, ?); or @hourly, @daily, @weekly, @monthly, \
                         @yearly"
                    )
                });
                return Err(ApiError::invalid("cron", m));
            }
            schedule::parse_cron(expr).map_err(|m| ApiError::invalid("cron", m))?;
            schedule::parse_tz(&tz).map_err(|m| ApiError::invalid("tz", m))?;
            Trigger::Cron {
                expr: expr.trim().to_string(),
                tz,
            }
        } else if let Some(e) = &self.every {
            let ms = parse_duration_ms(e).map_err(|m| ApiError::invalid("every", m))?;
            if ms < 1000 {
                return Err(ApiError::invalid("every", "at least 1s"));
            }
            Trigger::Every {
                every_ms: ms,
                anchor: now,
            }
        } else {
            let d = self.delay_after_previous.as_deref().unwrap_or_default();
            let ms =
                parse_duration_ms(d).map_err(|m| ApiError::invalid("delay_after_previous", m))?;
            if ms == 0 {
                return Err(ApiError::invalid(
                    "delay_after_previous",
                    "must be positive",
                ));
            }
            Trigger::DelayAfterPrevious { delay_ms: ms }
        })
    }
}

/// A schedule as listed (the dashboard renders this).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ScheduleView {
    pub namespace: String,
    pub name: String,
    /// The cron expression; null for `every` and `delay_after_previous` schedules.
    pub cron: Option<String>,
    pub tz: Option<String>,
    pub every_ms: Option<u64>,
    pub delay_after_previous_ms: Option<u64>,
    pub overlap: String,
    pub misfire: String,
    pub max_catch_up: u32,
    /// Null while paused (or, for a fixed delay, while the previous run runs).
    pub next_fire_at: Option<String>,
    pub paused: bool,
    /// The latest slot handled.
    pub last_fire_at: Option<String>,
    pub last_task_id: Option<String>,
    /// The latest fire's task is still active.
    pub running: bool,
    pub queue: String,
    pub argv: Vec<String>,
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// `POST /v1/schedules/{name}/backfill`: fire the slots of a range, up to now (a range that
/// ends before it starts, or starts in the future, holds none).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, inclusive.
    pub to: String,
}

/// Tasks a run or backfill submitted.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FiredTasks {
    pub ids: Vec<String>,
    /// A backfill fires at most 1000 slots: when the range holds more, the first slot not
    /// fired (RFC 3339), to backfill again from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
