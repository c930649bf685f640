//! The audit log: one row per security-relevant event, newest last, read back in pages.

use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

use super::records::{from_millis, millis};
use super::Store;
use crate::error::Result;

/// A row of `audit`. Every string in it is data as received, never interpreted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub outcome: String,
    pub user: Option<String>,
    pub client: Option<String>,
    pub session_id: Option<String>,
    pub detail: String,
}

/// Which rows to read: newest first, `limit` of them with an id below `before`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub action: Option<String>,
    pub session_id: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.get("id")?,
        at: from_millis(row.get("at")?),
        action: row.get("action")?,
        outcome: row.get("outcome")?,
        user: row.get("user")?,
        client: row.get("client")?,
        session_id: row.get("session_id")?,
        detail: row.get("detail")?,
    })
}

impl Store {
    /// Appends a row; its `id` is assigned here (the given one is ignored).
    pub async fn insert_audit(&self, r: AuditRecord) -> Result<i64> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO audit (at, action, outcome, user, client, session_id, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    millis(r.at),
                    r.action,
                    r.outcome,
                    r.user,
                    r.client,
                    r.session_id,
                    r.detail
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    pub async fn list_audit(&self, f: AuditFilter) -> Result<Vec<AuditRecord>> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT * FROM audit
                 WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR action = ?2)
                   AND (?3 IS NULL OR session_id = ?3) AND (?4 IS NULL OR id < ?4)
                 ORDER BY id DESC LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![f.user, f.action, f.session_id, f.before, f.limit],
                audit_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    /// Deletes rows older than `before`; returns how many.
    pub async fn prune_audit(&self, before: DateTime<Utc>) -> Result<usize> {
        let before = millis(before);
        self.run(move |c| c.execute("DELETE FROM audit WHERE at < ?1", [before])).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn audit_rows_page_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).unwrap();
        for i in 0..5 {
            let row = AuditRecord {
                id: 0,
                at: Utc::now(),
                action: "login".into(),
                outcome: if i % 2 == 0 { "ok" } else { "failed" }.into(),
                user: Some(format!("u{i}'); --")),
                client: None,
                session_id: None,
                detail: "\u{1b}[2J\n".into(),
            };
            store.insert_audit(row).await.unwrap();
        }
        let page = store.list_audit(AuditFilter { limit: 2, ..Default::default() }).await.unwrap();
        assert_eq!(page.len(), 2);
        assert!(page[0].id > page[1].id);
        let next = AuditFilter { limit: 10, before: Some(page[1].id), ..Default::default() };
        assert_eq!(store.list_audit(next).await.unwrap().len(), 3);
        let one = AuditFilter { limit: 10, user: Some("u1'); --".into()), ..Default::default() };
        let rows = store.list_audit(one).await.unwrap();
        assert_eq!((rows.len(), rows[0].detail.as_str()), (1, "\u{1b}[2J\n"));
    }
}
