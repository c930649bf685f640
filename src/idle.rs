//! `server.exit_when_idle`: under socket activation, kterm exits once nobody has used it for a
//! while, and systemd starts it again on the next connection.
//!
//! Busy means a WebSocket client attached, or a session with activity (input, output, a
//! creation) within the limit. The exit is the graceful stop: sandboxes stay for the next start
//! to adopt.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::session::SessionRegistry;

/// Resolves once nothing has been busy for `limit`; never when `limit` is zero (the default).
pub async fn wait_until_idle(
    registry: Arc<SessionRegistry>,
    metrics: Arc<Metrics>,
    limit: Duration,
) {
    if limit.is_zero() {
        return std::future::pending().await;
    }
    let period = (limit / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut busy_at = Instant::now();
    let mut created = metrics.sessions_created.get();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let sessions_created = metrics.sessions_created.get();
        if metrics.clients_attached.get() > 0 || sessions_created != created {
            busy_at = now;
        }
        created = sessions_created;
        if let Some(at) = registry.latest_activity() {
            let ago = (Utc::now() - at).to_std().unwrap_or(Duration::ZERO);
            busy_at = busy_at.max(now.checked_sub(ago).unwrap_or(busy_at));
        }
        if now.duration_since(busy_at) >= limit {
            tracing::info!(
                idle = %humantime::format_duration(limit),
                "exiting: nobody used kterm for server.exit_when_idle; sandboxes stay for the next start"
            );
            return;
        }
    }
}
