//! API tokens (server side of `drover token`): who may call the API. Not scheduling state:
//! the core never sees them.

use drover_core::Micros;

/// One API token. Only the SHA-256 of its secret is stored; the secret itself is shown once,
/// when the token is created, and never again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Unique; what `drover token revoke NAME` names.
    pub name: String,
    /// `viewer`, `submitter`, `operator`, `admin` or `worker` (the server parses it).
    pub role: String,
    /// The namespaces the token is limited to; empty means every one.
    pub namespaces: Vec<String>,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    pub created_at: Micros,
    /// Refused from this time on; `None`: never expires.
    pub expires_at: Option<Micros>,
    /// What a worker registering with it may claim, as JSON (the server parses it); `{}`:
    /// no limit.
    pub worker_limits: String,
}
