//! The warm pool: sandboxes made in advance, each holding a started stub shell, so that a new
//! user's terminal waits for neither a container start nor an exec.
//!
//! Invariants:
//! - A warm sandbox belongs to nobody; a claim binds it to one user in the store (an UPDATE
//!   that only one claim can win) and it never comes back: when its user is done it is deleted.
//! - The filler keeps `warm + being made` at the target, which moves within [min, max] with
//!   the claims of the last `pool.window` (one more per claim; back to `min` when idle).
//! - Warm sandboxes and their stubs are checked every `pool.health_interval`; dead or removed
//!   ones are replaced.
//! - [`WarmPool::stop`] starts no more and waits for the creations under way, so no sandbox
//!   appears after kterm has stopped (those made are recorded, and the next run adopts them).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::PoolConfig;
use crate::metrics::Metrics;
use crate::sandbox::{Sandbox, SandboxBackend, TtyProcess};
use crate::store::{SandboxRecord, SandboxStatus, Store};

/// A claimed (or warm) sandbox and its stub, if it still has a live one.
pub struct WarmSandbox {
    pub sandbox: Sandbox,
    pub stub: Option<TtyProcess>,
}

pub struct WarmPool {
    config: PoolConfig,
    backend: Arc<dyn SandboxBackend>,
    store: Store,
    metrics: Arc<Metrics>,
    namespace: String,
    warm: Mutex<Vec<WarmSandbox>>,
    creating: AtomicU32,
    claims: Mutex<VecDeque<Instant>>,
    wake: Notify,
    stopping: AtomicBool,
    /// Notified when the last creation under way ends.
    drained: Notify,
}

/// `GET /api/v1/pool`.
#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub enabled: bool,
    pub backend: &'static str,
    pub min: u32,
    pub max: u32,
    pub target: u32,
    pub warm: u32,
    pub creating: u32,
    pub claims_in_window: u32,
    pub hits: u64,
    pub misses: u64,
    pub sandboxes: Vec<String>,
}

impl WarmPool {
    pub fn new(
        config: PoolConfig,
        backend: Arc<dyn SandboxBackend>,
        store: Store,
        metrics: Arc<Metrics>,
        namespace: &str,
    ) -> Arc<WarmPool> {
        Arc::new(WarmPool {
            config,
            backend,
            store,
            metrics,
            namespace: namespace.to_string(),
            warm: Mutex::default(),
            creating: AtomicU32::new(0),
            claims: Mutex::default(),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            drained: Notify::new(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.max > 0 && self.backend.supports_pool()
    }

    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a warm sandbox for `user`, if there is one; the filler is woken either way.
    pub async fn claim(&self, user: &str, namespace: &str) -> Option<WarmSandbox> {
        if !self.enabled() || namespace != self.namespace {
            return None;
        }
        let started = Instant::now();
        self.note_claim();
        let candidates: Vec<String> =
            Self::lock(&self.warm).iter().map(|w| w.sandbox.id.clone()).collect();
        let claimed = match self
            .store
            .claim_warm_sandbox(self.backend.kind(), namespace, user, candidates)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a warm sandbox");
                None
            }
        };
        let taken = claimed.and_then(|id| {
            let mut warm = Self::lock(&self.warm);
            let index = warm.iter().position(|w| w.sandbox.id == id)?;
            Some(warm.remove(index))
        });
        self.wake.notify_one();
        match taken {
            Some(mut warm) => {
                self.metrics.pool_hits.inc();
                self.metrics.pool_claim_seconds.observe(started.elapsed().as_secs_f64());
                self.metrics.pool_warm.set(Self::lock(&self.warm).len() as i64);
                warm.sandbox.user = user.to_string();
                tracing::info!(sandbox = %warm.sandbox.id, user = %crate::audit::escape_for_log(user), "claimed a warm sandbox");
                Some(warm)
            }
            None => {
                self.metrics.pool_misses.inc();
                None
            }
        }
    }

    fn note_claim(&self) {
        let mut claims = Self::lock(&self.claims);
        claims.push_back(Instant::now());
        Self::expire(&mut claims, self.config.window.0);
    }

    fn expire(claims: &mut VecDeque<Instant>, window: Duration) {
        while claims.front().is_some_and(|t| t.elapsed() > window) {
            claims.pop_front();
        }
    }

    /// The number of warm sandboxes to keep now.
    pub fn target(&self) -> u32 {
        if !self.enabled() {
            return 0;
        }
        let mut claims = Self::lock(&self.claims);
        Self::expire(&mut claims, self.config.window.0);
        (self.config.min + claims.len() as u32).clamp(self.config.min, self.config.max)
    }

    /// Takes warm sandboxes a previous run left (the store says they are warm): their old
    /// processes are ended and each gets a new stub.
    pub async fn adopt(&self, sandbox: Sandbox) {
        self.backend.end_stray_processes(&sandbox).await;
        match self.backend.start_stub(&sandbox).await {
            Ok(stub) => {
                tracing::info!(sandbox = %sandbox.id, "adopted a warm sandbox");
                Self::lock(&self.warm).push(WarmSandbox { sandbox, stub: Some(stub) });
                self.metrics.pool_warm.set(Self::lock(&self.warm).len() as i64);
            }
            Err(e) => {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "cannot adopt a warm sandbox; removing it");
                self.remove(&sandbox.id).await;
            }
        }
    }

    /// Keeps the pool at its target until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        if !self.enabled() {
            return;
        }
        let mut last_check = Instant::now();
        while !self.stopping.load(Ordering::Acquire) {
            self.fill_or_shrink();
            if last_check.elapsed() >= self.config.health_interval.0 {
                self.check_health().await;
                last_check = Instant::now();
            }
            let tick = self.config.health_interval.0.min(Duration::from_secs(1));
            let _ = tokio::time::timeout(tick, self.wake.notified()).await;
        }
    }

    /// At shutdown: makes no more sandboxes and waits (up to `timeout`) for those under way.
    pub async fn stop(&self, timeout: Duration) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let drained = self.drained.notified();
            if self.creating.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                tracing::warn!("stopping with warm sandboxes still being made");
                return;
            }
        }
    }

    fn fill_or_shrink(self: &Arc<Self>) {
        let target = self.target();
        self.metrics.pool_target.set(target as i64);
        let warm = Self::lock(&self.warm).len() as u32;
        let creating = self.creating.load(Ordering::Acquire);
        // Two at a time: a burst of creations must not starve the sessions being served.
        let missing = target.saturating_sub(warm + creating).min(2u32.saturating_sub(creating));
        for _ in 0..missing {
            self.creating.fetch_add(1, Ordering::AcqRel);
            let pool = self.clone();
            tokio::spawn(async move {
                pool.make_one().await;
                if pool.creating.fetch_sub(1, Ordering::AcqRel) == 1 {
                    pool.drained.notify_waiters();
                }
                pool.wake.notify_one();
            });
        }
        if warm > target && creating == 0 {
            let surplus = {
                let mut warm = Self::lock(&self.warm);
                let keep = target as usize;
                let len = warm.len();
                if len > keep {
                    warm.drain(..len - keep).collect::<Vec<_>>()
                } else {
                    Vec::new()
                }
            };
            self.metrics.pool_warm.set(Self::lock(&self.warm).len() as i64);
            for extra in surplus {
                let pool = self.clone();
                tokio::spawn(async move {
                    tracing::info!(sandbox = %extra.sandbox.id, "pool shrinks: removing a warm sandbox");
                    pool.remove(&extra.sandbox.id).await;
                });
            }
        }
    }

    async fn make_one(&self) {
        let started = Instant::now();
        let sandbox = match self.backend.create_warm_sandbox(&self.namespace).await {
            Ok(sandbox) => sandbox,
            Err(e) => {
                tracing::warn!(error = %e, "could not make a warm sandbox");
                tokio::time::sleep(Duration::from_secs(2)).await;
                return;
            }
        };
        let record = SandboxRecord {
            id: sandbox.id.clone(),
            backend: self.backend.kind().into(),
            user: None,
            namespace: self.namespace.clone(),
            status: SandboxStatus::Warm,
            created_at: Utc::now(),
            expires_at: None,
        };
        let stub = match self.store.insert_sandbox(&record).await {
            Ok(()) => self.backend.start_stub(&sandbox).await,
            Err(e) => Err(e),
        };
        match stub {
            Ok(stub) => {
                self.metrics.pool_create_seconds.observe(started.elapsed().as_secs_f64());
                Self::lock(&self.warm).push(WarmSandbox { sandbox, stub: Some(stub) });
                self.metrics.pool_warm.set(Self::lock(&self.warm).len() as i64);
            }
            Err(e) => {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "could not start a warm sandbox's shell");
                self.remove(&sandbox.id).await;
            }
        }
    }

    /// Replaces warm sandboxes that vanished or whose stub died.
    async fn check_health(&self) {
        let Ok(existing) = self.backend.list_sandboxes().await else { return };
        let alive: std::collections::HashSet<String> =
            existing.into_iter().filter(|s| s.running).map(|s| s.id).collect();
        let dead: Vec<WarmSandbox> = {
            let mut warm = Self::lock(&self.warm);
            let (dead, live): (Vec<_>, Vec<_>) = warm.drain(..).partition(|w| {
                !alive.contains(&w.sandbox.id)
                    || w.stub.as_ref().is_none_or(|s| s.control.has_ended())
            });
            *warm = live;
            dead
        };
        self.metrics.pool_warm.set(Self::lock(&self.warm).len() as i64);
        for warm in dead {
            tracing::warn!(sandbox = %warm.sandbox.id, "a warm sandbox died or was removed; replacing it");
            self.remove(&warm.sandbox.id).await;
        }
        self.wake.notify_one();
    }

    async fn remove(&self, id: &str) {
        if let Err(e) = self.backend.destroy_sandbox(id).await {
            tracing::warn!(sandbox = id, error = %e, "could not remove a warm sandbox");
        }
        let _ = self.store.end_sandbox(id).await;
    }

    pub fn status(&self) -> PoolStatus {
        let target = self.target();
        let warm = Self::lock(&self.warm);
        PoolStatus {
            enabled: self.enabled(),
            backend: self.backend.kind(),
            min: self.config.min,
            max: self.config.max,
            target,
            warm: warm.len() as u32,
            creating: self.creating.load(Ordering::Acquire),
            claims_in_window: Self::lock(&self.claims).len() as u32,
            hits: self.metrics.pool_hits.get(),
            misses: self.metrics.pool_misses.get(),
            sandboxes: warm.iter().map(|w| w.sandbox.id.clone()).collect(),
        }
    }
}
