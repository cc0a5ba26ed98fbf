//! The flows' tables: attempts between steps and enrolled factors. Every change that must hold
//! under concurrency (taking an attempt, accepting a one-time counter, confirming an
//! enrollment) is one statement.

use crate::store::{Store, StoreError};
use sqlx::Row;

/// An attempt as its step found it (the row is gone: each attempt token is taken once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub flow: String,
    pub step: usize,
    pub person_uid: Option<String>,
    pub login_name: String,
    pub full_grant: bool,
}

/// A person's factor row, still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorRow {
    pub method: String,
    pub data: Option<String>,
    pub pending: Option<String>,
    pub enrolled_at: Option<i64>,
}

impl Store {
    /// Stores a new attempt under the digest of its token, expiring after `lifetime` seconds.
    pub async fn insert_attempt(
        &self,
        token_digest: &str,
        attempt: &Attempt,
        lifetime: i64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO prp_login_attempt (id_hash, flow, step, person_uid, login_name, full_grant, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token_digest)
        .bind(&attempt.flow)
        .bind(attempt.step as i64)
        .bind(attempt.person_uid.as_deref())
        .bind(&attempt.login_name)
        .bind(i64::from(attempt.full_grant))
        .bind(now)
        .bind(now + lifetime)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Takes the attempt: deletes it and returns it, in one statement, unless it expired or
    /// another request (on any server) took it first.
    pub async fn take_attempt(&self, token_digest: &str) -> Result<Option<Attempt>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM prp_login_attempt WHERE id_hash = $1 AND expires_at > $2
             RETURNING flow, step, person_uid, login_name, full_grant",
        )
        .bind(token_digest)
        .bind(self.now())
        .fetch_optional(self.db())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Attempt {
            flow: row.try_get("flow")?,
            step: usize::try_from(row.try_get::<i64, _>("step")?).unwrap_or(usize::MAX),
            person_uid: row.try_get("person_uid")?,
            login_name: row.try_get("login_name")?,
            full_grant: row.try_get::<i64, _>("full_grant")? == 1,
        }))
    }

    /// Deletes expired attempts; returns how many.
    pub async fn purge_expired_attempts(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM prp_login_attempt WHERE expires_at <= $1")
            .bind(self.now())
            .execute(self.db())
            .await?;
        Ok(done.rows_affected())
    }

    /// Every factor row of a person.
    pub async fn factors(&self, person_uid: &str) -> Result<Vec<FactorRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT method, data, pending, enrolled_at FROM prp_factor WHERE person_uid = $1 ORDER BY method",
        )
        .bind(person_uid)
        .fetch_all(self.db())
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(FactorRow {
                    method: r.try_get("method")?,
                    data: r.try_get("data")?,
                    pending: r.try_get("pending")?,
                    enrolled_at: r.try_get("enrolled_at")?,
                })
            })
            .collect()
    }

    /// Whether the person has an active (confirmed) factor: a full session then needs one of
    /// them passed in the same attempt.
    pub async fn has_active_factor(&self, person_uid: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS active FROM prp_factor WHERE person_uid = $1 AND data IS NOT NULL LIMIT 1",
        )
        .bind(person_uid)
        .fetch_optional(self.db())
        .await?;
        Ok(row.is_some())
    }

    /// One factor row of a person.
    pub async fn factor(
        &self,
        person_uid: &str,
        method: &str,
    ) -> Result<Option<FactorRow>, StoreError> {
        Ok(self
            .factors(person_uid)
            .await?
            .into_iter()
            .find(|f| f.method == method))
    }

    /// Stores an enrollment to confirm (replacing an earlier one; an active factor stays).
    pub async fn set_pending_factor(
        &self,
        person_uid: &str,
        method: &str,
        sealed: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prp_factor (person_uid, method, pending, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (person_uid, method) DO UPDATE SET pending = $3, updated_at = $4",
        )
        .bind(person_uid)
        .bind(method)
        .bind(sealed)
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Activates the pending enrollment that was confirmed, if it is still the one pending
    /// (one statement), and records the counter the confirming code used. False when another
    /// enrollment replaced it meanwhile.
    pub async fn confirm_factor(
        &self,
        person_uid: &str,
        method: &str,
        sealed_pending: &str,
        used: Option<i64>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let done = sqlx::query(
            "UPDATE prp_factor SET data = pending, pending = NULL, last_step = $4, enrolled_at = $5, updated_at = $5
             WHERE person_uid = $1 AND method = $2 AND pending = $3",
        )
        .bind(person_uid)
        .bind(method)
        .bind(sealed_pending)
        .bind(used)
        .bind(now)
        .execute(self.db())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Accepts a one-time counter for the person's factor only if it is greater than the last
    /// one accepted, in one statement shared by every server: a code is accepted once.
    pub async fn accept_counter(
        &self,
        person_uid: &str,
        method: &str,
        counter: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE prp_factor SET last_step = $3, updated_at = $4
             WHERE person_uid = $1 AND method = $2 AND data IS NOT NULL
               AND (last_step IS NULL OR last_step < $3)",
        )
        .bind(person_uid)
        .bind(method)
        .bind(counter)
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes a person's factor (active and pending). True when there was one.
    pub async fn delete_factor(&self, person_uid: &str, method: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM prp_factor WHERE person_uid = $1 AND method = $2")
            .bind(person_uid)
            .bind(method)
            .execute(self.db())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
