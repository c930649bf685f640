//! The registry's slots: one per (user, namespace, profile), holding that user's sandbox (or
//! the creation of it under way), how many sessions and creations use it, its spare
//! pre-started shell and its deadline.
//!
//! Invariants:
//! - Every method takes the one lock briefly and never awaits while holding it; backend calls
//!   happen outside, so a slow engine never blocks another user, the reaper, or an ending.
//! - One creation at a time per slot makes its sandbox ([`Step::Make`]); the others wait for it
//!   and are woken when the maker is done, whether it succeeded or not (the maker's
//!   [`watch::Sender`] is dropped either way).
//! - A sandbox is removed only when no session and no creation uses it (`users == 0`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::pool::WatchedStub;
use crate::sandbox::Sandbox;

/// Whose sandbox: a user's, in a namespace, with a profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotKey {
    pub user: String,
    pub namespace: String,
    pub profile: String,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Empty,
    Making(watch::Receiver<()>),
    Ready(Sandbox),
}

#[derive(Default)]
struct Slot {
    state: SlotState,
    /// Sessions in the sandbox plus creations under way that will use it.
    users: u32,
    /// Set for a sandbox nobody uses yet (adopted at start): it is removed when it stays
    /// unused for `sessions.idle_timeout`.
    unused_since: Option<Instant>,
    /// A started stub for the user's next tab.
    spare: Option<WatchedStub>,
    /// When the sandbox reaches `sessions.max_lifetime` (counted from when it became the
    /// user's): no session in it lives longer, so neither does the sandbox.
    expires_at: Option<DateTime<Utc>>,
}

/// What a creation does next for its slot.
pub(super) enum Step {
    /// The sandbox is there.
    Use(Sandbox),
    /// Another creation is making it: wait until it is done, then ask again.
    Wait(watch::Receiver<()>),
    /// Make it; dropping the sender (after [`Slots::made`]) wakes those who wait.
    Make(watch::Sender<()>),
}

/// A sandbox nobody uses any more, and its spare shell, to be removed.
pub(super) struct Unused {
    pub sandbox: Sandbox,
    pub spare: Option<WatchedStub>,
}

#[derive(Default)]
pub(super) struct Slots {
    map: Mutex<HashMap<SlotKey, Slot>>,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, HashMap<SlotKey, Slot>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Books a creation for `key`, so its sandbox is not removed under it.
    pub fn reserve(&self, key: &SlotKey) {
        self.lock().entry(key.clone()).or_default().users += 1;
    }

    /// What the creation for `key` does next.
    pub fn next_step(&self, key: &SlotKey) -> Step {
        let mut map = self.lock();
        let slot = map.entry(key.clone()).or_default();
        match &slot.state {
            SlotState::Ready(sandbox) => Step::Use(sandbox.clone()),
            SlotState::Making(done) => Step::Wait(done.clone()),
            SlotState::Empty => {
                let (tx, rx) = watch::channel(());
                slot.state = SlotState::Making(rx);
                Step::Make(tx)
            }
        }
    }

    /// The maker of `key`'s sandbox is done: `made` is the sandbox, or `None` when it failed.
    /// Returns the sandbox back when nobody wants it any more (every creation gave up).
    pub fn made(&self, key: &SlotKey, made: Option<Sandbox>) -> Option<Sandbox> {
        let mut map = self.lock();
        let slot = map.entry(key.clone()).or_default();
        match made {
            Some(sandbox) if slot.users == 0 => {
                slot.state = SlotState::Empty;
                Some(sandbox)
            }
            Some(sandbox) => {
                slot.state = SlotState::Ready(sandbox);
                slot.unused_since = None;
                None
            }
            None => {
                slot.state = SlotState::Empty;
                None
            }
        }
    }

    /// Ends a creation that did not become a session; the sandbox is returned for removal when
    /// nobody else uses it.
    pub fn release(&self, key: &SlotKey) -> Option<Unused> {
        self.leave(key, false)
    }

    /// A session (or a creation) of `key` is done with its sandbox; the sandbox is returned
    /// for removal when nobody else uses it, unless `keep` (at shutdown the sandbox stays for
    /// the next run to adopt).
    pub fn leave(&self, key: &SlotKey, keep: bool) -> Option<Unused> {
        let mut map = self.lock();
        let slot = map.get_mut(key)?;
        slot.users = slot.users.saturating_sub(1);
        if slot.users > 0 || keep {
            return None;
        }
        Self::empty(slot)
    }

    fn empty(slot: &mut Slot) -> Option<Unused> {
        slot.expires_at = None;
        slot.unused_since = None;
        let spare = slot.spare.take();
        match std::mem::take(&mut slot.state) {
            SlotState::Ready(sandbox) => Some(Unused { sandbox, spare }),
            // A maker is still under way: it learns nobody waits when it is done.
            SlotState::Making(done) => {
                slot.state = SlotState::Making(done);
                None
            }
            SlotState::Empty => None,
        }
    }

    /// `key`'s sandbox `id` went away: it is forgotten (so the next step makes a new one).
    pub fn forget(&self, key: &SlotKey, id: &str) -> Option<WatchedStub> {
        let mut map = self.lock();
        let slot = map.get_mut(key)?;
        if matches!(&slot.state, SlotState::Ready(s) if s.id == id) {
            slot.state = SlotState::Empty;
            slot.expires_at = None;
            return slot.spare.take();
        }
        None
    }

    /// `key`'s sandbox, if it is ready.
    pub fn ready(&self, key: &SlotKey) -> Option<Sandbox> {
        match &self.lock().get(key)?.state {
            SlotState::Ready(sandbox) => Some(sandbox.clone()),
            _ => None,
        }
    }

    /// The spare shell of `key`'s sandbox `id`, if it has one.
    pub fn take_spare(&self, key: &SlotKey, id: &str) -> Option<WatchedStub> {
        let mut map = self.lock();
        let slot = map.get_mut(key)?;
        match &slot.state {
            SlotState::Ready(sandbox) if sandbox.id == id => slot.spare.take(),
            _ => None,
        }
    }

    /// Whether `key`'s sandbox `id` is in use and lacks a spare shell.
    pub fn wants_spare(&self, key: &SlotKey, id: &str) -> bool {
        let map = self.lock();
        map.get(key).is_some_and(|slot| {
            slot.users > 0
                && slot.spare.is_none()
                && matches!(&slot.state, SlotState::Ready(s) if s.id == id)
        })
    }

    /// Keeps `stub` as the spare of `key`'s sandbox `id`; hands it back when it is not wanted.
    pub fn offer_spare(&self, key: &SlotKey, id: &str, stub: WatchedStub) -> Option<WatchedStub> {
        if !self.wants_spare(key, id) {
            return Some(stub);
        }
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(slot) if slot.spare.is_none() => {
                slot.spare = Some(stub);
                None
            }
            _ => Some(stub),
        }
    }

    /// When `key`'s sandbox reaches its maximum lifetime: set (to `now + lifetime`) when it
    /// first becomes the user's, then kept.
    pub fn expires_at(&self, key: &SlotKey, lifetime: chrono::Duration) -> DateTime<Utc> {
        let mut map = self.lock();
        let slot = map.entry(key.clone()).or_default();
        *slot.expires_at.get_or_insert_with(|| Utc::now() + lifetime)
    }

    /// The ids of the sandboxes the slots hold, and whether any slot's sandbox is being made
    /// (then a sandbox the store or the backend shows may be that one, not yet booked).
    pub fn held(&self) -> (std::collections::HashSet<String>, bool) {
        let map = self.lock();
        let mut making = false;
        let mut ids = std::collections::HashSet::new();
        for slot in map.values() {
            match &slot.state {
                SlotState::Ready(sandbox) => {
                    ids.insert(sandbox.id.clone());
                }
                SlotState::Making(_) => making = true,
                SlotState::Empty => {}
            }
        }
        (ids, making)
    }

    /// Whether `key` has no sandbox and none is being made.
    pub fn is_vacant(&self, key: &SlotKey) -> bool {
        self.lock().get(key).is_none_or(|slot| matches!(slot.state, SlotState::Empty))
    }

    /// Puts `sandbox` (found alive, the user's in the store, held by no slot) in `key`'s slot
    /// if that has no sandbox and none is being made; `false` (nothing changed) otherwise.
    pub fn adopt_if_empty(&self, key: SlotKey, sandbox: Sandbox) -> bool {
        let mut map = self.lock();
        let slot = map.entry(key).or_default();
        if !matches!(slot.state, SlotState::Empty) {
            return false;
        }
        slot.state = SlotState::Ready(sandbox);
        if slot.users == 0 {
            slot.unused_since = Some(Instant::now());
        }
        true
    }

    /// Sandboxes that stayed unused for `idle`, taken out of their slots.
    pub fn take_unused(&self, idle: Duration) -> Vec<Unused> {
        let mut map = self.lock();
        map.values_mut()
            .filter(|slot| {
                slot.users == 0 && slot.unused_since.is_some_and(|t| t.elapsed() >= idle)
            })
            .filter_map(Self::empty)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SlotKey {
        SlotKey { user: "alice".into(), namespace: "default".into(), profile: "default".into() }
    }

    fn sandbox(id: &str) -> Sandbox {
        Sandbox {
            id: id.into(),
            name: id.into(),
            user: Some("alice".into()),
            namespace: "default".into(),
            profile: "default".into(),
            workspace: "/w".into(),
            running: true,
        }
    }

    #[tokio::test]
    async fn one_creation_makes_the_sandbox_and_the_others_wait_for_it() {
        let slots = Slots::default();
        slots.reserve(&key());
        slots.reserve(&key());
        let Step::Make(maker) = slots.next_step(&key()) else { panic!("the first makes") };
        let Step::Wait(mut done) = slots.next_step(&key()) else { panic!("the second waits") };
        assert!(slots.made(&key(), Some(sandbox("s1"))).is_none());
        drop(maker);
        assert!(done.changed().await.is_err(), "the waiter is woken");
        assert!(matches!(slots.next_step(&key()), Step::Use(s) if s.id == "s1"));
        assert!(slots.leave(&key(), false).is_none(), "one user is left");
        let unused = slots.leave(&key(), false).expect("the last one leaves");
        assert_eq!(unused.sandbox.id, "s1");
    }

    #[test]
    fn a_sandbox_made_after_everyone_gave_up_is_handed_back() {
        let slots = Slots::default();
        slots.reserve(&key());
        let Step::Make(_maker) = slots.next_step(&key()) else { panic!() };
        assert!(slots.release(&key()).is_none(), "nothing to remove while it is being made");
        let unwanted = slots.made(&key(), Some(sandbox("late")));
        assert_eq!(unwanted.map(|s| s.id), Some("late".to_string()));
        assert!(matches!(slots.next_step(&key()), Step::Make(_)));
    }

    #[test]
    fn adopted_sandboxes_go_when_unused_and_the_deadline_is_kept() {
        let slots = Slots::default();
        assert!(slots.adopt_if_empty(key(), sandbox("old")));
        assert!(!slots.adopt_if_empty(key(), sandbox("other")), "one sandbox per slot");
        assert_eq!(slots.held().0.into_iter().collect::<Vec<_>>(), ["old"]);
        let first = slots.expires_at(&key(), chrono::Duration::hours(1));
        assert_eq!(slots.expires_at(&key(), chrono::Duration::hours(5)), first);
        assert!(slots.take_unused(Duration::from_secs(3600)).is_empty());
        let gone = slots.take_unused(Duration::ZERO);
        assert_eq!(gone.len(), 1);
        assert!(slots.ready(&key()).is_none());
    }
}
