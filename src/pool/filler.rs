//! The pool's background work: keeping every key at its target, making warm sandboxes (each
//! bounded by the create timeout), shrinking back when idle, and the health check that
//! replaces dead stubs and vanished sandboxes.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{PoolKey, PoolSpec, WarmPool, WarmSandbox, WatchedStub};
use crate::error::{Error, Result};
use crate::sandbox::{Sandbox, SandboxSpec};
use crate::store::{SandboxRecord, SandboxStatus};

/// Warm sandboxes made at once, over all keys: a burst of creations must not starve the
/// sessions being served.
const MAX_CREATING: u32 = 2;
/// How long a key waits after a failed creation before it tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// How long a key that still has a warm sandbox waits after a claim before it makes the next
/// one: a container's creation takes the engine's CPU (~80 ms of it), which the claimed
/// sandbox's activation and first prompt need first (a claim takes ~10 ms). A key that has
/// none left makes more at once, and none waits longer than this in all.
const AFTER_A_CLAIM: Duration = Duration::from_millis(50);

impl WarmPool {
    /// Keeps every key at its target until the task is dropped or the pool stops.
    pub async fn run(self: Arc<Self>) {
        if !self.enabled() {
            return;
        }
        let mut last_check = Instant::now();
        while !self.stopping.load(Ordering::Acquire) {
            let postponed = self.fill_or_shrink();
            if last_check.elapsed() >= self.config.health_interval.0 {
                self.check_health().await;
                last_check = Instant::now();
            }
            let tick = self.config.health_interval.0.min(Duration::from_secs(1));
            let tick = postponed.map_or(tick, |wait| wait.min(tick));
            let _ = tokio::time::timeout(tick, self.wake.notified()).await;
        }
    }

    /// Starts the creations and removals that bring every key to its target; says when to
    /// look again if a creation was postponed (see [`AFTER_A_CLAIM`]).
    fn fill_or_shrink(self: &Arc<Self>) -> Option<Duration> {
        let mut to_make = Vec::new();
        let mut surplus = Vec::new();
        let mut postponed: Option<Duration> = None;
        {
            let mut pools = self.lock();
            for pool in pools.values_mut() {
                let target = self.target_of(pool);
                let have = pool.warm.len() as u32 + pool.creating;
                let short_with_warm_left = have < target && !pool.warm.is_empty();
                let since_claim = pool.claims.back().map(|at| at.elapsed());
                let after_claim = since_claim.and_then(|t| AFTER_A_CLAIM.checked_sub(t));
                match after_claim.filter(|_| short_with_warm_left) {
                    None => pool.put_off_since = None,
                    // Put off for one claim's time in all, also when claims keep coming.
                    Some(wait) => {
                        let since = *pool.put_off_since.get_or_insert_with(Instant::now);
                        if let Some(left) = AFTER_A_CLAIM.checked_sub(since.elapsed()) {
                            let wait = wait.min(left);
                            postponed = Some(postponed.map_or(wait, |p| p.min(wait)));
                            continue;
                        }
                    }
                }
                let room = MAX_CREATING.saturating_sub(self.creating.load(Ordering::Acquire));
                let missing = target.saturating_sub(have).min(room);
                for _ in 0..missing {
                    pool.creating += 1;
                    self.creating.fetch_add(1, Ordering::AcqRel);
                    to_make.push(pool.spec.clone());
                }
                let warm = pool.warm.len() as u32;
                if warm > target && pool.creating == 0 {
                    let extra = (warm - target) as usize;
                    surplus.extend(pool.warm.drain(..extra));
                }
            }
        }
        for spec in to_make {
            let pool = self.clone();
            tokio::spawn(async move {
                let made = pool.make_one(&spec).await;
                pool.creation_ended(&spec.key, made);
            });
        }
        for extra in surplus {
            let pool = self.clone();
            tokio::spawn(async move {
                tracing::info!(sandbox = %extra.sandbox.id, "pool shrinks: removing a warm sandbox");
                pool.publish(&PoolKey::new(&extra.sandbox.namespace, &extra.sandbox.profile));
                extra.stub.abandon().await;
                pool.remove(&extra.sandbox.id).await;
            });
        }
        postponed
    }

    /// Books a creation's end (a failed one already waited a little in `make_one`, so a broken
    /// engine is not hammered).
    fn creation_ended(&self, key: &PoolKey, made: Result<WarmSandbox>) {
        {
            let mut pools = self.lock();
            if let Some(pool) = pools.get_mut(key) {
                pool.creating = pool.creating.saturating_sub(1);
                if let Ok(warm) = made {
                    pool.warm.push(warm);
                }
            }
        }
        self.publish(key);
        if self.creating.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
        self.wake.notify_one();
    }

    /// Makes one warm sandbox of `spec` with its stub, recorded as warm in the store.
    async fn make_one(&self, spec: &PoolSpec) -> Result<WarmSandbox> {
        let started = Instant::now();
        let made = tokio::time::timeout(self.create_timeout, self.create_warm(spec)).await;
        let made = made.unwrap_or_else(|_| {
            Err(Error::BackendUnavailable(format!(
                "a warm sandbox was not ready within {:?} (sessions.create_timeout)",
                self.create_timeout
            )))
        });
        match &made {
            Ok(_) => {
                self.metrics.pool_create_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                tracing::warn!(namespace = %spec.key.namespace, profile = %spec.key.profile, error = %e, "could not make a warm sandbox");
                tokio::time::sleep(RETRY_AFTER_FAILURE).await;
            }
        }
        made
    }

    async fn create_warm(&self, spec: &PoolSpec) -> Result<WarmSandbox> {
        let warm = self
            .backend
            .warm_sandboxes()
            .ok_or_else(|| Error::Internal("the backend has no warm sandboxes".into()))?;
        let sandbox_spec = SandboxSpec {
            user: None,
            namespace: spec.key.namespace.clone(),
            profile: spec.profile.clone(),
            progress: None,
        };
        let sandbox = warm.create_warm(&sandbox_spec).await?;
        let record = SandboxRecord {
            id: sandbox.id.clone(),
            backend: self.backend.kind().into(),
            user: None,
            namespace: sandbox.namespace.clone(),
            profile: sandbox.profile.clone(),
            status: SandboxStatus::Warm,
            created_at: Utc::now(),
            expires_at: None,
        };
        let stub = match self.store.insert_sandbox(&record).await {
            Ok(()) => warm.start_stub(&sandbox).await,
            Err(e) => Err(e),
        };
        match stub {
            Ok(stub) => Ok(WarmSandbox { sandbox, stub: WatchedStub::watch(stub) }),
            Err(e) => {
                self.remove(&sandbox.id).await;
                Err(e)
            }
        }
    }

    /// Replaces warm sandboxes that vanished or whose stub died.
    pub(super) async fn check_health(&self) {
        let Ok(existing) = self.backend.list_sandboxes().await else { return };
        let alive: HashSet<String> =
            existing.into_iter().filter(|s| s.running).map(|s| s.id).collect();
        let dead: Vec<WarmSandbox> = {
            let mut pools = self.lock();
            let mut dead = Vec::new();
            for pool in pools.values_mut() {
                let (gone, live): (Vec<_>, Vec<_>) = pool
                    .warm
                    .drain(..)
                    .partition(|w| !alive.contains(&w.sandbox.id) || w.stub.is_dead());
                pool.warm = live;
                dead.extend(gone);
            }
            dead
        };
        for warm in dead {
            let Sandbox { id, namespace, profile, .. } = &warm.sandbox;
            tracing::warn!(sandbox = %id, "a warm sandbox died or was removed; replacing it");
            warm.stub.abandon().await;
            self.remove(id).await;
            self.publish(&PoolKey::new(namespace, profile));
        }
        self.wake.notify_one();
    }
}
