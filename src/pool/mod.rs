//! The warm pool: sandboxes made in advance, each holding a started, watched stub shell, so that
//! a new user's terminal waits for neither a sandbox start nor an exec. There is one pool per
//! (namespace, profile) key, each with its own bounds.
//!
//! Invariants:
//! - A warm sandbox belongs to nobody; a claim binds it to one user in the store (an UPDATE
//!   that only one claim can win) and it never comes back: when its user is done it is deleted.
//! - A claim never hands out a sandbox whose stub is known dead: it is discarded (removed) and
//!   the next warm one is tried, or the claim misses and the caller creates cold.
//! - Each key's filler keeps `warm + being made` at its target, which moves within [min, max]
//!   with the claims of the last `pool.window` (one more per claim; back to `min` when idle).
//! - Warm sandboxes are checked every `pool.health_interval`; dead stubs (seen as they die, by
//!   their watchers) and vanished sandboxes are replaced.
//! - [`WarmPool::stop`] starts no more and waits for the creations under way, so no sandbox
//!   appears after kterm has stopped (those made are recorded, and the next run adopts them).
//!
//! The filler and the health check are in `filler.rs`; the watched stubs in `stub.rs`.

mod filler;
mod stub;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

use crate::config::{PoolConfig, PoolSize};
use crate::metrics::{Metrics, PoolLabels};
use crate::sandbox::{Profile, Sandbox, SandboxBackend, TtyProcess};
use crate::store::Store;

pub use stub::WatchedStub;

/// Which pool: a namespace and a profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PoolKey {
    pub namespace: String,
    pub profile: String,
}

impl PoolKey {
    pub fn new(namespace: &str, profile: &str) -> PoolKey {
        PoolKey { namespace: namespace.into(), profile: profile.into() }
    }

    fn labels(&self) -> PoolLabels {
        PoolLabels { namespace: self.namespace.clone(), profile: self.profile.clone() }
    }
}

/// A key the pool keeps warm sandboxes for: its profile and bounds.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub key: PoolKey,
    pub profile: Arc<Profile>,
    pub size: PoolSize,
}

/// A warm sandbox and its watched stub.
struct WarmSandbox {
    sandbox: Sandbox,
    stub: WatchedStub,
}

/// A sandbox taken from the pool, with its live stub.
pub struct Claimed {
    pub sandbox: Sandbox,
    pub stub: TtyProcess,
}

/// One key's pool.
struct KeyPool {
    spec: PoolSpec,
    warm: Vec<WarmSandbox>,
    creating: u32,
    claims: VecDeque<Instant>,
    /// Since when the refill has been put off for claims (see `filler.rs`): at most
    /// `AFTER_A_CLAIM` in all, however often claims come.
    put_off_since: Option<Instant>,
}

pub struct WarmPool {
    config: PoolConfig,
    create_timeout: Duration,
    backend: Arc<dyn SandboxBackend>,
    store: Store,
    metrics: Arc<Metrics>,
    pools: Mutex<HashMap<PoolKey, KeyPool>>,
    /// Creations under way, over all keys.
    creating: AtomicU32,
    wake: Notify,
    stopping: AtomicBool,
    /// Notified when the last creation under way ends.
    drained: Notify,
}

/// `GET /api/v1/pool`: totals, then each (namespace, profile).
#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub enabled: bool,
    pub backend: &'static str,
    pub min: u32,
    pub max: u32,
    pub target: u32,
    pub warm: u32,
    pub creating: u32,
    pub hits: u64,
    pub misses: u64,
    pub sandboxes: Vec<String>,
    pub pools: Vec<KeyStatus>,
}

#[derive(Debug, Serialize)]
pub struct KeyStatus {
    pub namespace: String,
    pub profile: String,
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
    /// A pool for `specs` (keys whose `max` is 0 keep nothing warm).
    pub fn new(
        config: PoolConfig,
        create_timeout: Duration,
        backend: Arc<dyn SandboxBackend>,
        store: Store,
        metrics: Arc<Metrics>,
        specs: Vec<PoolSpec>,
    ) -> Arc<WarmPool> {
        let pools = specs
            .into_iter()
            .filter(|spec| spec.size.max > 0)
            .map(|spec| {
                let pool = KeyPool {
                    spec: spec.clone(),
                    warm: Vec::new(),
                    creating: 0,
                    claims: VecDeque::new(),
                    put_off_since: None,
                };
                (spec.key, pool)
            })
            .collect();
        Arc::new(WarmPool {
            config,
            create_timeout,
            backend,
            store,
            metrics,
            pools: Mutex::new(pools),
            creating: AtomicU32::new(0),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            drained: Notify::new(),
        })
    }

    /// Whether the backend can keep warm sandboxes and some key wants them.
    pub fn enabled(&self) -> bool {
        self.backend.warm_sandboxes().is_some() && !self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, KeyPool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a warm sandbox of `key` for `user`, if there is one with a live stub; the filler
    /// is woken either way. A sandbox whose stub died is discarded and the next one tried.
    pub async fn claim(&self, user: &str, key: &PoolKey) -> Option<Claimed> {
        self.backend.warm_sandboxes()?;
        if !self.note_claim(key) {
            return None;
        }
        let started = Instant::now();
        let labels = key.labels();
        let claimed = loop {
            let candidates: Vec<String> = match self.lock().get(key) {
                Some(pool) => pool.warm.iter().map(|w| w.sandbox.id.clone()).collect(),
                None => Vec::new(),
            };
            if candidates.is_empty() {
                break None;
            }
            let kind = self.backend.kind();
            let pair = (key.namespace.as_str(), key.profile.as_str());
            let won = match self.store.claim_warm_sandbox(kind, pair, user, candidates).await {
                Ok(won) => won,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim a warm sandbox");
                    None
                }
            };
            let Some(id) = won else { break None };
            let Some(taken) = self.take(key, &id) else { continue };
            match taken.stub.hand_over().await {
                Some(stub) => break Some(Claimed { sandbox: taken.sandbox, stub }),
                None => {
                    tracing::warn!(sandbox = %id, "a warm sandbox's shell had died; discarding it");
                    self.remove(&taken.sandbox.id).await;
                }
            }
        };
        self.wake.notify_one();
        self.publish(key);
        match claimed {
            Some(mut claimed) => {
                self.metrics.pool_hits.get_or_create(&labels).inc();
                self.metrics.pool_claim_seconds.observe(started.elapsed().as_secs_f64());
                claimed.sandbox.user = Some(user.to_string());
                let shown = crate::audit::escape_for_log(user);
                tracing::info!(sandbox = %claimed.sandbox.id, user = %shown, "claimed a warm sandbox");
                self.show_owner_later(&claimed.sandbox, user);
                Some(claimed)
            }
            None => {
                self.metrics.pool_misses.get_or_create(&labels).inc();
                None
            }
        }
    }

    /// Counts a claim against `key`'s window; `false` when the key is not pooled.
    fn note_claim(&self, key: &PoolKey) -> bool {
        let mut pools = self.lock();
        let Some(pool) = pools.get_mut(key) else { return false };
        pool.claims.push_back(Instant::now());
        expire(&mut pool.claims, self.config.window.0);
        true
    }

    /// Takes warm sandbox `id` of `key` out of the pool.
    fn take(&self, key: &PoolKey, id: &str) -> Option<WarmSandbox> {
        let mut pools = self.lock();
        let warm = &mut pools.get_mut(key)?.warm;
        let index = warm.iter().position(|w| w.sandbox.id == id)?;
        Some(warm.remove(index))
    }

    /// Renames or relabels a claimed sandbox in the background: operators see whose it is,
    /// and the claim does not wait for the engine.
    fn show_owner_later(&self, sandbox: &Sandbox, user: &str) {
        let backend = self.backend.clone();
        let (sandbox, user) = (sandbox.clone(), user.to_string());
        tokio::spawn(async move {
            let Some(warm) = backend.warm_sandboxes() else { return };
            if let Err(e) = warm.show_owner(&sandbox, &user).await {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "could not mark a claimed sandbox as its user's");
            }
        });
    }

    /// The number of warm sandboxes `key` keeps now.
    fn target_of(&self, pool: &mut KeyPool) -> u32 {
        expire(&mut pool.claims, self.config.window.0);
        let PoolSize { min, max } = pool.spec.size;
        (min + pool.claims.len() as u32).clamp(min, max)
    }

    /// Takes warm sandboxes a previous run left (the store says they are warm): their old
    /// processes are ended and each gets a new stub. One whose key is no longer pooled, or
    /// that cannot get a stub, is removed.
    pub async fn adopt(&self, sandbox: Sandbox) {
        let key = PoolKey::new(&sandbox.namespace, &sandbox.profile);
        let pooled = self.lock().contains_key(&key);
        let stub = match (pooled, self.backend.warm_sandboxes()) {
            (true, Some(warm)) => {
                if let Err(e) = self.backend.end_stray_processes(&sandbox).await {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "could not end a previous run's processes");
                }
                warm.start_stub(&sandbox).await
            }
            _ => Err(crate::error::Error::Conflict("not pooled any more".into())),
        };
        match stub {
            Ok(stub) => {
                tracing::info!(sandbox = %sandbox.id, "adopted a warm sandbox");
                let warm = WarmSandbox { sandbox, stub: WatchedStub::watch(stub) };
                if let Some(pool) = self.lock().get_mut(&key) {
                    pool.warm.push(warm);
                }
                self.publish(&key);
            }
            Err(e) => {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "cannot adopt a warm sandbox; removing it");
                self.remove(&sandbox.id).await;
            }
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

    /// Removes a sandbox the pool gave up on, and records that it ended.
    async fn remove(&self, id: &str) {
        let _ = self.store.mark_sandbox_ending(id).await;
        match self.backend.destroy_sandbox(id).await {
            Ok(()) => {
                let _ = self.store.end_sandbox(id).await;
            }
            // Left `ending`: the registry's reconcile tries again.
            Err(e) => tracing::warn!(sandbox = id, error = %e, "could not remove a warm sandbox"),
        }
    }

    /// The warm sandboxes the pool holds now.
    pub fn warm_ids(&self) -> std::collections::HashSet<String> {
        self.lock().values().flat_map(|p| p.warm.iter().map(|w| w.sandbox.id.clone())).collect()
    }

    /// Whether a warm sandbox is being made (or adopted) now.
    pub fn is_creating(&self) -> bool {
        self.creating.load(Ordering::Acquire) > 0
    }

    /// Updates `key`'s gauges.
    fn publish(&self, key: &PoolKey) {
        let mut pools = self.lock();
        if let Some(pool) = pools.get_mut(key) {
            let target = self.target_of(pool);
            let labels = key.labels();
            self.metrics.pool_warm.get_or_create(&labels).set(pool.warm.len() as i64);
            self.metrics.pool_target.get_or_create(&labels).set(i64::from(target));
        }
    }

    pub fn status(&self) -> PoolStatus {
        let enabled = self.enabled();
        let mut keys: Vec<KeyStatus> = {
            let mut pools = self.lock();
            pools
                .values_mut()
                .map(|pool| {
                    let labels = pool.spec.key.labels();
                    KeyStatus {
                        namespace: pool.spec.key.namespace.clone(),
                        profile: pool.spec.key.profile.clone(),
                        min: pool.spec.size.min,
                        max: pool.spec.size.max,
                        target: if enabled { self.target_of(pool) } else { 0 },
                        warm: pool.warm.len() as u32,
                        creating: pool.creating,
                        claims_in_window: pool.claims.len() as u32,
                        hits: self.metrics.pool_hits.get_or_create(&labels).get(),
                        misses: self.metrics.pool_misses.get_or_create(&labels).get(),
                        sandboxes: pool.warm.iter().map(|w| w.sandbox.id.clone()).collect(),
                    }
                })
                .collect()
        };
        keys.sort_by(|a, b| (&a.namespace, &a.profile).cmp(&(&b.namespace, &b.profile)));
        PoolStatus {
            enabled,
            backend: self.backend.kind(),
            min: self.config.min,
            max: self.config.max,
            target: keys.iter().map(|k| k.target).sum(),
            warm: keys.iter().map(|k| k.warm).sum(),
            creating: keys.iter().map(|k| k.creating).sum(),
            hits: keys.iter().map(|k| k.hits).sum(),
            misses: keys.iter().map(|k| k.misses).sum(),
            sandboxes: keys.iter().flat_map(|k| k.sandboxes.iter().cloned()).collect(),
            pools: keys,
        }
    }
}

fn expire(claims: &mut VecDeque<Instant>, window: Duration) {
    while claims.front().is_some_and(|t| t.elapsed() > window) {
        claims.pop_front();
    }
}
