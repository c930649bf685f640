//! The state store: the only owner of rusqlite.
//!
//! One SQLite file in WAL mode with a `busy_timeout`, schema versions kept in `PRAGMA
//! user_version` and migrated in [`Store::open`] before the port is bound. Every query runs on
//! tokio's blocking pool through [`Store::run`], never on the async runtime's threads. Nothing
//! outside this module sees SQL.

mod audit;
mod backup;
mod records;
mod users;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};

pub use audit::{AuditFilter, AuditRecord};
pub use backup::backup;
pub use records::{SandboxRecord, SandboxStatus, SessionRecord, SessionStatus};
pub use users::{LoginSessionRecord, UserRecord};

/// Migrations in order; `user_version` is the number applied. Append, never edit.
const MIGRATIONS: &[&str] = &[
    // 1: instance identity, sandboxes, sessions.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sandboxes (
        id          TEXT PRIMARY KEY,
        backend     TEXT NOT NULL,
        user        TEXT,
        namespace   TEXT NOT NULL,
        status      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        ended_at    INTEGER
    );
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        user        TEXT NOT NULL,
        namespace   TEXT NOT NULL,
        sandbox_id  TEXT NOT NULL,
        status      TEXT NOT NULL,
        context     TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        last_active INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        ended_at    INTEGER,
        exit_code   INTEGER,
        end_reason  TEXT
    );
    CREATE INDEX sessions_by_user ON sessions (user, status);
    CREATE INDEX sandboxes_by_user ON sandboxes (user, status);
    "#,
    // 2: local users, login sessions (cookies, kept as SHA-256 of the token), the audit log.
    r#"
    CREATE TABLE users (
        name                TEXT PRIMARY KEY,
        password_hash       TEXT NOT NULL,
        disabled            INTEGER NOT NULL DEFAULT 0,
        created_at          INTEGER NOT NULL,
        password_changed_at INTEGER NOT NULL,
        last_login          INTEGER
    );
    CREATE TABLE login_sessions (
        token_hash  TEXT PRIMARY KEY,
        user        TEXT NOT NULL,
        method      TEXT NOT NULL,
        credential  TEXT NOT NULL,
        groups      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX login_sessions_by_user ON login_sessions (user);
    CREATE INDEX login_sessions_by_expiry ON login_sessions (expires_at);
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          INTEGER NOT NULL,
        action      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        user        TEXT,
        client      TEXT,
        session_id  TEXT,
        detail      TEXT NOT NULL
    );
    CREATE INDEX audit_by_at ON audit (at);
    CREATE INDEX audit_by_user ON audit (user, id);
    "#,
    // 3: profiles: a sandbox is per (user, namespace, profile).
    r#"
    ALTER TABLE sandboxes ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE sessions ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
    "#,
];

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    instance_id: Arc<str>,
}

impl Store {
    /// Opens (creating) the database, applies pending migrations, and loads the instance id.
    /// Blocking: call it before the runtime serves requests.
    pub fn open(path: &Path) -> Result<Store> {
        create_private(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL, not NORMAL: with NORMAL a commit is not synced until the next checkpoint, so a
        // filesystem that goes read-only (or a power cut) can take recent commits with it, and
        // a young database whole, instance id included (kterm then never touches its old
        // containers again). kterm writes rarely (session start and end, batched activity),
        // so one fsync per commit costs nothing users see.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        let instance_id = load_instance_id(&conn)?;
        // The schema and the instance id into the main file now, not only in the WAL.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(Store { conn: Arc::new(Mutex::new(conn)), instance_id: instance_id.into() })
    }

    /// This server's identity, kept across restarts; sandboxes carry it as a label.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
        .map_err(Error::from)
    }

    /// A cheap write that proves the store answers and can write (for `/readyz`: a full or
    /// read-only disk makes it fail).
    pub async fn ping(&self) -> Result<()> {
        let now = chrono::Utc::now().timestamp_millis().to_string();
        self.run(move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_probe', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [now],
            )
        })
        .await
        .map(drop)
    }
}

/// Creates the state file 0600 (SQLite gives its `-wal` and `-shm` the file's mode) and the
/// directories kterm makes for it 0700: it holds password hashes and the audit log. An existing
/// file keeps its mode (the server warns when others may read it).
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(Error::Internal(format!(
            "the state store has schema version {applied}, newer than this kterm knows ({}); \
             use a newer kterm or another state.path",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied state store migration");
    }
    Ok(())
}

fn load_instance_id(conn: &Connection) -> Result<String> {
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'instance_id'", [], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    conn.execute("INSERT INTO meta (key, value) VALUES ('instance_id', ?1)", [&id])?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_keep_the_instance_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let first = Store::open(&path).unwrap();
        let id = first.instance_id().to_string();
        drop(first);
        let again = Store::open(&path).unwrap();
        assert_eq!(again.instance_id(), id);
        let conn = again.conn.lock().unwrap();
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len());
        let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
        assert_eq!(synchronous, 2, "FULL: every commit is synced");
        let journal: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(journal, "wal");
    }

    #[test]
    fn a_new_state_file_and_its_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/state/k.db");
        let store = Store::open(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        for suffix in ["-wal", "-shm"] {
            let side = path.with_file_name(format!("k.db{suffix}"));
            assert_eq!(mode(&side), 0o600, "{}", side.display());
        }
        assert_eq!(mode(&dir.path().join("new/state")), 0o700);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        drop(store);
    }
}
