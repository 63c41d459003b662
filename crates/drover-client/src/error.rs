//! The one error type of the SDK.

use drover_api::{ApiError, ErrorCode};

/// What went wrong with a request, phrased for the person who made it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with its JSON error body (`{code, message, field}`).
    #[error("{}", error.message)]
    Api {
        /// The HTTP status of the answer.
        status: u16,
        error: ApiError,
    },
    /// No connection could be made: nothing listens there, or the host is unknown.
    #[error(
        "cannot reach the Drover server at {url}: {detail} — is it running? start one with `drover up`"
    )]
    Unreachable { url: String, detail: String },
    /// A connection was made but the exchange failed (reset, timeout, truncated body).
    #[error("the request to the Drover server at {url} failed: {detail}")]
    Transport { url: String, detail: String },
    /// The answer was not what a Drover server sends (not JSON, wrong shape).
    #[error("unexpected answer from {url} (HTTP {status}): {detail}")]
    Protocol {
        url: String,
        status: u16,
        detail: String,
    },
    /// The server URL given to the client is unusable.
    #[error("invalid server URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A task whose result was awaited ended without one: failed, timed out, cancelled...
    /// `error` is the handler's message (or the server's reason).
    #[error("task {task_id} {state}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    TaskFailed {
        task_id: String,
        state: String,
        error: Option<String>,
    },
    /// A result that does not fit the type it was read as.
    #[error("the result of task {task_id} does not fit the expected type: {detail}")]
    BadResult { task_id: String, detail: String },
}

impl ClientError {
    /// The server's error, when the server answered with one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.api_error().map(|e| e.code)
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ErrorCode::NotFound)
    }

    /// The request itself was wrong (bad argument, too large, bad URL): retrying will not help.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, ClientError::InvalidUrl { .. })
            || matches!(
                self.code(),
                Some(ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge)
            )
    }

    /// No server could be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// The innermost useful message of an error chain ("Connection refused (os error 111)").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !m.is_empty() {
            msg = m;
        }
        cur = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_show_the_server_message() {
        let e = ClientError::Api {
            status: 404,
            error: ApiError::not_found("no task with id x"),
        };
        assert_eq!(e.to_string(), "no task with id x");
        assert!(e.is_not_found());
        assert!(!e.is_invalid_input());
        let e = ClientError::Api {
            status: 400,
            error: ApiError::invalid("timeout", "negative"),
        };
        assert!(e.is_invalid_input());
        assert_eq!(e.api_error().unwrap().field.as_deref(), Some("timeout"));
    }

    #[test]
    fn unreachable_says_what_to_do() {
        let e = ClientError::Unreachable {
            url: "http://127.0.0.1:7070".into(),
            detail: "Connection refused (os error 111)".into(),
        };
        let s = e.to_string();
        assert!(s.contains("http://127.0.0.1:7070"));
        assert!(s.contains("drover up"));
        assert!(!s.contains('\n'));
    }
}
