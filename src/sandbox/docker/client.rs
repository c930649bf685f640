//! The Docker client: connected lazily (the daemon may be down when kterm starts, and come and
//! go), with the API version agreed once the daemon answers; every call bounded by a kterm-side
//! deadline (bollard's own is 120 s, far too long for a hung daemon); and the one mapping of
//! daemon errors to kterm's.

use std::future::Future;
use std::time::Duration;

use bollard::Docker;

use crate::error::{Error, Result};

/// How long a call to the daemon may take (a pull is bounded by the session's create timeout
/// instead).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long agreeing on the API version may take.
const NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct DockerClient {
    /// `docker.host`; empty: `DOCKER_HOST` or the local socket.
    host: String,
    /// The client before API version negotiation, once one could be made: bollard refuses a
    /// Unix socket that does not exist (yet: dockerd removes it while stopped), so until it
    /// appears every [`DockerClient::get`] tries again.
    unnegotiated: std::sync::RwLock<Option<Docker>>,
    negotiated: std::sync::RwLock<Option<Docker>>,
}

impl DockerClient {
    /// A client for the daemon at `host` (empty: `DOCKER_HOST` or the local socket). A host
    /// bollard cannot use at all is an error now; a socket that is missing is not.
    pub fn new(host: &str) -> Result<DockerClient> {
        let unnegotiated = match connect(host) {
            Ok(docker) => Some(docker),
            Err(bollard::errors::Error::SocketNotFoundError(path)) => {
                tracing::warn!(socket = %path, "the Docker socket is not there (yet); kterm connects when it appears");
                None
            }
            Err(e) => {
                return Err(Error::BackendUnavailable(format!("Docker client (docker.host): {e}")))
            }
        };
        Ok(DockerClient {
            host: host.to_string(),
            unnegotiated: std::sync::RwLock::new(unnegotiated),
            negotiated: std::sync::RwLock::new(None),
        })
    }

    /// The client, with the API version agreed with the daemon.
    pub async fn get(&self) -> Result<Docker> {
        if let Some(docker) = self.negotiated.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(docker.clone());
        }
        let unnegotiated = self.unnegotiated()?;
        let docker = tokio::time::timeout(NEGOTIATE_TIMEOUT, unnegotiated.negotiate_version())
            .await
            .map_err(|_| unavailable("the Docker daemon did not answer within 5s"))?
            .map_err(|e| unavailable(&format!("the Docker daemon does not answer: {e}")))?;
        *self.negotiated.write().unwrap_or_else(|p| p.into_inner()) = Some(docker.clone());
        Ok(docker)
    }

    /// The client before negotiation, made now if the socket has appeared since.
    fn unnegotiated(&self) -> Result<Docker> {
        if let Some(docker) = self.unnegotiated.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(docker.clone());
        }
        let docker = connect(&self.host).map_err(|e| match e {
            bollard::errors::Error::SocketNotFoundError(path) => unavailable(&format!(
                "the Docker daemon is not running: its socket {path} does not exist"
            )),
            e => unavailable(&format!("Docker client (docker.host): {e}")),
        })?;
        *self.unnegotiated.write().unwrap_or_else(|p| p.into_inner()) = Some(docker.clone());
        Ok(docker)
    }
}

fn connect(host: &str) -> Result<Docker, bollard::errors::Error> {
    if host.is_empty() {
        Docker::connect_with_local_defaults()
    } else {
        Docker::connect_with_host(host)
    }
}

/// Awaits one daemon call for `what` within `limit`; a daemon that does not answer in time is
/// [`Error::BackendUnavailable`].
pub async fn within<T>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(CallError::Daemon),
        Err(_) => Err(CallError::TimedOut(format!(
            "{what}: the Docker daemon did not answer within {}s",
            limit.as_secs()
        ))),
    }
}

/// A failed daemon call: the daemon's answer, or no answer in time.
#[derive(Debug)]
pub enum CallError {
    Daemon(bollard::errors::Error),
    TimedOut(String),
}

impl CallError {
    /// The HTTP status of the daemon's error answer, if it was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Daemon(bollard::errors::Error::DockerResponseServerError {
                status_code,
                ..
            }) => Some(*status_code),
            _ => None,
        }
    }

    /// As kterm's error while doing `what`: the daemon's own message for its answers, 503 for
    /// a daemon that is not there or does not answer.
    pub fn into_error(self, what: &str) -> Error {
        match self {
            CallError::Daemon(bollard::errors::Error::DockerResponseServerError {
                message,
                ..
            }) => Error::BackendUnavailable(format!("{what}: {message}")),
            CallError::Daemon(e) => Error::BackendUnavailable(format!(
                "{what}: the Docker daemon is not reachable ({e})"
            )),
            CallError::TimedOut(message) => Error::BackendUnavailable(message),
        }
    }

    /// Like [`CallError::into_error`], but a missing or stopped container is
    /// [`Error::SandboxGone`] (the registry then replaces it).
    pub fn into_sandbox_error(self, id: &str, what: &str) -> Error {
        match self.status() {
            Some(404) | Some(409) => {
                Error::SandboxGone(format!("sandbox {id}: {}", self.into_error(what)))
            }
            _ => self.into_error(what),
        }
    }
}

fn unavailable(message: &str) -> Error {
    Error::BackendUnavailable(message.to_string())
}
