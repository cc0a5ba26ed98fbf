//! Passcodes, password questions, stored credentials and server keys: only hashes are stored,
//! and each consuming or counting update is one atomic statement. Hashing happens outside,
//! in `security`, so no database transaction waits on an argon2 computation.

use super::{Store, StoreError};
use sqlx::Row;

/// A person's question as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionRow {
    pub id: String,
    pub question: String,
    pub answer_hash: String,
    pub sort_order: i64,
    pub failures: i64,
    pub locked: bool,
}

/// The result of presenting a passcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasscodeOutcome {
    /// Right, and this call consumed it: nobody else can use it.
    Consumed,
    /// Right, but another login consumed (or a new issue replaced) it first.
    AlreadyUsed,
    Wrong,
    /// Wrong, and that was the last allowed guess: it is gone.
    WrongAndInvalidated,
    Expired,
    NoneIssued,
}

/// The result of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerOutcome {
    Right,
    Wrong,
    /// Wrong, and the question is now locked.
    WrongAndLocked,
}

/// A single-use secret a login used, to be consumed only when the login is granted: in the
/// transaction that opens its session (see `Store::create_session_consuming`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumption {
    /// The passcode with this hash (the one that was verified, no other).
    Passcode { person_uid: String, hash: String },
    /// Questions answered in the login (`InvalidateUsedQuery`).
    Questions {
        person_uid: String,
        ids: Vec<String>,
    },
}

/// A stored password hash, and whether it is of the password's NFKC form (all hashes the
/// portal stores now) or of the password as typed (hashes stored before it normalised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPassword {
    pub hash: String,
    pub normalized: bool,
}

/// Clears the second half of a four-eyes passcode from the notification outbox, for the
/// person's passcode (only the one with `hash`, when given). Part of the caller's transaction.
pub(crate) async fn purge_passcode_half(
    conn: &mut sqlx::AnyConnection,
    person_uid: &str,
    hash: Option<&str>,
) -> Result<(), StoreError> {
    let sql = match hash {
        Some(_) => {
            "UPDATE prp_notification_outbox SET secret = NULL WHERE secret IS NOT NULL AND id IN (
               SELECT half_notification_id FROM prp_passcode
               WHERE person_uid = $1 AND hash = $2 AND half_notification_id IS NOT NULL)"
        }
        None => {
            "UPDATE prp_notification_outbox SET secret = NULL WHERE secret IS NOT NULL AND id IN (
               SELECT half_notification_id FROM prp_passcode
               WHERE person_uid = $1 AND half_notification_id IS NOT NULL)"
        }
    };
    let mut q = sqlx::query(sql).bind(person_uid);
    if let Some(h) = hash {
        q = q.bind(h);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// The read of one credential's stored hash (`hash`, `normalized`), with the positions of its
/// parameters: the source, the account and the person it must belong to.
pub(super) fn stored_password_sql(source: usize, account: usize, person: usize) -> String {
    format!(
        "SELECT hash, normalized FROM prp_credential WHERE source = ${source} AND account_uid = ${account} AND person_uid = ${person} AND external = 0"
    )
}

/// A row of [`stored_password_sql`].
pub(super) fn stored_password_from(r: &sqlx::any::AnyRow) -> Result<StoredPassword, StoreError> {
    Ok(StoredPassword {
        hash: r.try_get("hash")?,
        normalized: r.try_get::<i64, _>("normalized")? != 0,
    })
}

impl Store {
    /// Stores a passcode's hash, replacing any earlier one of the person (and purging the
    /// second half of the earlier one from the outbox).
    pub async fn issue_passcode(
        &self,
        person_uid: &str,
        hash: &str,
        valid_for: i64,
        issued_by: &str,
    ) -> Result<i64, StoreError> {
        let now = self.now();
        let expires_at = now + valid_for;
        let mut tx = self.pool().begin().await?;
        purge_passcode_half(&mut tx, person_uid, None).await?;
        sqlx::query(
            "INSERT INTO prp_passcode (person_uid, hash, issued_at, expires_at, issued_by, failures, half_notification_id)
             VALUES ($1, $2, $3, $4, $5, 0, NULL)
             ON CONFLICT (person_uid) DO UPDATE SET hash = $2, issued_at = $3, expires_at = $4, issued_by = $5, failures = 0, half_notification_id = NULL",
        )
        .bind(person_uid)
        .bind(hash)
        .bind(now)
        .bind(expires_at)
        .bind(issued_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // A new passcode clears the person's passcode lock (see `lockout::clear_subject`).
        self.clear_subject(person_uid, super::LockScope::Passcode)
            .await?;
        Ok(expires_at)
    }

    /// Queues the second half of a four-eyes passcode for `recipient_uid` and ties it to the
    /// person's passcode with `hash`, so that it is purged when that passcode is used, replaced,
    /// invalidated or expires. Fails (nothing queued) if that passcode is no longer there.
    pub async fn queue_passcode_half(
        &self,
        person_uid: &str,
        hash: &str,
        recipient_uid: &str,
        body: &str,
        secret: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO prp_notification_outbox (created_at, recipient_uid, kind, subject, body, secret, data)
             VALUES ($1, $2, 'passcode.half', 'Second half of a passcode', $3, $4, $5) RETURNING id",
        )
        .bind(self.now())
        .bind(recipient_uid)
        .bind(body)
        .bind(secret)
        .bind(serde_json::json!({ "person_uid": person_uid }).to_string())
        .fetch_one(&mut *tx)
        .await?;
        let linked = sqlx::query(
            "UPDATE prp_passcode SET half_notification_id = $3 WHERE person_uid = $1 AND hash = $2",
        )
        .bind(person_uid)
        .bind(hash)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if linked.rows_affected() != 1 {
            return Err(StoreError::Invalid(
                "the passcode was replaced while it was being issued".into(),
            ));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Consumes at once (outside a login's session transaction): the passcode only if it is
    /// still the one with that hash and unexpired, with its second half. Returns whether it
    /// consumed (always true for questions).
    pub async fn consume_now(&self, c: &Consumption) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        match c {
            Consumption::Passcode { person_uid, hash } => {
                purge_passcode_half(&mut tx, person_uid, Some(hash)).await?;
                let done = sqlx::query(
                    "DELETE FROM prp_passcode WHERE person_uid = $1 AND hash = $2 AND expires_at > $3",
                )
                .bind(person_uid)
                .bind(hash)
                .bind(self.now())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
            }
            Consumption::Questions { person_uid, ids } => {
                for id in ids {
                    sqlx::query("DELETE FROM prp_question WHERE person_uid = $1 AND id = $2")
                        .bind(person_uid)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes every expired passcode and purges their second halves from the outbox.
    /// Returns how many passcodes it deleted.
    pub async fn purge_expired_passcodes(&self) -> Result<u64, StoreError> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE prp_notification_outbox SET secret = NULL WHERE secret IS NOT NULL AND id IN (
               SELECT half_notification_id FROM prp_passcode
               WHERE expires_at <= $1 AND half_notification_id IS NOT NULL)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM prp_passcode WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// The person's passcode hash and expiry, if one was issued.
    pub async fn passcode(&self, person_uid: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row = sqlx::query("SELECT hash, expires_at FROM prp_passcode WHERE person_uid = $1")
            .bind(person_uid)
            .fetch_optional(self.db())
            .await?;
        row.map(|r| Ok((r.try_get("hash")?, r.try_get("expires_at")?)))
            .transpose()
    }

    /// Counts a wrong guess; invalidates the passcode at `max_guesses`. Returns whether it did.
    pub async fn passcode_wrong_guess(
        &self,
        person_uid: &str,
        hash: &str,
        max_guesses: i64,
    ) -> Result<bool, StoreError> {
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE prp_passcode SET failures = failures + 1 WHERE person_uid = $1 AND hash = $2 RETURNING failures",
        )
        .bind(person_uid)
        .bind(hash)
        .fetch_optional(self.db())
        .await?;
        match failures {
            Some(n) if n >= max_guesses => {
                self.delete_passcode(person_uid, Some(hash)).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Deletes the person's passcode (only the one with `hash`, when given), purging its
    /// second half from the outbox.
    pub async fn delete_passcode(
        &self,
        person_uid: &str,
        hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        purge_passcode_half(&mut tx, person_uid, hash).await?;
        match hash {
            Some(h) => sqlx::query("DELETE FROM prp_passcode WHERE person_uid = $1 AND hash = $2")
                .bind(person_uid)
                .bind(h),
            None => sqlx::query("DELETE FROM prp_passcode WHERE person_uid = $1").bind(person_uid),
        }
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The person's questions, in their order.
    pub async fn questions(&self, person_uid: &str) -> Result<Vec<QuestionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, question, answer_hash, sort_order, failures, locked FROM prp_question
             WHERE person_uid = $1 ORDER BY sort_order, id",
        )
        .bind(person_uid)
        .fetch_all(self.db())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuestionRow {
                    id: r.try_get("id")?,
                    question: r.try_get("question")?,
                    answer_hash: r.try_get("answer_hash")?,
                    sort_order: r.try_get("sort_order")?,
                    failures: r.try_get("failures")?,
                    locked: r.try_get::<i64, _>("locked")? != 0,
                })
            })
            .collect()
    }

    /// Adds a question with its answer's hash; returns its id.
    pub async fn add_question(
        &self,
        person_uid: &str,
        question: &str,
        answer_hash: &str,
    ) -> Result<String, StoreError> {
        let id = crate::security::random_id();
        let next: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(sort_order), 0) + 1 FROM prp_question WHERE person_uid = $1",
        )
        .bind(person_uid)
        .fetch_one(self.db())
        .await?;
        sqlx::query(
            "INSERT INTO prp_question (id, person_uid, question, answer_hash, sort_order, failures, locked, created_at)
             VALUES ($1, $2, $3, $4, $5, 0, 0, $6)",
        )
        .bind(&id)
        .bind(person_uid)
        .bind(question)
        .bind(answer_hash)
        .bind(next)
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(id)
    }

    /// Counts an attempt at a question before its answer is checked: true when the question is
    /// the person's, unlocked, and has tries left (`failures < max_failures`). Atomic, so
    /// parallel attempts can't exceed the limit.
    pub async fn reserve_question_attempt(
        &self,
        person_uid: &str,
        id: &str,
        max_failures: i64,
    ) -> Result<bool, StoreError> {
        let reserved: Option<i64> = sqlx::query_scalar(
            "UPDATE prp_question SET failures = failures + 1
             WHERE id = $1 AND person_uid = $2 AND locked = 0 AND failures < $3 RETURNING failures",
        )
        .bind(id)
        .bind(person_uid)
        .bind(max_failures)
        .fetch_optional(self.db())
        .await?;
        Ok(reserved.is_some())
    }

    /// Gives back the attempt of a right answer.
    pub async fn refund_question_attempt(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE prp_question SET failures = failures - 1 WHERE id = $1 AND failures > 0",
        )
        .bind(id)
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// Locks a question whose tries are spent. Returns whether it is locked now.
    pub async fn lock_spent_question(
        &self,
        id: &str,
        max_failures: i64,
    ) -> Result<bool, StoreError> {
        let locked: Option<i64> = sqlx::query_scalar(
            "UPDATE prp_question SET locked = 1 WHERE id = $1 AND failures >= $2 RETURNING locked",
        )
        .bind(id)
        .bind(max_failures)
        .fetch_optional(self.db())
        .await?;
        Ok(locked.is_some())
    }

    /// Deletes the person's questions with these ids (`InvalidateUsedQuery`).
    pub async fn delete_questions(
        &self,
        person_uid: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("DELETE FROM prp_question WHERE person_uid = $1 AND id = $2")
                .bind(person_uid)
                .bind(id)
                .execute(self.db())
                .await?;
        }
        Ok(())
    }

    /// Stores a password hash for the central account (`source` = `Person`, `account_uid` =
    /// the person) or a target-system account. `hash` must be of the password's NFKC form
    /// ([`crate::security::normalize_password`]).
    pub async fn set_credential(
        &self,
        source: &str,
        account_uid: &str,
        person_uid: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prp_credential (source, account_uid, person_uid, hash, set_at, normalized, external) VALUES ($1, $2, $3, $4, $5, 1, 0)
             ON CONFLICT (source, account_uid) DO UPDATE SET person_uid = $3, hash = $4, set_at = $5, normalized = 1, external = 0",
        )
        .bind(source)
        .bind(account_uid)
        .bind(person_uid)
        .bind(hash)
        .bind(self.now())
        .execute(self.db())
        .await?;
        Ok(())
    }

    /// The stored hash of one credential, if it belongs to `person_uid`.
    pub async fn credential(
        &self,
        source: &str,
        account_uid: &str,
        person_uid: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT hash FROM prp_credential WHERE source = $1 AND account_uid = $2 AND person_uid = $3 AND external = 0",
        )
        .bind(source)
        .bind(account_uid)
        .bind(person_uid)
        .fetch_optional(self.db())
        .await?)
    }

    /// The stored hash of one credential with the form it is of, if it belongs to `person_uid`.
    pub async fn stored_password(
        &self,
        source: &str,
        account_uid: &str,
        person_uid: &str,
    ) -> Result<Option<StoredPassword>, StoreError> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| stored_password_sql(1, 2, 3));
        let row = sqlx::query(&SQL)
            .bind(source)
            .bind(account_uid)
            .bind(person_uid)
            .fetch_optional(self.db())
            .await?;
        row.as_ref().map(stored_password_from).transpose()
    }

    /// Replaces a credential's hash by a new hash of the same password's NFKC form (after a
    /// login with a weaker or not yet normalised hash), unless it changed meanwhile.
    pub async fn rehash_credential(
        &self,
        source: &str,
        account_uid: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE prp_credential SET hash = $4, normalized = 1 WHERE source = $1 AND account_uid = $2 AND hash = $3 AND external = 0",
        )
        .bind(source)
        .bind(account_uid)
        .bind(old_hash)
        .bind(new_hash)
        .execute(self.db())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A server-side random key shared by every server, created on first use.
    pub async fn server_key(&self, name: &str) -> Result<String, StoreError> {
        if let Some(k) = self
            .server_keys
            .lock()
            .ok()
            .and_then(|c| c.get(name).cloned())
        {
            return Ok(k);
        }
        let key = self.load_server_key(name).await?;
        if let Ok(mut cache) = self.server_keys.lock() {
            cache.insert(name.to_owned(), key.clone());
        }
        Ok(key)
    }

    /// Creates the key if needed and reads it (whoever wrote first wins, on every server).
    async fn load_server_key(&self, name: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO prp_secret (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(crate::security::random_token())
        .execute(self.db())
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM prp_secret WHERE name = $1")
                .bind(name)
                .fetch_one(self.db())
                .await?,
        )
    }
}

impl Store {
    /// Replaces the text and answer of one of the person's questions, unlocking it, and tells
    /// the person (notification outbox) in the same transaction.
    pub async fn replace_question(
        &self,
        person_uid: &str,
        id: &str,
        question: &str,
        answer_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE prp_question SET question = $3, answer_hash = $4, failures = 0, locked = 0
             WHERE person_uid = $1 AND id = $2",
        )
        .bind(person_uid)
        .bind(id)
        .bind(question)
        .bind(answer_hash)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.notify_question_change(&mut tx, person_uid, "question.replaced", "replaced")
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Unlocks one of the person's questions, and tells the person in the same transaction.
    pub async fn unlock_question(&self, person_uid: &str, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE prp_question SET failures = 0, locked = 0 WHERE person_uid = $1 AND id = $2",
        )
        .bind(person_uid)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.notify_question_change(&mut tx, person_uid, "question.unlocked", "unlocked")
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn notify_question_change(
        &self,
        conn: &mut sqlx::AnyConnection,
        person_uid: &str,
        kind: &str,
        what: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prp_notification_outbox (created_at, recipient_uid, kind, subject, body)
             VALUES ($1, $2, $3, 'Your password questions were changed', $4)",
        )
        .bind(self.now())
        .bind(person_uid)
        .bind(kind)
        .bind(format!(
            "One of your password questions was {what} in the Password Reset Portal. If this was not you, contact the help desk."
        ))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The persons whose manager (`UID_PersonHead`) is `manager_uid`.
    pub async fn direct_reports(
        &self,
        manager_uid: &str,
    ) -> Result<Vec<crate::store::Person>, StoreError> {
        let mut out = Vec::new();
        let uids: Vec<String> = sqlx::query_scalar("SELECT CAST(\"UID_Person\" AS TEXT) FROM \"Person\" WHERE \"UID_PersonHead\" = $1 ORDER BY 1")
            .bind(manager_uid)
            .fetch_all(self.db())
            .await?;
        for uid in uids {
            if let Some(p) = self.person(&uid).await? {
                out.push(p);
            }
        }
        Ok(out)
    }
}
