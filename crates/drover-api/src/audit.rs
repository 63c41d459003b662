//! REST types of the audit log (`GET /v1/audit`).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::flow::parse_time;
use crate::ApiError;
use drover_core::Micros;

/// Most records one listing returns.
pub const MAX_AUDIT_LIMIT: usize = 1000;

/// One state-changing or refused request.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339.
    pub at: String,
    /// The token's name, absent when the request carried no valid token.
    pub token: Option<String>,
    pub role: Option<String>,
    /// The peer's address.
    pub remote: String,
    /// Method and route, e.g. `POST /v1/tasks/{id}/cancel`.
    pub operation: String,
    /// The path requested.
    pub object: String,
    /// The HTTP status answered (401, 403, 421 and 429 are refusals).
    pub status: u16,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub records: Vec<AuditEntry>,
    /// Pass as `before` for the next page; absent on the last one.
    pub next: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only records since this RFC 3339 time, or this long ago (`1h`, `7d`).
    #[param(schema_with = crate::schema::since)]
    pub since: Option<String>,
    /// Only records of this token name.
    pub token: Option<String>,
    /// Only records older than this seq (the previous page's `next`).
    #[param(schema_with = crate::schema::u64_any)]
    pub before: Option<u64>,
    /// At most this many (1 to 1000, default 100).
    #[param(schema_with = crate::schema::audit_page)]
    pub limit: Option<usize>,
}

impl AuditParams {
    /// The `since` bound in µs, resolved against `now`; the limit, checked.
    pub fn validate(&self, now: Micros) -> Result<(Option<Micros>, usize), ApiError> {
        let since = match self.since.as_deref() {
            None => None,
            // A duration counts back from now; a time is taken as it is.
            Some(s) => Some(match crate::rest::parse_duration_ms(s) {
                Ok(ms) => now.saturating_sub((ms as Micros).saturating_mul(1000)),
                Err(_) => parse_time(s).map_err(|_| {
                    let m = format!("'{s}' is neither a duration (\"1h\") nor an RFC 3339 time");
                    ApiError::invalid("since", m)
                })?,
            }),
        };
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
            let m = format!("limit must be 1 to {MAX_AUDIT_LIMIT}");
            return Err(ApiError::invalid("limit", m));
        }
        Ok((since, limit))
    }
}
