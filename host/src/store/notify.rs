//! The notification outbox as the delivery worker sees it: rows are claimed atomically (so
//! several servers on one database never send the same message at once), then marked
//! delivered, failed (with the time of the next attempt) or undeliverable.

use super::identity::{is_identifier, quote};
use super::{Dialect, Store, StoreError};
use sqlx::Row;

/// A message claimed for delivery.
#[derive(Clone)]
pub struct OutboxMessage {
    pub id: i64,
    pub created_at: i64,
    pub recipient_uid: String,
    pub kind: String,
    /// The subject and body stored when the event happened (used for rows without `data`).
    pub subject: String,
    pub body: String,
    /// The second half of a four-eyes passcode; `None` once purged.
    pub secret: Option<String>,
    /// The event's facts as JSON.
    pub data: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("recipient_uid", &self.recipient_uid)
            .field("kind", &self.kind)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Where a row of the outbox stands (for operators and tests; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxState {
    pub id: i64,
    pub kind: String,
    pub attempts: i64,
    pub delivered_at: Option<i64>,
    pub undeliverable_at: Option<i64>,
    pub message_id: Option<String>,
    pub last_error: Option<String>,
    /// Whether the row still holds a secret (a passcode half).
    pub has_secret: bool,
}

/// Where a message of the outbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not delivered yet, and still to be tried (its attempts so far may have failed).
    Pending,
    /// Accepted by the SMTP server.
    Sent,
    /// Given up: undeliverable, never tried again.
    Failed,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    /// The SQL condition of the rows in this state.
    fn condition(self) -> &'static str {
        match self {
            Self::Pending => "(delivered_at IS NULL AND undeliverable_at IS NULL)",
            Self::Sent => "(delivered_at IS NOT NULL)",
            Self::Failed => "(delivered_at IS NULL AND undeliverable_at IS NOT NULL)",
        }
    }
}

/// A row of the outbox as operators see it (`prp-host outbox`).
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// The message; its `secret` only when it was asked for, else `None`.
    pub message: OutboxMessage,
    /// Whether the row holds a secret (a passcode half), asked for or not.
    pub has_secret: bool,
    /// When the next attempt may start (a row never tried: when it was queued, or 0).
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub undeliverable_at: Option<i64>,
    /// Why the last attempt failed, or why it is undeliverable (never a secret).
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    /// The worker attempting it right now, and until when its claim holds.
    pub claimed_by: Option<String>,
    pub claimed_until: Option<i64>,
}

/// The outbox's columns as [`entry_from`] reads them; a row's secret only `with_secret`.
fn outbox_select(with_secret: bool) -> String {
    let secret = if with_secret {
        "secret"
    } else {
        "CAST(NULL AS TEXT)"
    };
    format!(
        "SELECT id, created_at, recipient_uid, kind, subject, body, {secret} AS secret, data,
                attempts, next_attempt_at, delivered_at, undeliverable_at, last_error,
                message_id, claimed_by, claimed_until,
                CAST(CASE WHEN secret IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_secret
         FROM prp_notification_outbox"
    )
}

/// The message's columns of an outbox row (every query that reads messages names them).
fn message_from(r: &sqlx::any::AnyRow) -> Result<OutboxMessage, StoreError> {
    Ok(OutboxMessage {
        id: r.try_get("id")?,
        created_at: r.try_get("created_at")?,
        recipient_uid: r.try_get("recipient_uid")?,
        kind: r.try_get("kind")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        secret: r.try_get("secret")?,
        data: r.try_get("data")?,
        attempts: r.try_get("attempts")?,
    })
}

/// A row of [`outbox_select`].
fn entry_from(r: &sqlx::any::AnyRow) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        message: message_from(r)?,
        has_secret: r.try_get::<i64, _>("has_secret")? != 0,
        next_attempt_at: r.try_get("next_attempt_at")?,
        delivered_at: r.try_get("delivered_at")?,
        undeliverable_at: r.try_get("undeliverable_at")?,
        last_error: r.try_get("last_error")?,
        message_id: r.try_get("message_id")?,
        claimed_by: r.try_get("claimed_by")?,
        claimed_until: r.try_get("claimed_until")?,
    })
}

impl From<OutboxEntry> for OutboxState {
    fn from(e: OutboxEntry) -> Self {
        Self {
            id: e.message.id,
            kind: e.message.kind,
            attempts: e.message.attempts,
            delivered_at: e.delivered_at,
            undeliverable_at: e.undeliverable_at,
            message_id: e.message_id,
            last_error: e.last_error,
            has_secret: e.has_secret,
        }
    }
}

impl OutboxEntry {
    pub fn state(&self) -> DeliveryState {
        if self.delivered_at.is_some() {
            DeliveryState::Sent
        } else if self.undeliverable_at.is_some() {
            DeliveryState::Failed
        } else {
            DeliveryState::Pending
        }
    }
}

/// What the worker needs to know of a recipient, from `Person`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    pub first_name: String,
    pub last_name: String,
    pub central_account: String,
    /// `None`: the column is missing or the value is empty.
    pub email: Option<String>,
    pub language: Option<String>,
}

impl Store {
    /// Claims up to `limit` messages that are due and held by no live claim, for `worker`
    /// until `lease` seconds from now, counting an attempt for each. One statement: on
    /// PostgreSQL with `FOR UPDATE SKIP LOCKED`, on SQLite a single write.
    pub async fn claim_notifications(
        &self,
        worker: &str,
        lease: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let now = self.now();
        let lock = match self.dialect() {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let due = "delivered_at IS NULL AND undeliverable_at IS NULL AND next_attempt_at <= $3
                   AND (claimed_until IS NULL OR claimed_until <= $3)";
        let sql = format!(
            "UPDATE prp_notification_outbox
             SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1
             WHERE {due} AND id IN (
                 SELECT id FROM prp_notification_outbox WHERE {due} ORDER BY id LIMIT $4 {lock})
             RETURNING id, created_at, recipient_uid, kind, subject, body, secret, data, attempts"
        );
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(now + lease)
            .bind(now)
            .bind(limit)
            .fetch_all(self.db())
            .await?;
        let mut out = rows
            .iter()
            .map(message_from)
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// Marks a message delivered (the SMTP server accepted it) with the Message-ID it was sent
    /// with, and purges its secret in the same statement.
    pub async fn mark_notification_delivered(
        &self,
        id: i64,
        message_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE prp_notification_outbox
             SET delivered_at = $2, message_id = $3, secret = NULL, claimed_by = NULL,
                 claimed_until = NULL, last_error = NULL
             WHERE id = $1 AND delivered_at IS NULL",
        )
        .bind(id)
        .bind(self.now())
        .bind(message_id)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Records a failed attempt of `worker` and when the next may start.
    pub async fn mark_notification_failed(
        &self,
        id: i64,
        worker: &str,
        next_attempt_at: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE prp_notification_outbox
             SET next_attempt_at = $3, last_error = $4, claimed_by = NULL, claimed_until = NULL
             WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL",
        )
        .bind(id)
        .bind(worker)
        .bind(next_attempt_at)
        .bind(error)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Gives a claimed message back untried (its attempt not counted).
    pub async fn release_notification(&self, id: i64, worker: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE prp_notification_outbox
             SET claimed_by = NULL, claimed_until = NULL, attempts = attempts - 1
             WHERE id = $1 AND claimed_by = $2 AND delivered_at IS NULL",
        )
        .bind(id)
        .bind(worker)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Marks a message as never to be delivered (no address, refused, withdrawn), purging its
    /// secret.
    pub async fn mark_notification_undeliverable(
        &self,
        id: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE prp_notification_outbox
             SET undeliverable_at = $2, last_error = $3, secret = NULL, claimed_by = NULL,
                 claimed_until = NULL
             WHERE id = $1 AND delivered_at IS NULL",
        )
        .bind(id)
        .bind(self.now())
        .bind(reason)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The outbox rows of a recipient, oldest first.
    pub async fn outbox_states(&self, recipient_uid: &str) -> Result<Vec<OutboxState>, StoreError> {
        let sql = format!(
            "{} WHERE recipient_uid = $1 ORDER BY id",
            outbox_select(false)
        );
        let rows = sqlx::query(&sql)
            .bind(recipient_uid)
            .fetch_all(self.db())
            .await?;
        rows.iter()
            .map(|r| entry_from(r).map(OutboxState::from))
            .collect()
    }

    /// The latest `limit` rows of the outbox in one of `states` (all when empty), oldest first.
    /// A row's secret (a passcode half) is read only `with_secrets`.
    pub async fn outbox(
        &self,
        states: &[DeliveryState],
        limit: i64,
        with_secrets: bool,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let filter = if states.is_empty() {
            "1 = 1".to_owned()
        } else {
            let parts: Vec<&str> = states.iter().map(|s| s.condition()).collect();
            parts.join(" OR ")
        };
        let sql = format!(
            "{} WHERE {filter} ORDER BY id DESC LIMIT $1",
            outbox_select(with_secrets)
        );
        let rows = sqlx::query(&sql)
            .bind(limit.max(0))
            .fetch_all(self.db())
            .await?;
        let mut out = rows.iter().map(entry_from).collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// How many rows of the outbox are in each state.
    pub async fn outbox_counts(&self) -> Result<Vec<(DeliveryState, i64)>, StoreError> {
        let mut out = Vec::new();
        for state in [
            DeliveryState::Pending,
            DeliveryState::Failed,
            DeliveryState::Sent,
        ] {
            let sql = format!(
                "SELECT COUNT(*) FROM prp_notification_outbox WHERE {}",
                state.condition()
            );
            let n: i64 = sqlx::query_scalar(&sql).fetch_one(self.db()).await?;
            out.push((state, n));
        }
        Ok(out)
    }

    /// The actual name of a `Person` column (matched regardless of ASCII case), if it exists
    /// and may be quoted into SQL.
    pub async fn person_column(&self, column: &str) -> Result<Option<String>, StoreError> {
        if !is_identifier(column) {
            return Ok(None);
        }
        let d = self.dialect();
        let Some(table) = d.table_name(self, "Person").await? else {
            return Ok(None);
        };
        Ok(d.columns(self, &table)
            .await?
            .into_iter()
            .map(|(name, _, _)| name)
            .find(|name| name.eq_ignore_ascii_case(column) && is_identifier(name)))
    }

    /// A recipient's name, address and language; `None` when the person doesn't exist. The
    /// columns were confirmed by [`Store::person_column`].
    pub async fn notification_recipient(
        &self,
        uid: &str,
        email_column: Option<&str>,
        language_column: Option<&str>,
    ) -> Result<Option<Recipient>, StoreError> {
        let col = |c: Option<&str>| match c {
            Some(c) if is_identifier(c) => format!("CAST({} AS TEXT)", quote(c)),
            _ => "CAST(NULL AS TEXT)".to_owned(),
        };
        let sql = format!(
            "SELECT \"FirstName\" AS first_name, \"LastName\" AS last_name,
                    \"CentralAccount\" AS central_account, {} AS email, {} AS language
             FROM \"Person\" WHERE \"UID_Person\" = $1",
            col(email_column),
            col(language_column)
        );
        let Some(r) = sqlx::query(&sql)
            .bind(uid)
            .fetch_optional(self.db())
            .await?
        else {
            return Ok(None);
        };
        let text = |name: &str| -> Result<Option<String>, StoreError> {
            Ok(r.try_get::<Option<String>, _>(name)?
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()))
        };
        Ok(Some(Recipient {
            first_name: text("first_name")?.unwrap_or_default(),
            last_name: text("last_name")?.unwrap_or_default(),
            central_account: text("central_account")?.unwrap_or_default(),
            email: text("email")?,
            language: text("language")?,
        }))
    }

    /// The person and expiry of the passcode whose second half is the outbox row `id`, while
    /// that passcode is outstanding.
    pub async fn passcode_of_half(&self, id: i64) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT person_uid, expires_at FROM prp_passcode WHERE half_notification_id = $1",
        )
        .bind(id)
        .fetch_optional(self.db())
        .await?;
        row.map(|r| Ok((r.try_get("person_uid")?, r.try_get("expires_at")?)))
            .transpose()
    }
}
