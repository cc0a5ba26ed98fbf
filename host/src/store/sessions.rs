//! Server-side sessions. The client holds a 256-bit random token; the database holds its
//! SHA-256. (A fast hash is right here: the token is uniformly random, so there is nothing to
//! guess; argon2 on every request would cost each API call 19 MiB.)

use super::{Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// From user name and password: the full portal.
    Full,
    /// From a passcode or questions: short-lived, for resetting one's own passwords only.
    Reset,
}

impl SessionKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Reset => "reset",
        }
    }
    fn parse(s: &str) -> Self {
        if s == "full" {
            Self::Full
        } else {
            Self::Reset
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub person_uid: String,
    pub method: String,
    pub kind: SessionKind,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// Opens a session; returns the token (shown to the client once) and its expiry.
    pub async fn create_session(
        &self,
        person_uid: &str,
        method: &str,
        kind: SessionKind,
        lifetime: i64,
    ) -> Result<(String, i64), StoreError> {
        let token = crate::security::random_token();
        let now = self.now();
        let expires_at = now + lifetime;
        sqlx::query(
            "INSERT INTO prp_session (token_hash, person_uid, method, kind, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(crate::security::token_digest(&token))
        .bind(person_uid)
        .bind(method)
        .bind(kind.name())
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok((token, expires_at))
    }

    /// The live session a token stands for.
    pub async fn session(&self, token: &str) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(
            "SELECT person_uid, method, kind, created_at, expires_at FROM prp_session
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(crate::security::token_digest(token))
        .bind(self.now())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Session {
                person_uid: r.try_get("person_uid")?,
                method: r.try_get("method")?,
                kind: SessionKind::parse(&r.try_get::<String, _>("kind")?),
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}
