//! The registry's slots: one per (user, namespace, profile), holding that user's sandbox (or
//! the creation of it under way), how many sessions and creations use it, its spare
//! pre-started shell, its deadline, and, once nobody uses it, when it is to be removed (a
//! sandbox outlives its last session by `sandboxes.idle_timeout`).
//!
//! Invariants:
//! - Every method takes the one lock briefly and never awaits while holding it; backend calls
//!   happen outside, so a slow engine never blocks another user, the reaper, or an ending.
//! - One creation at a time per slot makes its sandbox ([`Step::Make`]); the others wait for it
//!   and are woken when the maker is done, whether it succeeded or not (the maker's
//!   [`watch::Sender`] is dropped either way).
//! - A sandbox is removed only when no session and no creation uses it (`users == 0`); it has
//!   a removal time (`idle_until`) exactly while nobody uses it, and a sandbox past its
//!   maximum lifetime is never kept for later.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

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
    /// Set while nobody uses the sandbox: when it is to be removed.
    idle_until: Option<DateTime<Utc>>,
    /// A started stub for the user's next tab.
    spare: Option<WatchedStub>,
    /// When the sandbox became the user's.
    since: Option<DateTime<Utc>>,
    /// When the sandbox reaches `sessions.max_lifetime` (counted from when it became the
    /// user's, kept in the store across restarts): no session in it lives longer, so neither
    /// does the sandbox.
    expires_at: Option<DateTime<Utc>>,
}

/// When a sandbox became its user's and when it reaches its maximum lifetime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Life {
    pub since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What becomes of a sandbox when its last user leaves.
#[derive(Debug, Clone, Copy)]
pub(super) enum AfterLast {
    /// Removed now.
    Remove,
    /// Kept this long for the user's next tab, then removed.
    Linger(Duration),
    /// Kept as it is (a graceful stop: the next run adopts it).
    Keep,
}

/// A user's sandbox as the API shows it.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub key: SlotKey,
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When it is removed, while nobody uses it.
    pub idle_expires_at: Option<DateTime<Utc>>,
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

    /// Books a creation for `key`, so its sandbox is not removed under it (a lingering one is
    /// in use again).
    pub fn reserve(&self, key: &SlotKey) {
        let mut map = self.lock();
        let slot = map.entry(key.clone()).or_default();
        slot.users += 1;
        slot.idle_until = None;
    }

    /// Whether a session or a creation uses `key`'s sandbox (or waits for it).
    pub fn in_use(&self, key: &SlotKey) -> bool {
        self.lock().get(key).is_some_and(|slot| slot.users > 0)
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

    /// The maker of `key`'s sandbox is done: `made` is the sandbox (and its life), or `None`
    /// when it failed. Returns the sandbox back when nobody wants it any more (every creation
    /// gave up).
    pub fn made(&self, key: &SlotKey, made: Option<(Sandbox, Life)>) -> Option<Sandbox> {
        let mut map = self.lock();
        let slot = map.entry(key.clone()).or_default();
        match made {
            Some((sandbox, _)) if slot.users == 0 => {
                slot.state = SlotState::Empty;
                Some(sandbox)
            }
            Some((sandbox, life)) => {
                slot.state = SlotState::Ready(sandbox);
                slot.idle_until = None;
                slot.since = Some(life.since);
                slot.expires_at = Some(life.expires_at);
                None
            }
            None => {
                slot.state = SlotState::Empty;
                None
            }
        }
    }

    /// A session (or a creation) of `key` is done with its sandbox. When nobody else uses it,
    /// `after` says what becomes of it: the sandbox is returned for removal now, or it lingers
    /// (never past its maximum lifetime), or it is kept.
    pub fn leave(&self, key: &SlotKey, after: AfterLast) -> Option<Unused> {
        let mut map = self.lock();
        let slot = map.get_mut(key)?;
        slot.users = slot.users.saturating_sub(1);
        if slot.users > 0 {
            return None;
        }
        let now = Utc::now();
        match after {
            AfterLast::Keep => None,
            AfterLast::Linger(linger) if slot.expires_at.is_none_or(|at| at > now) => {
                let linger = chrono::Duration::from_std(linger).unwrap_or(chrono::Duration::MAX);
                let until = now.checked_add_signed(linger).unwrap_or(DateTime::<Utc>::MAX_UTC);
                slot.idle_until = Some(until);
                None
            }
            _ => Self::empty(slot),
        }
    }

    fn empty(slot: &mut Slot) -> Option<Unused> {
        slot.expires_at = None;
        slot.since = None;
        slot.idle_until = None;
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

    /// When `key`'s sandbox reaches its maximum lifetime: set when it became the user's (see
    /// [`Slots::made`], [`Slots::adopt`]), else now, to `now + lifetime`; then kept.
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

    /// Puts `sandbox` (a previous run's, found alive, the user's in the store, held by no
    /// slot) in `key`'s slot if that has no sandbox and none is being made, used by nobody
    /// yet: removed at `idle_until` unless a session comes (or the previous run's sessions are
    /// resumed in it). `false` (nothing changed) when the slot is taken.
    pub fn adopt_if_empty(
        &self,
        key: SlotKey,
        sandbox: Sandbox,
        life: Life,
        idle_until: DateTime<Utc>,
    ) -> bool {
        let mut map = self.lock();
        let slot = map.entry(key).or_default();
        if !matches!(slot.state, SlotState::Empty) {
            return false;
        }
        slot.state = SlotState::Ready(sandbox);
        slot.since = Some(life.since);
        slot.expires_at = Some(life.expires_at);
        if slot.users == 0 {
            slot.idle_until = Some(idle_until);
        }
        true
    }

    /// Sandboxes nobody uses whose removal time or maximum lifetime has come, taken out of
    /// their slots.
    pub fn take_unused(&self, now: DateTime<Utc>) -> Vec<Unused> {
        let mut map = self.lock();
        map.values_mut()
            .filter(|slot| {
                slot.users == 0
                    && (slot.idle_until.is_some_and(|t| t <= now)
                        || slot.expires_at.is_some_and(|t| t <= now))
            })
            .filter_map(Self::empty)
            .collect()
    }

    /// Every ready sandbox, as the API shows it.
    pub fn list(&self) -> Vec<SandboxView> {
        self.lock()
            .iter()
            .filter_map(|(key, slot)| match &slot.state {
                SlotState::Ready(sandbox) => Some(SandboxView {
                    key: key.clone(),
                    id: sandbox.id.clone(),
                    created_at: slot.since,
                    expires_at: slot.expires_at,
                    idle_expires_at: slot.idle_until,
                }),
                _ => None,
            })
            .collect()
    }

    /// Takes sandbox `id` out of its slot whoever uses it (it is being ended): the slot is
    /// empty from now on, so a new creation makes a new sandbox, and the sessions still in it
    /// find nothing to remove when they leave.
    pub fn take(&self, id: &str) -> Option<(SlotKey, Unused)> {
        let mut map = self.lock();
        let (key, slot) = map
            .iter_mut()
            .find(|(_, slot)| matches!(&slot.state, SlotState::Ready(s) if s.id == id))?;
        let unused = Self::empty(slot)?;
        Some((key.clone(), unused))
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
        assert!(slots.made(&key(), Some((sandbox("s1"), life()))).is_none());
        drop(maker);
        assert!(done.changed().await.is_err(), "the waiter is woken");
        assert!(matches!(slots.next_step(&key()), Step::Use(s) if s.id == "s1"));
        assert!(slots.leave(&key(), AfterLast::Remove).is_none(), "one user is left");
        let unused = slots.leave(&key(), AfterLast::Remove).expect("the last one leaves");
        assert_eq!(unused.sandbox.id, "s1");
    }

    #[test]
    fn a_sandbox_made_after_everyone_gave_up_is_handed_back() {
        let slots = Slots::default();
        slots.reserve(&key());
        let Step::Make(_maker) = slots.next_step(&key()) else { panic!() };
        let left = slots.leave(&key(), AfterLast::Remove);
        assert!(left.is_none(), "nothing to remove while it is being made");
        let unwanted = slots.made(&key(), Some((sandbox("late"), life())));
        assert_eq!(unwanted.map(|s| s.id), Some("late".to_string()));
        assert!(matches!(slots.next_step(&key()), Step::Make(_)));
    }

    fn life() -> Life {
        Life { since: Utc::now(), expires_at: Utc::now() + chrono::Duration::hours(1) }
    }

    #[test]
    fn adopted_sandboxes_go_when_unused_and_the_deadline_is_kept() {
        let slots = Slots::default();
        let life = life();
        let until = Utc::now() + chrono::Duration::minutes(1);
        assert!(slots.adopt_if_empty(key(), sandbox("old"), life, until));
        assert!(!slots.adopt_if_empty(key(), sandbox("other"), life, until), "one per slot");
        assert_eq!(slots.held().0.into_iter().collect::<Vec<_>>(), ["old"]);
        assert_eq!(slots.expires_at(&key(), chrono::Duration::hours(5)), life.expires_at);
        assert!(slots.take_unused(Utc::now()).is_empty());
        let gone = slots.take_unused(Utc::now() + chrono::Duration::minutes(2));
        assert_eq!(gone.len(), 1);
        assert!(slots.ready(&key()).is_none());
    }

    #[test]
    fn a_sandbox_lingers_after_its_last_session_until_reused_or_due() {
        let slots = Slots::default();
        slots.reserve(&key());
        let Step::Make(_maker) = slots.next_step(&key()) else { panic!() };
        slots.made(&key(), Some((sandbox("s1"), life())));
        let linger = AfterLast::Linger(Duration::from_secs(60));
        assert!(slots.leave(&key(), linger).is_none(), "it lingers");
        let shown = slots.list();
        assert_eq!(shown.len(), 1);
        assert!(shown[0].idle_expires_at.is_some());
        // A new tab uses it again: no removal time while in use.
        slots.reserve(&key());
        assert!(matches!(slots.next_step(&key()), Step::Use(s) if s.id == "s1"));
        assert!(slots.list()[0].idle_expires_at.is_none());
        assert!(slots.take_unused(Utc::now() + chrono::Duration::hours(9)).is_empty(), "in use");
        assert!(slots.leave(&key(), linger).is_none());
        assert!(slots.take_unused(Utc::now()).is_empty(), "not yet");
        let gone = slots.take_unused(Utc::now() + chrono::Duration::seconds(61));
        assert_eq!(gone.len(), 1);
    }

    #[test]
    fn a_sandbox_past_its_lifetime_does_not_linger_and_take_empties_the_slot() {
        let slots = Slots::default();
        slots.reserve(&key());
        let Step::Make(_maker) = slots.next_step(&key()) else { panic!() };
        let past =
            Life { since: Utc::now(), expires_at: Utc::now() - chrono::Duration::seconds(1) };
        slots.made(&key(), Some((sandbox("old"), past)));
        let linger = AfterLast::Linger(Duration::from_secs(60));
        assert!(slots.leave(&key(), linger).is_some(), "removed at once");

        slots.reserve(&key());
        let Step::Make(_maker) = slots.next_step(&key()) else { panic!() };
        slots.made(&key(), Some((sandbox("s2"), life())));
        let (owner, unused) = slots.take("s2").expect("taken while in use");
        assert_eq!((owner, unused.sandbox.id), (key(), "s2".to_string()));
        assert!(slots.leave(&key(), AfterLast::Remove).is_none(), "nothing left to remove");
        assert!(matches!(slots.next_step(&key()), Step::Make(_)), "a new one is made");
    }
}
