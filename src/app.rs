//! The application: builds the state from a validated config, binds the port, runs the
//! background tasks, and shuts down in order (WebSockets closed with 1001, server stopped,
//! sessions ended and recorded).
//!
//! [`Server`] is what `main` runs and what the integration tests start on port 0.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio::sync::watch;

use crate::audit::Audit;
use crate::auth::Authenticator;
use crate::config::{BackendKind, Config, ConfigError, DEFAULT_SANDBOX_IMAGE};
use crate::error::{Error, Result};
use crate::http::hosts::AllowedHosts;
use crate::http::tls::TlsCertificate;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::pool::{PoolKey, PoolSpec, WarmPool};
use crate::sandbox::container::ContainerBackend;
use crate::sandbox::docker::DockerPlatform;
use crate::sandbox::kubernetes::{KubernetesPlatform, PlatformOptions};
use crate::sandbox::local::LocalBackend;
use crate::sandbox::SandboxBackend;
use crate::session::{Profiles, SessionRegistry, DEFAULT_NAMESPACE};
use crate::store::Store;

/// Everything a request handler may use.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub registry: Arc<SessionRegistry>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Authenticator>,
    pub audit: Audit,
    /// Session creations per user (`sessions.create_per_minute`).
    pub session_rate: RateLimiter,
    /// The `Host` names and addresses this server answers to.
    pub hosts: AllowedHosts,
    /// What uploads and listings in progress hold in memory, over all requests (`files.memory`).
    pub files_memory: crate::files::MemoryBudget,
    /// Agent API calls per user (`exec.per_minute`).
    pub agent_rate: RateLimiter,
    /// Execs and waits in progress per sandbox (`exec.max_concurrent`).
    pub exec_limits: crate::exec::ExecLimits,
    /// Becomes `true` when shutdown begins.
    pub shutdown: watch::Receiver<bool>,
}

pub use crate::preflight::preflight;

/// A running kterm.
pub struct Server {
    addr: SocketAddr,
    state: web::Data<AppState>,
    handle: actix_web::dev::ServerHandle,
    shutdown_tx: watch::Sender<bool>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    background: tokio::task::JoinHandle<()>,
    filler: tokio::task::JoinHandle<()>,
    housekeeping: tokio::task::JoinHandle<()>,
    logins: tokio::task::JoinHandle<()>,
    tls: Option<Arc<TlsCertificate>>,
}

impl Server {
    /// Opens the store (migrating it), chooses the backend, binds the listen address and starts
    /// serving. Must be called inside a multi-threaded tokio runtime.
    pub async fn start(config: Config) -> Result<Server> {
        let store = open_store(&config).await?;
        let backend = choose_backend(&config, store.instance_id()).await?;
        Self::serve(config, store, backend).await
    }

    /// Like [`Server::start`], with a backend the caller made (tests use the fake platform).
    pub async fn start_with_backend(
        config: Config,
        backend: Arc<dyn SandboxBackend>,
    ) -> Result<Server> {
        let store = open_store(&config).await?;
        Self::serve(config, store, backend).await
    }

    async fn serve(
        config: Config,
        store: Store,
        backend: Arc<dyn SandboxBackend>,
    ) -> Result<Server> {
        let config = Arc::new(config);
        let audit = Audit::new(store.clone());
        let auth = Authenticator::new(&config.auth, store.clone(), audit.clone())?;
        let tls = match config.tls.enabled() {
            true => Some(Arc::new(TlsCertificate::load(&config.tls)?)),
            false => None,
        };
        let metrics = Arc::new(Metrics::new());
        let profiles = Profiles::from_config(&config);
        let default_namespace = match config.backend.kind {
            BackendKind::Kubernetes => config.kubernetes.namespace.as_str(),
            _ => DEFAULT_NAMESPACE,
        };
        let pool = WarmPool::new(
            config.pool.clone(),
            config.sessions.create_timeout.0,
            backend.clone(),
            store.clone(),
            metrics.clone(),
            pool_specs(&config, &profiles, default_namespace),
        );
        let registry = SessionRegistry::new(
            config.sessions.clone(),
            config.sandboxes.clone(),
            config.server.on_shutdown,
            backend.clone(),
            store.clone(),
            metrics.clone(),
            pool.clone(),
            profiles,
            default_namespace,
            config.recording.enabled.then(|| crate::session::Recordings {
                dir: config.recording_dir(),
                max_size: config.recording.max_size.0,
                record_input: config.audit.record_input,
                retention: config.recording.retention.0,
            }),
        );
        registry.recover().await?;

        // A socket systemd passed (socket activation) is served as it is; else bind our own.
        let listener = match crate::systemd::take_inherited_listener() {
            Some(listener) => listener,
            None => {
                let addr = config.listen_addr()?;
                TcpListener::bind(addr)
                    .map_err(|e| Error::io(format!("binding {addr} (server.listen)"), e))?
            }
        };
        let addr = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;

        let (shutdown_tx, shutdown) = watch::channel(false);
        let state = web::Data::new(AppState {
            config: config.clone(),
            store: store.clone(),
            registry: registry.clone(),
            metrics,
            auth: Arc::new(auth),
            audit,
            session_rate: RateLimiter::new(
                config.sessions.create_per_minute,
                Duration::from_secs(60),
            ),
            hosts: AllowedHosts::for_config(&config),
            files_memory: crate::files::MemoryBudget::new(config.files.memory.0),
            agent_rate: RateLimiter::new(config.exec.per_minute, Duration::from_secs(60)),
            exec_limits: crate::exec::ExecLimits::new(&config.exec),
            shutdown,
        });
        let server = crate::http::server(state.clone(), listener, tls.clone())
            .map_err(|e| Error::io("starting the HTTP server", e))?;
        let handle = server.handle();
        let served = tokio::spawn(server);
        let background = tokio::spawn(background_tasks(registry, state.metrics.clone()));
        let filler = tokio::spawn(pool.run());
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let logins = tokio::spawn(watch_logins(state.clone()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(
            %addr,
            backend = backend.kind(),
            auth = crate::auth::mode_name(config.auth.mode),
            instance = store.instance_id(),
            state = %config.state.path.display(),
            "kterm is serving on {scheme}://{addr}"
        );
        Ok(Server {
            addr,
            state,
            handle,
            shutdown_tx,
            served,
            background,
            filler,
            housekeeping,
            logins,
            tls,
        })
    }

    /// Reads the TLS certificate and key again (SIGHUP); on error the old ones stay.
    pub fn reload_tls(&self) -> std::result::Result<(), ConfigError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Resolves when `server.exit_when_idle` says to stop (never when it is `0s`).
    pub async fn idle_exit(&self) {
        let limit = self.state.config.server.exit_when_idle.0;
        let metrics = self.state.metrics.clone();
        crate::idle::wait_until_idle(self.state.registry.clone(), metrics, limit).await
    }

    /// Graceful stop: WebSockets get 1001, no new connections, in-flight requests finish,
    /// sessions are ended or recorded, and the store is left consistent.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown_tx.send_replace(true);
        // Let the bridges queue their close frames (each detaches when it has) before the
        // server stops; the graceful stop then flushes them.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.state.metrics.clients_attached.get() > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.handle.stop(true).await;
        let _ = self.served.await;
        self.background.abort();
        // Warm sandboxes stay for the next run to adopt, those being made included.
        self.state.registry.pool().stop(self.state.config.server.shutdown_timeout.0).await;
        self.filler.abort();
        self.housekeeping.abort();
        self.logins.abort();
        self.state.registry.shutdown().await;
        tracing::info!("stopped");
    }
}

/// Checks what the config names outside itself (warning about what is risky but allowed),
/// then opens the store (migrating it).
async fn open_store(config: &Config) -> Result<Store> {
    for warning in crate::preflight::preflight(config)? {
        tracing::warn!("{warning}");
    }
    let path = config.state.path.clone();
    tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|e| Error::Internal(format!("opening the store: {e}")))?
}

/// The keys the warm pool keeps sandboxes for: every profile in the default namespace and in
/// each of `pool.namespaces`, sized by the namespace's override, else the profile's own size,
/// else `pool.min` / `pool.max`.
fn pool_specs(config: &Config, profiles: &Profiles, default_namespace: &str) -> Vec<PoolSpec> {
    let defaults = crate::config::PoolSize { min: config.pool.min, max: config.pool.max };
    let mut namespaces: Vec<&str> = vec![default_namespace];
    namespaces.extend(config.pool.namespaces.keys().map(String::as_str));
    namespaces.dedup();
    let mut specs = Vec::new();
    for namespace in namespaces {
        for profile in profiles.all() {
            let size =
                config.pool.namespaces.get(namespace).copied().or(profile.pool).unwrap_or(defaults);
            specs.push(PoolSpec {
                key: PoolKey::new(namespace, profile.name()),
                profile: profile.sandbox.clone(),
                size,
            });
        }
    }
    specs
}

/// `docker` and `local` as configured; `auto`: Docker when its daemon answers and the image is
/// present or explicitly configured, else local (loopback only, unless allowed).
async fn choose_backend(config: &Config, instance: &str) -> Result<Arc<dyn SandboxBackend>> {
    let persistence = config.sessions.persistence;
    let container = |platform: DockerPlatform| -> Arc<dyn SandboxBackend> {
        Arc::new(ContainerBackend::new(Arc::new(platform)).with_persistence(persistence))
    };
    match config.backend.kind {
        BackendKind::Docker => Ok(container(DockerPlatform::new(&config.docker, instance)?)),
        BackendKind::Local => local_backend(config).await,
        BackendKind::Auto => {
            use crate::sandbox::container::ContainerPlatform;
            let docker = match DockerPlatform::new(&config.docker, instance) {
                Ok(docker) => docker,
                Err(e) => {
                    tracing::info!(reason = %e, "no Docker client; using the local backend");
                    return local_backend(config).await;
                }
            };
            let explicit_image = config.docker.image != DEFAULT_SANDBOX_IMAGE;
            match docker.health().await {
                Ok(()) if explicit_image || docker.has_image(&config.docker.image).await => {
                    Ok(container(docker))
                }
                Ok(()) => {
                    tracing::warn!(
                        image = DEFAULT_SANDBOX_IMAGE,
                        "Docker answers but the sandbox image is missing (build it with `kterm \
                         image build`, or set docker.image); using the local backend"
                    );
                    local_backend(config).await
                }
                Err(e) => {
                    tracing::info!(reason = %e, "no Docker daemon; using the local backend");
                    local_backend(config).await
                }
            }
        }
        BackendKind::Kubernetes => {
            let options = PlatformOptions {
                instance: instance.to_string(),
                extra_namespaces: config.pool.namespaces.keys().cloned().collect(),
                max_lifetime: config.sessions.max_lifetime.0,
                create_timeout: config.sessions.create_timeout.0,
            };
            let platform = KubernetesPlatform::new(&config.kubernetes, options).await?;
            Ok(Arc::new(ContainerBackend::new(Arc::new(platform)).with_persistence(persistence)))
        }
    }
}

async fn local_backend(config: &Config) -> Result<Arc<dyn SandboxBackend>> {
    let listen = config.listen_addr()?;
    if !listen.ip().is_loopback() && !config.local.allow_remote {
        // A configuration that cannot work here: exit 2, like any refused configuration.
        return Err(Error::Config(ConfigError(format!(
            "config key `backend.kind`: the local backend (chosen by \"auto\" without a usable \
             Docker) isolates nothing: it serves only loopback addresses, not {listen}, unless \
             local.allow_remote = true; or set backend.kind = \"docker\""
        ))));
    }
    let root = config.local_root();
    tracing::info!(workspaces = %root.display(), "the local backend keeps each user's working directory here");
    let backend = tokio::task::spawn_blocking(move || LocalBackend::new(&root))
        .await
        .map_err(|e| Error::Internal(format!("starting the local backend: {e}")))??;
    Ok(Arc::new(backend))
}

/// Ends what logins ended elsewhere had opened (see [`crate::auth::logins`]).
async fn watch_logins(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(crate::auth::logins::CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.auth.check_live_logins().await;
    }
}

/// Deletes expired login sessions, audit rows past `audit.retention` and ended sessions past
/// `sessions.retention`.
async fn housekeeping(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.auth.housekeeping().await;
        state.audit.prune(state.config.audit.retention.0).await;
        state.registry.prune_ended(state.config.sessions.retention.0).await;
        if let Some(recordings) = state.registry.recordings() {
            let removed = recordings.prune().await;
            if removed > 0 {
                tracing::info!(removed, "deleted recordings past recording.retention");
            }
        }
    }
}

/// Batches `last_active` writes and ends idle or expired sessions; reconciles the store with
/// the backend every [`crate::session::RECONCILE_PERIOD`].
///
/// Warnings do not wait for this tick (each attachment has its own timer), but the end should
/// follow the warned time closely: the period is a quarter of the shortest of the timeouts and
/// `warn_before` (and `sandboxes.idle_timeout`), between 100ms and 5s.
async fn background_tasks(registry: Arc<SessionRegistry>, metrics: Arc<Metrics>) {
    let config = registry.config();
    let mut shortest = config.idle_timeout.0.min(config.max_lifetime.0);
    if !config.warn_before.0.is_zero() {
        shortest = shortest.min(config.warn_before.0);
    }
    let linger = registry.sandbox_idle_timeout();
    if !linger.is_zero() {
        shortest = shortest.min(linger);
    }
    let period = (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let reaping = async {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            registry.flush_activity().await;
            registry.reap().await;
        }
    };
    // Apart from the reaping: a listing that waits on a hung daemon must not delay the ends.
    let reconciling = async {
        let mut tick = tokio::time::interval(crate::session::RECONCILE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            registry.reconcile().await;
        }
    };
    tokio::join!(reaping, reconciling, give_back_memory(metrics));
}

/// How often freed memory is handed back to the system after sessions or clients went.
const GIVE_BACK_PERIOD: Duration = Duration::from_secs(5);

/// Hands the heap that ended sessions and connections freed back to the system: glibc's
/// malloc keeps it for reuse otherwise, so a server that once held 1000 sessions would stay at
/// that size. Checked every [`GIVE_BACK_PERIOD`], and done (off the runtime) only when fewer
/// sessions or clients are there than at the last check: nothing is trimmed while load rises.
async fn give_back_memory(metrics: Arc<Metrics>) {
    let count = || metrics.sessions_active.get() + metrics.clients_attached.get();
    let mut tick = tokio::time::interval(GIVE_BACK_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = count();
    loop {
        tick.tick().await;
        let now = count();
        if now < last {
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only releases free heap pages; it has no other effect.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
        last = now;
    }
}
