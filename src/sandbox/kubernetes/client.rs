//! Cluster access: the client made from `kubernetes.kubeconfig`, else `KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account; every API call bounded by a
//! kterm-side deadline; and the one mapping of API errors to kterm's.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, KubernetesConfig};
use crate::error::{Error, Result};

/// How long one API call may take (waiting for a pod to run is bounded by the session's
/// create timeout instead).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the health check may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the client's configuration came from, for the log.
#[derive(Debug)]
pub enum Source {
    Kubeconfig(PathBuf),
    InCluster,
}

/// A client for the configured cluster. It does not connect yet: an API server that is down
/// now makes `/readyz` and session creation fail until it answers, not kterm's start. A
/// kubeconfig that cannot be read or names an unknown context is a config error.
pub async fn connect(config: &KubernetesConfig) -> Result<(kube::Client, Source)> {
    let options = kube::config::KubeConfigOptions {
        context: (!config.context.is_empty()).then(|| config.context.clone()),
        ..Default::default()
    };
    let bad = |key: &str, e: &dyn std::fmt::Display| {
        Error::Config(ConfigError::key(key, format!("cannot use it: {e}")))
    };
    let (client_config, source) = match kubeconfig_path(config) {
        Some((path, key)) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(&path).map_err(|e| bad(key, &e))?;
            let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| bad(key, &e))?;
            (client_config, Source::Kubeconfig(path))
        }
        None => {
            let client_config = kube::Config::incluster().map_err(|e| {
                bad(
                    "kubernetes.kubeconfig",
                    &format!(
                        "no kubeconfig (KUBECONFIG, ~/.kube/config) and not in a cluster: {e}"
                    ),
                )
            })?;
            (client_config, Source::InCluster)
        }
    };
    let client = kube::Client::try_from(client_config)
        .map_err(|e| Error::Kube { context: "making the Kubernetes client".into(), source: e })?;
    Ok((client, source))
}

/// The kubeconfig to read and the key (or variable) that named it: the config's key, else
/// `KUBECONFIG` (its first file), else `~/.kube/config` when it exists.
fn kubeconfig_path(config: &KubernetesConfig) -> Option<(PathBuf, &'static str)> {
    if !config.kubeconfig.is_empty() {
        return Some((PathBuf::from(&config.kubeconfig), "kubernetes.kubeconfig"));
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Some((first, "KUBECONFIG"));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let default = home.join(".kube").join("config");
    default.is_file().then_some((default, "kubernetes.kubeconfig"))
}

/// Awaits one API call for `what` within `limit`.
pub async fn within<T>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|source| CallError::Api { what: what.into(), source }),
        Err(_) => Err(CallError::TimedOut(format!(
            "{what}: the Kubernetes API server did not answer within {}s",
            limit.as_secs()
        ))),
    }
}

/// A failed API call: the server's answer (or the transport's error), or no answer in time.
#[derive(Debug)]
pub enum CallError {
    Api { what: String, source: kube::Error },
    TimedOut(String),
}

impl CallError {
    /// The HTTP status of the server's answer, if it was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Api { source, .. } => status_of(source),
            CallError::TimedOut(_) => None,
        }
    }

    pub fn into_error(self) -> Error {
        match self {
            CallError::Api { what, source } => Error::Kube { context: what, source },
            CallError::TimedOut(message) => Error::BackendUnavailable(message),
        }
    }

    /// Like [`CallError::into_error`], but a missing pod (or one that does not run) is
    /// [`Error::SandboxGone`] (the registry then replaces it).
    pub fn into_sandbox_error(self, id: &str) -> Error {
        match self.status() {
            Some(404) | Some(400) | Some(409) => {
                Error::SandboxGone(format!("sandbox {id}: {}", self.into_error()))
            }
            _ => self.into_error(),
        }
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        e.into_error()
    }
}

/// The HTTP status of an API error, including a refused WebSocket upgrade.
pub fn status_of(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(
            code,
        )) => Some(code.as_u16()),
        _ => None,
    }
}
