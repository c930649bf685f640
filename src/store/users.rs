//! Local users (mode `local`) and login sessions (the `kterm_session` cookie, every mode).
//!
//! Invariants: a password is only ever stored as its argon2id PHC string, and a cookie token
//! only as its SHA-256 (hex), so a copy of the database lets nobody log in. Changing a password
//! or disabling a user deletes that user's login sessions. A user holds at most
//! [`MAX_LOGIN_SESSIONS_PER_USER`] login sessions.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

use super::records::{from_millis, millis};
use super::Store;
use crate::error::Result;

/// A row of `users`.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

/// A row of `login_sessions`: who a cookie stands for, until when.
#[derive(Debug, Clone)]
pub struct LoginSessionRecord {
    /// SHA-256 (hex) of the cookie's token.
    pub token_hash: String,
    pub user: String,
    /// The auth mode that issued it (`none`, `token`, `local`, `proxy`); another mode refuses it.
    pub method: String,
    /// What the login proved, to re-check later: a bearer token's SHA-256, else empty.
    pub credential: String,
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// For `local` logins: whether the user is still present and enabled (joined from `users`).
    pub user_enabled: bool,
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: row.get("name")?,
        password_hash: row.get("password_hash")?,
        disabled: row.get("disabled")?,
        created_at: from_millis(row.get("created_at")?),
        last_login: row.get::<_, Option<i64>>("last_login")?.map(from_millis),
    })
}

fn login_from_row(row: &Row<'_>) -> rusqlite::Result<LoginSessionRecord> {
    let groups: String = row.get("groups")?;
    Ok(LoginSessionRecord {
        token_hash: row.get("token_hash")?,
        user: row.get("user")?,
        method: row.get("method")?,
        credential: row.get("credential")?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
        created_at: from_millis(row.get("created_at")?),
        expires_at: from_millis(row.get("expires_at")?),
        user_enabled: row.get("user_enabled")?,
    })
}

/// Login sessions one user may hold; a new login beyond this ends their oldest.
pub const MAX_LOGIN_SESSIONS_PER_USER: usize = 100;

impl Store {
    /// Adds a user; `false` if the name is taken.
    pub async fn insert_user(&self, name: &str, password_hash: &str) -> Result<bool> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        let now = millis(Utc::now());
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO users (name, password_hash, created_at, password_changed_at)
                 VALUES (?1, ?2, ?3, ?3)",
                params![name, hash, now],
            )
        })
        .await
        .map(|n| n == 1)
    }

    /// Replaces a user's password and ends their login sessions; `false` if there is no such user.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        let now = millis(Utc::now());
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE name = ?1",
                params![name, hash, now],
            )?;
            tx.execute("DELETE FROM login_sessions WHERE user = ?1 AND method = 'local'", [&name])?;
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }

    /// Disables or enables a user; disabling ends their login sessions. `false` if unknown.
    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        let name = name.to_string();
        self.run(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE users SET disabled = ?2 WHERE name = ?1",
                params![name, disabled],
            )?;
            if disabled {
                tx.execute("DELETE FROM login_sessions WHERE user = ?1", [&name])?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let name = name.to_string();
        self.run(move |c| {
            c.query_row("SELECT * FROM users WHERE name = ?1", [name], user_from_row).optional()
        })
        .await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.run(|c| {
            let mut stmt = c.prepare("SELECT * FROM users ORDER BY name")?;
            let rows = stmt.query_map([], user_from_row)?;
            rows.collect()
        })
        .await
    }

    pub async fn record_login(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        let now = millis(Utc::now());
        self.run(move |c| {
            c.execute("UPDATE users SET last_login = ?2 WHERE name = ?1", params![name, now])
        })
        .await
        .map(drop)
    }

    pub async fn insert_login_session(&self, s: &LoginSessionRecord) -> Result<()> {
        let s = s.clone();
        let groups = serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into());
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO login_sessions
                     (token_hash, user, method, credential, groups, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.token_hash,
                    s.user,
                    s.method,
                    s.credential,
                    groups,
                    millis(s.created_at),
                    millis(s.expires_at)
                ],
            )?;
            // Logging in in a loop cannot grow the table without bound.
            tx.execute(
                "DELETE FROM login_sessions WHERE user = ?1 AND token_hash NOT IN
                     (SELECT token_hash FROM login_sessions WHERE user = ?1
                      ORDER BY created_at DESC, rowid DESC LIMIT ?2)",
                params![s.user, MAX_LOGIN_SESSIONS_PER_USER as i64],
            )?;
            tx.commit()
        })
        .await
    }

    /// The unexpired login session whose token hashes to `token_hash`.
    pub async fn get_login_session(&self, token_hash: &str) -> Result<Option<LoginSessionRecord>> {
        let found = self.get_login_sessions(vec![token_hash.to_string()]).await?;
        Ok(found.into_iter().next())
    }

    /// The unexpired login sessions among `token_hashes` (those gone or expired are absent).
    pub async fn get_login_sessions(
        &self,
        token_hashes: Vec<String>,
    ) -> Result<Vec<LoginSessionRecord>> {
        let now = millis(Utc::now());
        self.run(move |c| {
            let mut found = Vec::new();
            for batch in token_hashes.chunks(500) {
                let marks = vec!["?"; batch.len()].join(",");
                let mut stmt = c.prepare(&format!(
                    "SELECT s.*, (u.name IS NOT NULL AND u.disabled = 0) AS user_enabled
                     FROM login_sessions s LEFT JOIN users u ON u.name = s.user
                     WHERE s.expires_at > ? AND s.token_hash IN ({marks})"
                ))?;
                let params = std::iter::once(&now as &dyn rusqlite::ToSql)
                    .chain(batch.iter().map(|h| h as &dyn rusqlite::ToSql));
                let rows = stmt.query_map(rusqlite::params_from_iter(params), login_from_row)?;
                for row in rows {
                    found.push(row?);
                }
            }
            Ok(found)
        })
        .await
    }

    pub async fn delete_login_session(&self, token_hash: &str) -> Result<()> {
        let token_hash = token_hash.to_string();
        self.run(move |c| {
            c.execute("DELETE FROM login_sessions WHERE token_hash = ?1", [token_hash])
        })
        .await
        .map(drop)
    }

    /// Deletes expired login sessions; returns how many.
    pub async fn delete_expired_login_sessions(&self) -> Result<usize> {
        let now = millis(Utc::now());
        self.run(move |c| c.execute("DELETE FROM login_sessions WHERE expires_at <= ?1", [now]))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_and_login_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).unwrap();
        let name = "o'brien\"; DROP TABLE users; --";
        assert!(store.insert_user(name, "$argon2id$x").await.unwrap());
        assert!(!store.insert_user(name, "$argon2id$y").await.unwrap());
        let now = Utc::now();
        let session = LoginSessionRecord {
            token_hash: "h1".into(),
            user: name.into(),
            method: "local".into(),
            credential: String::new(),
            groups: vec!["g".into()],
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            user_enabled: true,
        };
        store.insert_login_session(&session).await.unwrap();
        let got = store.get_login_session("h1").await.unwrap().unwrap();
        assert_eq!((got.user.as_str(), got.user_enabled), (name, true));
        assert_eq!(got.groups, vec!["g".to_string()]);

        assert!(store.set_user_disabled(name, true).await.unwrap());
        assert!(store.get_login_session("h1").await.unwrap().is_none(), "disabling logs out");

        let expired = LoginSessionRecord {
            token_hash: "h2".into(),
            expires_at: now - chrono::Duration::seconds(1),
            ..session
        };
        store.insert_login_session(&expired).await.unwrap();
        assert!(store.get_login_session("h2").await.unwrap().is_none());
        assert_eq!(store.delete_expired_login_sessions().await.unwrap(), 1);
        assert_eq!(store.list_users().await.unwrap()[0].name, name);
    }
}
