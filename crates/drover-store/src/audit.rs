//! The audit log's records and queries: who did (or was refused) what, when, from where.

use drover_core::Micros;

/// One state-changing or refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Assigned by the store, increasing; 0 before it is stored.
    pub seq: u64,
    pub at: Micros,
    /// The token's name and role; `None` when the request carried no valid token.
    pub token: Option<String>,
    pub role: Option<String>,
    /// The peer's address.
    pub remote: String,
    /// Method and route, e.g. `POST /v1/tasks/{id}/cancel`.
    pub operation: String,
    /// The path requested, naming the object, e.g. `/v1/tasks/0193…/cancel`.
    pub object: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// Which audit records to list: newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records at or after this time.
    pub since: Option<Micros>,
    /// Only records of this token name.
    pub token: Option<String>,
    /// Only records with a seq lower than this (the previous page's last).
    pub before: Option<u64>,
    pub limit: usize,
}

impl AuditQuery {
    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.since.is_none_or(|s| r.at >= s)
            && self
                .token
                .as_ref()
                .is_none_or(|t| r.token.as_ref() == Some(t))
            && self.before.is_none_or(|b| r.seq < b)
    }
}
