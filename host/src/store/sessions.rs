//! Server-side sessions. The client holds a 256-bit random token; the database holds its
//! SHA-256. (A fast hash is right here: the token is uniformly random, so there is nothing to
//! guess; argon2 on every request would cost each API call 19 MiB.) Each session also has a
//! CSRF token, stored the same way, that browser requests must echo in `X-CSRF-Token`.

use super::{Store, StoreError};
use sqlx::Row;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// From user name and password: the full portal.
    Full,
    /// From a passcode or questions: short-lived, for one's own passwords and questions only.
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
    pub token_hash: String,
    pub person_uid: String,
    pub method: String,
    pub kind: SessionKind,
    pub created_at: i64,
    pub expires_at: i64,
    csrf_hash: Option<String>,
}

impl Session {
    /// Whether `token` is this session's CSRF token (compared as digests).
    pub fn csrf_matches(&self, token: &str) -> bool {
        self.csrf_hash.as_deref().is_some_and(|h| {
            crate::security::digests_equal(h, &crate::security::token_digest(token))
        })
    }
}

/// A new session's secrets, shown to the client once.
#[derive(Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("token", &"***")
            .field("csrf_token", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl NewSession {
    /// Fresh secrets for a session that ends `lifetime` seconds after `now`.
    fn fresh(now: i64, lifetime: i64) -> Self {
        Self {
            token: crate::security::random_token(),
            csrf_token: crate::security::random_token(),
            expires_at: now + lifetime,
        }
    }

    /// Stores the session (its secrets' digests) for `person_uid`, created at `now`.
    async fn insert<'e>(
        &self,
        executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
        person_uid: &str,
        method: &str,
        kind: SessionKind,
        now: i64,
    ) -> Result<(), StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| insert_session_sql(1));
        self.bind(sqlx::query(&SQL), person_uid, method, kind, now)
            .execute(executor)
            .await?;
        Ok(())
    }

    /// Binds the 7 values of [`insert_session_sql`], in its order.
    fn bind<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        person_uid: &'q str,
        method: &'q str,
        kind: SessionKind,
        now: i64,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        query
            .bind(crate::security::token_digest(&self.token))
            .bind(person_uid)
            .bind(method)
            .bind(kind.name())
            .bind(now)
            .bind(self.expires_at)
            .bind(crate::security::token_digest(&self.csrf_token))
    }
}

/// The `INSERT` of a session, its 7 values bound from `$first` on: the token's digest, the
/// person, the method, the kind, when it was created (and last seen), when it ends, the CSRF
/// token's digest.
fn insert_session_sql(first: usize) -> String {
    let [token, person, method, kind, now, expires, csrf] =
        std::array::from_fn::<usize, 7, _>(|i| first + i);
    format!(
        "INSERT INTO prp_session (token_hash, person_uid, method, kind, created_at, last_seen_at, expires_at, csrf_hash)
         VALUES (${token}, ${person}, ${method}, ${kind}, ${now}, ${now}, ${expires}, ${csrf})"
    )
}

/// The failure counters a granted login starts afresh, since a right secret was given: the
/// name's (`name` and the subjects under it, `name@…`, in every scope, deleted) and the
/// person's (the right secret's [`Settlement`](super::Settlement), when the login deferred it).
#[derive(Debug, Clone, Copy)]
pub struct Afresh<'a> {
    pub name: &'a str,
    pub person: Option<&'a super::Settlement>,
}

impl Store {
    /// Opens a session that ends at `lifetime` seconds from now at the latest.
    pub async fn create_session(
        &self,
        person_uid: &str,
        method: &str,
        kind: SessionKind,
        lifetime: i64,
    ) -> Result<NewSession, StoreError> {
        let now = self.now();
        let session = NewSession::fresh(now, lifetime);
        session
            .insert(self.db(), person_uid, method, kind, now)
            .await?;
        Ok(session)
    }

    /// Opens a session for a granted login that consumed nothing (a password), with what the
    /// grant writes besides: the login's audit record, and the counters it starts afresh
    /// ([`Afresh`]). The counters are cleared and settled only once the record is committed.
    ///
    /// On PostgreSQL the session, the record and the name's counters are one statement: all of
    /// it is written or none; the person's counters are settled after it. On SQLite the session
    /// and the record are two statements in one call, session first, and the name's counters
    /// cleared and the person's settled in a second call. A failure there leaves at most a
    /// session whose token is never handed out (the caller answers `503`), as when
    /// [`Store::create_session`] is followed by a failed audit write; the person's attempt then
    /// stays counted. A failure to clear or settle the counters is logged, and the login stands.
    pub async fn open_session_audited(
        &self,
        person_uid: &str,
        method: &str,
        kind: SessionKind,
        lifetime: i64,
        event: &super::AuditEvent<'_>,
        afresh: Afresh<'_>,
    ) -> Result<NewSession, StoreError> {
        let Afresh {
            name: cleared,
            person: settled,
        } = afresh;
        let now = self.now();
        let session = NewSession::fresh(now, lifetime);
        let event = super::audit::OwnedEvent::from(event);
        match self.dialect() {
            super::Dialect::Postgres => {
                // $1–$3 the counters, $4–$10 the session (its creation time, $8, is the
                // record's time), $11–$18 the record.
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    format!(
                        "WITH cleared AS ({}),\n opened AS ({})\n{}",
                        super::lockout::DELETE_SUBJECT,
                        insert_session_sql(4),
                        super::audit::insert_audit_sql(8, 11, 1)
                    )
                });
                let query = sqlx::query(&SQL)
                    .bind(cleared)
                    .bind(super::lockout::subject_prefix(cleared))
                    .bind(super::LockScope::All.name());
                let query = session.bind(query, person_uid, method, kind, now);
                event.bind(query).execute(self.db()).await?;
                // Apart: a statement that writes several of a person's counters on PostgreSQL
                // could deadlock with another doing the same (see `Store::row_batches`).
                if let Some(settled) = settled {
                    if let Err(e) = self.settle(settled).await {
                        tracing::warn!(
                            "settling the person's counters of a granted login failed: {e}"
                        );
                    }
                }
            }
            super::Dialect::Sqlite => {
                // $1–$7 the session (its creation time, $5, is the record's time), $8–$15
                // the record.
                static SQL: LazyLock<String> = LazyLock::new(|| {
                    format!(
                        "{};\n{}",
                        insert_session_sql(1),
                        super::audit::insert_audit_sql(5, 8, 1)
                    )
                });
                let query = session.bind(sqlx::query(&SQL), person_uid, method, kind, now);
                event.bind(query).execute(self.db()).await?;
                // Then the name's counters, and the person's settled, in one call.
                let mut sql = String::from(super::lockout::DELETE_SUBJECT);
                let mut names = Vec::new();
                let mut person = None;
                if let Some(settled) = settled {
                    let (settle, bound) = settled.sqlite_statement(4);
                    sql = format!("{sql};\n{settle}");
                    person = Some(settled.person_uid.as_str());
                    names = bound;
                }
                let mut query = sqlx::query(&sql)
                    .bind(cleared)
                    .bind(super::lockout::subject_prefix(cleared))
                    .bind(super::LockScope::All.name());
                if let Some(person) = person {
                    query = query.bind(person);
                }
                for name in names {
                    query = query.bind(name);
                }
                if let Err(e) = query.execute(self.db()).await {
                    tracing::warn!("clearing the name's failure counters of a granted login (and settling the person's) failed: {e}");
                }
            }
        }
        Ok(session)
    }

    /// Opens a session like [`Store::create_session`], consuming in the same transaction the
    /// single-use secrets the login used: the passcode only if it is still the very one that
    /// was verified and unexpired (its second half purged from the outbox), the answered
    /// questions. `None` (nothing stored, nothing consumed) when the passcode is gone: another
    /// login used it first, or it was replaced or expired meanwhile. With nothing to consume (a
    /// password login) the session is one statement, not a transaction.
    pub async fn create_session_consuming(
        &self,
        person_uid: &str,
        method: &str,
        kind: SessionKind,
        lifetime: i64,
        consumed: &[super::Consumption],
    ) -> Result<Option<NewSession>, StoreError> {
        if consumed.is_empty() {
            return self
                .create_session(person_uid, method, kind, lifetime)
                .await
                .map(Some);
        }
        let now = self.now();
        let session = NewSession::fresh(now, lifetime);
        let mut tx = self.pool().begin().await?;
        for c in consumed {
            match c {
                super::Consumption::Passcode { person_uid, hash } => {
                    super::secrets::purge_passcode_half(&mut tx, person_uid, Some(hash)).await?;
                    let done = sqlx::query(
                        "DELETE FROM prp_passcode WHERE person_uid = $1 AND hash = $2 AND expires_at > $3",
                    )
                    .bind(person_uid)
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        // Dropping the transaction rolls the purge back.
                        return Ok(None);
                    }
                }
                super::Consumption::Questions { person_uid, ids } => {
                    for id in ids {
                        sqlx::query("DELETE FROM prp_question WHERE person_uid = $1 AND id = $2")
                            .bind(person_uid)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }
        session
            .insert(&mut *tx, person_uid, method, kind, now)
            .await?;
        tx.commit().await?;
        Ok(Some(session))
    }

    /// The live session a token stands for, marking it used now. A session is dead once
    /// revoked, past its absolute end, or idle for more than `idle` seconds.
    pub async fn session(&self, token: &str, idle: i64) -> Result<Option<Session>, StoreError> {
        let now = self.now();
        let row = sqlx::query(
            "UPDATE prp_session SET last_seen_at = $2
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3
             RETURNING token_hash, person_uid, method, kind, created_at, expires_at, csrf_hash",
        )
        .bind(crate::security::token_digest(token))
        .bind(now)
        .bind(now - idle)
        .fetch_optional(self.db())
        .await?;
        row.map(|r| {
            Ok(Session {
                token_hash: r.try_get("token_hash")?,
                person_uid: r.try_get("person_uid")?,
                method: r.try_get("method")?,
                kind: SessionKind::parse(&r.try_get::<String, _>("kind")?),
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                csrf_hash: r.try_get("csrf_hash")?,
            })
        })
        .transpose()
    }

    /// Ends a session (logout).
    pub async fn revoke_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE prp_session SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(())
    }
}
