//! When kterm ends a session on its own, and the warning its attached client gets before.
//!
//! Two deadlines end a session: its maximum lifetime (`expires_at`, fixed at creation) and the
//! idle timeout. The idle clock restarts on output, and on a detach while nobody is attached;
//! while a client is attached it runs only under `sessions.idle_when_attached`, restarted also
//! by the client's input and keep-alives (and by the attach itself).
//!
//! Deadlines are [`Instant`]s here, so a deadline stays equal to itself until activity moves it:
//! that is what "warn once per deadline" compares. Wall-clock times are made only for messages.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::SessionsConfig;

/// The part of `sessions.*` that decides when a session ends on its own.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    pub idle_timeout: Duration,
    /// Zero: no warnings.
    pub warn_before: Duration,
    pub idle_when_attached: bool,
}

impl Lifecycle {
    pub fn from_config(config: &SessionsConfig) -> Lifecycle {
        Lifecycle {
            idle_timeout: config.idle_timeout.0,
            warn_before: config.warn_before.0,
            idle_when_attached: config.idle_when_attached,
        }
    }
}

/// Why kterm ends a session on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    IdleTimeout,
    MaxLifetime,
}

impl Deadline {
    /// The reason as the protocol, the store and the audit log name it.
    pub fn reason(self) -> &'static str {
        match self {
            Deadline::IdleTimeout => "idle_timeout",
            Deadline::MaxLifetime => "max_lifetime",
        }
    }
}

/// An upcoming end of a session, as its attached client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub deadline: Deadline,
    pub at: DateTime<Utc>,
    /// Whole seconds from now until `at` (rounded).
    pub in_secs: u64,
}

impl Warning {
    /// The warning for `deadline` at `when`; a lifetime's end is `expires_at` to the millisecond.
    pub(super) fn new(deadline: Deadline, when: Instant, expires_at: DateTime<Utc>) -> Warning {
        let now = Utc::now();
        let at = match deadline {
            Deadline::MaxLifetime => expires_at,
            Deadline::IdleTimeout => {
                let left = when.saturating_duration_since(Instant::now());
                now + chrono::Duration::from_std(left).unwrap_or_default()
            }
        };
        let left_ms = u64::try_from((at - now).num_milliseconds()).unwrap_or(0);
        Warning { deadline, at, in_secs: (left_ms + 500) / 1000 }
    }
}

/// The deadlines one attachment has announced: each is announced once.
#[derive(Debug, Default)]
pub(super) struct Announced {
    idle: Option<Instant>,
    lifetime: bool,
}

impl Announced {
    pub(super) fn record(&mut self, deadline: Deadline, when: Instant) {
        match deadline {
            Deadline::IdleTimeout => self.idle = Some(when),
            Deadline::MaxLifetime => self.lifetime = true,
        }
    }
}

/// What an attachment should do about warnings.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Announce this deadline now.
    Now(Deadline, Instant),
    /// Nothing to announce before this instant (unless activity moves a deadline).
    At(Instant),
    Never,
}

/// The next warning for a session that ends at `expires` and, if `idle` is some, when idle
/// then; an idle deadline at or after the lifetime's end is not the one that ends it.
pub(super) fn next_warning(
    lifecycle: &Lifecycle,
    idle: Option<Instant>,
    expires: Instant,
    announced: &Announced,
    now: Instant,
) -> Due {
    if lifecycle.warn_before.is_zero() {
        return Due::Never;
    }
    let idle = idle.filter(|&d| d < expires && announced.idle != Some(d));
    let lifetime = Some(expires).filter(|_| !announced.lifetime);
    let upcoming =
        [idle.map(|d| (Deadline::IdleTimeout, d)), lifetime.map(|d| (Deadline::MaxLifetime, d))];
    let mut wake: Option<Instant> = None;
    for (deadline, when) in upcoming.into_iter().flatten() {
        match when.checked_sub(lifecycle.warn_before) {
            Some(start) if start > now => wake = Some(wake.map_or(start, |w| w.min(start))),
            _ => return Due::Now(deadline, when),
        }
    }
    wake.map_or(Due::Never, Due::At)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle(warn_secs: u64) -> Lifecycle {
        Lifecycle {
            idle_timeout: Duration::from_secs(60),
            warn_before: Duration::from_secs(warn_secs),
            idle_when_attached: true,
        }
    }

    #[test]
    fn warns_inside_the_window_once_per_deadline() {
        let now = Instant::now();
        let expires = now + Duration::from_secs(100);
        let mut announced = Announced::default();
        let lc = lifecycle(10);
        // Outside the window: wake when it opens.
        assert_eq!(
            next_warning(&lc, None, expires, &announced, now),
            Due::At(now + Duration::from_secs(90))
        );
        let later = now + Duration::from_secs(91);
        assert_eq!(
            next_warning(&lc, None, expires, &announced, later),
            Due::Now(Deadline::MaxLifetime, expires)
        );
        announced.record(Deadline::MaxLifetime, expires);
        assert_eq!(next_warning(&lc, None, expires, &announced, later), Due::Never);
    }

    #[test]
    fn a_moved_idle_deadline_warns_again_and_the_earlier_deadline_comes_first() {
        let now = Instant::now();
        let expires = now + Duration::from_secs(1000);
        let lc = lifecycle(10);
        let mut announced = Announced::default();
        let idle = now + Duration::from_secs(5);
        assert_eq!(
            next_warning(&lc, Some(idle), expires, &announced, now),
            Due::Now(Deadline::IdleTimeout, idle)
        );
        announced.record(Deadline::IdleTimeout, idle);
        assert_eq!(
            next_warning(&lc, Some(idle), expires, &announced, now),
            Due::At(now + Duration::from_secs(990))
        );
        // Activity moved the deadline: a later approach warns again.
        let moved = now + Duration::from_secs(30);
        assert_eq!(
            next_warning(&lc, Some(moved), expires, &announced, now),
            Due::At(now + Duration::from_secs(20))
        );
        // An idle deadline past the lifetime's end is not the one that ends the session.
        let beyond = expires + Duration::from_secs(1);
        assert_eq!(
            next_warning(&lc, Some(beyond), expires, &announced, now),
            Due::At(now + Duration::from_secs(990))
        );
    }

    #[test]
    fn zero_warn_before_never_warns() {
        let now = Instant::now();
        let due = next_warning(&lifecycle(0), Some(now), now, &Announced::default(), now);
        assert_eq!(due, Due::Never);
    }
}
