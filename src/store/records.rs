//! Rows of the `sessions` and `sandboxes` tables and the queries on them.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::Store;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Pending,
    Running,
    Terminated,
    Failed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "pending",
            SessionStatus::Running => "running",
            SessionStatus::Terminated => "terminated",
            SessionStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> SessionStatus {
        match text {
            "pending" => SessionStatus::Pending,
            "running" => SessionStatus::Running,
            "terminated" => SessionStatus::Terminated,
            _ => SessionStatus::Failed,
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, SessionStatus::Pending | SessionStatus::Running)
    }
}

/// A terminal session as the store keeps it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: String,
    pub user: String,
    pub namespace: String,
    pub profile: String,
    pub sandbox_id: String,
    pub status: SessionStatus,
    pub context: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub last_active: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub exit_code: Option<i32>,
    pub end_reason: Option<String>,
    /// When it ended, as the store recorded it (`None` while it runs).
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxStatus {
    /// In the warm pool, bound to nobody.
    Warm,
    /// Bound to its user.
    Running,
    /// Its removal was decided but not (yet) confirmed by the backend: the reconcile retries it.
    Ending,
    Terminated,
}

impl SandboxStatus {
    fn as_str(self) -> &'static str {
        match self {
            SandboxStatus::Warm => "warm",
            SandboxStatus::Running => "running",
            SandboxStatus::Ending => "ending",
            SandboxStatus::Terminated => "terminated",
        }
    }

    fn parse(text: &str) -> SandboxStatus {
        match text {
            "warm" => SandboxStatus::Warm,
            "running" => SandboxStatus::Running,
            "ending" => SandboxStatus::Ending,
            _ => SandboxStatus::Terminated,
        }
    }
}

/// A sandbox as the store keeps it.
#[derive(Debug, Clone)]
pub struct SandboxRecord {
    pub id: String,
    pub backend: String,
    pub user: Option<String>,
    pub namespace: String,
    pub profile: String,
    pub status: SandboxStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub(super) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let context: String = row.get("context")?;
    Ok(SessionRecord {
        id: row.get("id")?,
        user: row.get("user")?,
        namespace: row.get("namespace")?,
        profile: row.get("profile")?,
        sandbox_id: row.get("sandbox_id")?,
        status: SessionStatus::parse(&row.get::<_, String>("status")?),
        context: serde_json::from_str(&context).unwrap_or_default(),
        created_at: from_millis(row.get("created_at")?),
        last_active: from_millis(row.get("last_active")?),
        expires_at: from_millis(row.get("expires_at")?),
        exit_code: row.get("exit_code")?,
        end_reason: row.get("end_reason")?,
        ended_at: row.get::<_, Option<i64>>("ended_at")?.map(from_millis),
    })
}

impl Store {
    pub async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        let s = s.clone();
        let context = serde_json::to_string(&s.context).unwrap_or_else(|_| "{}".into());
        self.run(move |c| {
            c.execute(
                "INSERT INTO sessions (id, user, namespace, sandbox_id, status, context,
                     created_at, last_active, expires_at, profile)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    s.id,
                    s.user,
                    s.namespace,
                    s.sandbox_id,
                    s.status.as_str(),
                    context,
                    millis(s.created_at),
                    millis(s.last_active),
                    millis(s.expires_at),
                    s.profile
                ],
            )
        })
        .await
        .map(drop)
    }

    /// Records that pending session `s.id` runs now, in `s.sandbox_id` until `s.expires_at`;
    /// an error when it is not pending (any more).
    pub async fn start_session(&self, s: &SessionRecord) -> Result<()> {
        let (id, sandbox, expires) = (s.id.clone(), s.sandbox_id.clone(), millis(s.expires_at));
        let changed = self
            .run(move |c| {
                c.execute(
                    "UPDATE sessions SET status = 'running', sandbox_id = ?2, expires_at = ?3
                     WHERE id = ?1 AND status = 'pending'",
                    params![id, sandbox, expires],
                )
            })
            .await?;
        match changed {
            1 => Ok(()),
            _ => Err(Error::Conflict(format!("session {} is no longer pending", s.id))),
        }
    }

    /// Records the end of a session; a session already ended keeps its first end.
    pub async fn end_session(
        &self,
        id: &str,
        status: SessionStatus,
        exit_code: Option<i32>,
        reason: &str,
    ) -> Result<()> {
        let (id, reason) = (id.to_string(), reason.to_string());
        let now = millis(Utc::now());
        self.run(move |c| {
            c.execute(
                "UPDATE sessions SET status = ?2, exit_code = ?3, end_reason = ?4, ended_at = ?5
                 WHERE id = ?1 AND status IN ('pending', 'running')",
                params![id, status.as_str(), exit_code, reason, now],
            )
        })
        .await
        .map(drop)
    }

    /// Writes a batch of `last_active` times in one transaction.
    pub async fn touch_sessions(&self, batch: Vec<(String, DateTime<Utc>)>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt =
                    tx.prepare_cached("UPDATE sessions SET last_active = ?2 WHERE id = ?1")?;
                for (id, at) in &batch {
                    stmt.execute(params![id, millis(*at)])?;
                }
            }
            tx.commit()
        })
        .await
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let id = id.to_string();
        self.run(move |c| {
            c.query_row("SELECT * FROM sessions WHERE id = ?1", [id], session_from_row).optional()
        })
        .await
    }

    /// Sessions of `user` (all users when `None`), newest first: every live one, and the newest
    /// `ended_limit` ended ones (a running tab never hides behind newer ended sessions).
    pub async fn list_sessions(
        &self,
        user: Option<&str>,
        ended_limit: u32,
    ) -> Result<Vec<SessionRecord>> {
        let user = user.map(str::to_string);
        self.run(move |c| {
            let mut live = c.prepare_cached(
                "SELECT * FROM sessions WHERE (?1 IS NULL OR user = ?1)
                   AND status IN ('pending', 'running')",
            )?;
            let mut records: Vec<SessionRecord> = live
                .query_map(params![user], session_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            if ended_limit > 0 {
                let mut ended = c.prepare_cached(
                    "SELECT * FROM sessions WHERE (?1 IS NULL OR user = ?1)
                       AND status NOT IN ('pending', 'running')
                     ORDER BY created_at DESC LIMIT ?2",
                )?;
                let rows = ended.query_map(params![user, ended_limit], session_from_row)?;
                for row in rows {
                    records.push(row?);
                }
            }
            records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
            Ok(records)
        })
        .await
    }

    /// Deletes sessions that ended before `before` (`sessions.retention`); returns how many.
    pub async fn prune_sessions(&self, before: DateTime<Utc>) -> Result<usize> {
        let before = millis(before);
        self.run(move |c| {
            c.execute(
                "DELETE FROM sessions WHERE status NOT IN ('pending', 'running')
                   AND ended_at IS NOT NULL AND ended_at < ?1",
                [before],
            )
        })
        .await
    }

    /// Every session still marked live (pending or running).
    pub async fn live_sessions(&self) -> Result<Vec<SessionRecord>> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT * FROM sessions WHERE status IN ('pending', 'running') ORDER BY created_at",
            )?;
            let rows = stmt.query_map([], session_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Ends every session still marked live, with `reason`; returns how many. Used at start-up
    /// for backends whose processes do not outlive the server.
    pub async fn end_live_sessions(&self, reason: &str) -> Result<usize> {
        let reason = reason.to_string();
        let now = millis(Utc::now());
        self.run(move |c| {
            c.execute(
                "UPDATE sessions SET status = 'terminated', end_reason = ?1, ended_at = ?2
                 WHERE status IN ('pending', 'running')",
                params![reason, now],
            )
        })
        .await
    }

    pub async fn insert_sandbox(&self, s: &SandboxRecord) -> Result<()> {
        let s = s.clone();
        self.run(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO sandboxes
                     (id, backend, user, namespace, status, created_at, expires_at, profile)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.id,
                    s.backend,
                    s.user,
                    s.namespace,
                    s.status.as_str(),
                    millis(s.created_at),
                    s.expires_at.map(millis),
                    s.profile
                ],
            )
        })
        .await
        .map(drop)
    }

    pub async fn end_sandbox(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        let now = millis(Utc::now());
        self.run(move |c| {
            c.execute(
                "UPDATE sandboxes SET status = 'terminated', ended_at = ?2
                 WHERE id = ?1 AND status != 'terminated'",
                params![id, now],
            )
        })
        .await
        .map(drop)
    }

    /// Records that a sandbox is to be removed, before the backend is asked to: a removal that
    /// fails leaves it `ending` (the reconcile retries it), never `terminated`.
    pub async fn mark_sandbox_ending(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.run(move |c| {
            c.execute(
                "UPDATE sandboxes SET status = 'ending' WHERE id = ?1 AND status != 'terminated'",
                [id],
            )
        })
        .await
        .map(drop)
    }

    /// Records when sandbox `id` reaches its maximum lifetime (counted from when it became its
    /// user's), so that a restart keeps the deadline.
    pub async fn set_sandbox_expiry(&self, id: &str, expires_at: DateTime<Utc>) -> Result<()> {
        let id = id.to_string();
        self.run(move |c| {
            c.execute(
                "UPDATE sandboxes SET expires_at = ?2 WHERE id = ?1",
                params![id, millis(expires_at)],
            )
        })
        .await
        .map(drop)
    }

    /// Gives a sandbox record a new id (a container known by its name before ids were
    /// container IDs), with its sessions.
    pub async fn rename_sandbox(&self, old: &str, new: &str) -> Result<()> {
        let (old, new) = (old.to_string(), new.to_string());
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute("UPDATE sandboxes SET id = ?2 WHERE id = ?1", params![old, new])?;
            tx.execute(
                "UPDATE sessions SET sandbox_id = ?2 WHERE sandbox_id = ?1",
                params![old, new],
            )?;
            tx.commit()
        })
        .await
    }

    /// The sandboxes of `backend` not recorded as ended (warm ones included).
    pub async fn live_sandboxes(&self, backend: &str) -> Result<Vec<SandboxRecord>> {
        let backend = backend.to_string();
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, backend, user, namespace, status, created_at, expires_at, profile
                 FROM sandboxes WHERE backend = ?1 AND status != 'terminated' ORDER BY created_at",
            )?;
            let rows = stmt.query_map([backend], |r| {
                Ok(SandboxRecord {
                    id: r.get(0)?,
                    backend: r.get(1)?,
                    user: r.get(2)?,
                    namespace: r.get(3)?,
                    status: SandboxStatus::parse(&r.get::<_, String>(4)?),
                    created_at: from_millis(r.get(5)?),
                    expires_at: r.get::<_, Option<i64>>(6)?.map(from_millis),
                    profile: r.get(7)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Binds one warm sandbox of `backend` in `namespace` with `profile`, among `candidates`,
    /// to `user`; returns its id. The update is the decision: two claims never get the same
    /// sandbox.
    pub async fn claim_warm_sandbox(
        &self,
        backend: &str,
        (namespace, profile): (&str, &str),
        user: &str,
        candidates: Vec<String>,
    ) -> Result<Option<String>> {
        let (backend, user) = (backend.to_string(), user.to_string());
        let (namespace, profile) = (namespace.to_string(), profile.to_string());
        self.run(move |c| {
            let tx = c.transaction()?;
            let mut claimed = None;
            for id in &candidates {
                let changed = tx.execute(
                    "UPDATE sandboxes SET status = 'running', user = ?4
                     WHERE id = ?1 AND backend = ?2 AND namespace = ?3 AND profile = ?5
                       AND status = 'warm'",
                    params![id, backend, namespace, user, profile],
                )?;
                if changed == 1 {
                    claimed = Some(id.clone());
                    break;
                }
            }
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn session_rows_round_trip_and_end_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).unwrap();
        let now = Utc::now();
        let record = SessionRecord {
            id: "s1".into(),
            user: "alice'; DROP TABLE sessions; --".into(),
            namespace: "default".into(),
            profile: "default".into(),
            sandbox_id: "sb1".into(),
            status: SessionStatus::Pending,
            context: BTreeMap::from([("run_id".to_string(), "r-\"1\"".to_string())]),
            created_at: now,
            last_active: now,
            expires_at: now,
            exit_code: None,
            end_reason: None,
            ended_at: None,
        };
        store.insert_session(&record).await.unwrap();
        store.end_session("s1", SessionStatus::Terminated, Some(3), "exited").await.unwrap();
        store.end_session("s1", SessionStatus::Failed, None, "later").await.unwrap();
        let got = store.get_session("s1").await.unwrap().unwrap();
        assert_eq!(got.user, record.user);
        assert_eq!(got.context, record.context);
        assert_eq!(got.status, SessionStatus::Terminated);
        assert_eq!(got.exit_code, Some(3));
        assert_eq!(got.end_reason.as_deref(), Some("exited"));
        assert!(got.ended_at.is_some_and(|at| at >= now - chrono::Duration::seconds(1)), "{got:?}");
        assert_eq!(store.list_sessions(Some("bob"), 10).await.unwrap().len(), 0);
        assert_eq!(store.list_sessions(None, 10).await.unwrap().len(), 1);
    }

    /// A running session stays listed behind any number of newer ended ones, and pruning
    /// removes only ended sessions older than the cut.
    #[tokio::test]
    async fn live_sessions_are_listed_behind_many_ended_ones_and_pruning_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).unwrap();
        let start = Utc::now() - chrono::Duration::hours(1);
        let record = |id: String, at: DateTime<Utc>| SessionRecord {
            id,
            user: "alice".into(),
            namespace: "default".into(),
            profile: "default".into(),
            sandbox_id: "sb".into(),
            status: SessionStatus::Running,
            context: BTreeMap::new(),
            created_at: at,
            last_active: at,
            expires_at: at,
            exit_code: None,
            end_reason: None,
            ended_at: None,
        };
        store.insert_session(&record("live".into(), start)).await.unwrap();
        for i in 0..600 {
            let id = format!("ended-{i}");
            let at = start + chrono::Duration::seconds(i + 1);
            store.insert_session(&record(id.clone(), at)).await.unwrap();
            store.end_session(&id, SessionStatus::Terminated, Some(0), "exited").await.unwrap();
        }
        let listed = store.list_sessions(Some("alice"), 500).await.unwrap();
        assert_eq!(listed.len(), 501);
        assert!(listed.iter().any(|r| r.id == "live" && r.status.is_live()));
        assert_eq!(listed[0].id, "ended-599", "newest first");
        let only_live = store.list_sessions(Some("alice"), 0).await.unwrap();
        assert_eq!(only_live.len(), 1);

        assert_eq!(store.prune_sessions(Utc::now() - chrono::Duration::hours(1)).await.unwrap(), 0);
        assert_eq!(
            store.prune_sessions(Utc::now() + chrono::Duration::seconds(1)).await.unwrap(),
            600
        );
        let left = store.list_sessions(None, 500).await.unwrap();
        assert_eq!(left.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["live"]);
    }
}
