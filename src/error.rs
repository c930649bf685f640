//! The one error type of kterm and its single mapping to HTTP.
//!
//! Every fallible path below `main.rs` returns [`Error`]. The HTTP layer turns it into a status and
//! the SPEC's body `{"error": {"code", "message"}}` in exactly one place, [`ResponseError`] below,
//! so a handler never builds an error response by hand.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something that cannot be done (400).
    #[error("{0}")]
    BadRequest(String),
    /// No or bad credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, or not the caller's (404). Another user's session is always this, never 403.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A write of a content type refused without an Origin (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A body or frame over its limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A per-user or global limit was reached (429).
    #[error("{0}")]
    LimitReached(String),
    /// A rate limit was reached (429 with `Retry-After`).
    #[error("{message}")]
    RateLimited { message: String, retry_after: std::time::Duration },
    /// The request line and headers are over their limit (431).
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The server is at a bound on expensive work (password checks, upload memory): 503 with
    /// `Retry-After`.
    #[error("{message}")]
    Busy { message: String, retry_after: std::time::Duration },
    /// The configuration cannot work (`main` exits with code 2); not an HTTP answer.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The sandbox backend cannot serve now (503).
    /// A wait that ended without what it waited for (`POST …/wait`): 408.
    #[error("{0}")]
    Timeout(String),
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    /// The sandbox no longer exists or no longer runs (503; the registry replaces it).
    #[error("sandbox gone: {0}")]
    SandboxGone(String),
    /// A call to the Kubernetes API server failed or was refused (503, with the server's
    /// message).
    #[error("{context}: {}", kube_message(source))]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[from] rusqlite::Error),
    /// A system call or I/O failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Anything else that is our fault (500).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Why the state store cannot write now (disk full, read-only, I/O error), when that is
    /// what this error is: then the request is 503 with that reason, not 500.
    pub fn store_unavailable(&self) -> Option<&'static str> {
        use rusqlite::ErrorCode;
        let Error::Store(rusqlite::Error::SqliteFailure(failure, _)) = self else { return None };
        match failure.code {
            ErrorCode::DiskFull => Some("the state store's disk is full"),
            ErrorCode::ReadOnly => Some("the state store is read-only"),
            ErrorCode::SystemIoFailure => Some("the state store's disk fails (I/O error)"),
            ErrorCode::CannotOpen => Some("the state store cannot be opened"),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some("the state store is busy"),
            _ => None,
        }
    }

    pub fn session_not_found(id: &str) -> Self {
        Error::NotFound(format!("session {id} not found"))
    }

    /// The stable machine-readable code of the SPEC's error body.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::TooLarge(_) => "too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::LimitReached(_) | Error::RateLimited { .. } => "limit_reached",
            Error::HeadersTooLarge(_) => "too_large",
            Error::BackendUnavailable(_) | Error::SandboxGone(_) | Error::Kube { .. } => {
                "backend_unavailable"
            }
            Error::Busy { .. } => "busy",
            Error::Timeout(_) => "timeout",
            Error::Store(_) if self.store_unavailable().is_some() => "store_unavailable",
            Error::Store(_) | Error::Io { .. } | Error::Internal(_) | Error::Config(_) => {
                "internal"
            }
        }
    }
}

/// What the API server said (its `Status` message), or what went wrong on the way to it.
fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} ({})", status.message, status.reason)
        }
        other => format!("the Kubernetes API server is not reachable ({other})"),
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::LimitReached(_) | Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::BackendUnavailable(_)
            | Error::SandboxGone(_)
            | Error::Kube { .. }
            | Error::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Store(_) if self.store_unavailable().is_some() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Store(_) | Error::Io { .. } | Error::Internal(_) | Error::Config(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        // Internal details stay in the log; the client gets a sentence it can act on.
        let message = match self {
            Error::Store(_) if self.store_unavailable().is_some() => {
                format!(
                    "{}; kterm keeps serving what needs no write",
                    self.store_unavailable().unwrap_or_default()
                )
            }
            Error::Store(_) | Error::Io { .. } | Error::Internal(_) | Error::Config(_) => {
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(status);
        if let Error::RateLimited { retry_after, .. } | Error::Busy { retry_after, .. } = self {
            // Whole seconds, rounded up: a client that waits this long gets through.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.max(1)));
        }
        response.json(json!({"error": {"code": self.code(), "message": message}}))
    }
}
