//! The append-only audit log of every login attempt and credential event. The database refuses
//! updates and deletes (triggers). It never holds a secret: no password, passcode, answer or
//! token is ever passed in.

use super::{Store, StoreError};
use sqlx::Row;

/// One event to record.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent<'a> {
    /// e.g. `login`, `passcode.issued`, `token.rotated`.
    pub event: &'a str,
    /// `success` or `failure`.
    pub outcome: &'a str,
    pub method: Option<&'a str>,
    pub login_name: Option<&'a str>,
    pub person_uid: Option<&'a str>,
    /// The real reason, for operators (the client is told nothing).
    pub reason: Option<&'a str>,
    /// Who did it: `cli:<user>`, a person's uid, or the server.
    pub actor: Option<&'a str>,
    pub remote_addr: Option<&'a str>,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub event: String,
    pub outcome: String,
    pub method: Option<String>,
    pub login_name: Option<String>,
    pub person_uid: Option<String>,
    pub reason: Option<String>,
    pub actor: Option<String>,
}

impl Store {
    pub async fn audit(&self, e: &AuditEvent<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prp_audit (at, event, outcome, method, login_name, person_uid, reason, actor, remote_addr)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(self.now())
        .bind(e.event)
        .bind(e.outcome)
        .bind(e.method)
        .bind(e.login_name)
        .bind(e.person_uid)
        .bind(e.reason)
        .bind(e.actor)
        .bind(e.remote_addr)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The latest `limit` events, newest first.
    pub async fn audit_tail(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, event, outcome, method, login_name, person_uid, reason, actor
             FROM prp_audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    event: r.try_get("event")?,
                    outcome: r.try_get("outcome")?,
                    method: r.try_get("method")?,
                    login_name: r.try_get("login_name")?,
                    person_uid: r.try_get("person_uid")?,
                    reason: r.try_get("reason")?,
                    actor: r.try_get("actor")?,
                })
            })
            .collect()
    }
}
