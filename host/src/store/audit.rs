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
    /// Appends one event (in a transaction of its own).
    pub async fn audit(&self, e: &AuditEvent<'_>) -> Result<(), StoreError> {
        self.audit_batch(std::iter::once(&OwnedEvent::from(e)))
            .await
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

/// An audit event owned, for the batching writer.
#[derive(Debug, Clone, Default)]
struct OwnedEvent {
    event: String,
    outcome: String,
    method: Option<String>,
    login_name: Option<String>,
    person_uid: Option<String>,
    reason: Option<String>,
    actor: Option<String>,
    remote_addr: Option<String>,
}

/// Text as it may be stored: control characters (NUL, which PostgreSQL refuses, among them)
/// become U+FFFD, so that what a client typed can always be audited.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

impl From<&AuditEvent<'_>> for OwnedEvent {
    fn from(e: &AuditEvent<'_>) -> Self {
        let text = |v: Option<&str>| v.map(printable);
        Self {
            event: e.event.to_owned(),
            outcome: e.outcome.to_owned(),
            method: text(e.method),
            login_name: text(e.login_name),
            person_uid: text(e.person_uid),
            reason: text(e.reason),
            actor: text(e.actor),
            remote_addr: text(e.remote_addr),
        }
    }
}

type Pending = (OwnedEvent, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Writes audit events in batches: every event waiting when a write starts goes into the same
/// transaction, so a flood of logins costs one commit per batch instead of one per event.
/// `write` returns once its event is committed: nothing is answered before it is audited.
#[derive(Clone)]
pub struct AuditWriter {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

/// Events in one transaction at most.
const BATCH: usize = 512;

impl AuditWriter {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped,
    /// after writing what is queued.
    pub fn start(store: Store) -> Self {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Pending>(16 * BATCH);
        tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let mut result = store
                    .audit_batch(batch.iter().map(|(e, _)| e))
                    .await
                    .map_err(|e| e.to_string());
                if result.is_err() && batch.len() > 1 {
                    // One bad event must not take the others with it: write them one by one.
                    for (event, done) in batch.drain(..) {
                        let one = store
                            .audit_batch(std::iter::once(&event))
                            .await
                            .map_err(|e| e.to_string());
                        let _ = done.send(one);
                    }
                    result = Ok(());
                }
                if let Err(e) = &result {
                    tracing::error!("audit log write failed: {e}");
                }
                for (_, done) in batch.drain(..) {
                    let _ = done.send(result.clone());
                }
            }
        });
        Self { queue }
    }

    /// Queues an event and waits until it is committed.
    pub async fn write(&self, event: &AuditEvent<'_>) -> Result<(), String> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.queue
            .send((event.into(), done))
            .await
            .map_err(|_| "the audit writer has stopped".to_owned())?;
        wait.await
            .map_err(|_| "the audit writer has stopped".to_owned())?
    }
}

impl Store {
    async fn audit_batch<'a>(
        &self,
        events: impl Iterator<Item = &'a OwnedEvent>,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.pool().begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO prp_audit (at, event, outcome, method, login_name, person_uid, reason, actor, remote_addr)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(now)
            .bind(&e.event)
            .bind(&e.outcome)
            .bind(e.method.as_deref())
            .bind(e.login_name.as_deref())
            .bind(e.person_uid.as_deref())
            .bind(e.reason.as_deref())
            .bind(e.actor.as_deref())
            .bind(e.remote_addr.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
