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
    /// Appends one event (one statement).
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
        .fetch_all(self.db())
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
pub(super) struct OwnedEvent {
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

/// What the writer is asked to do with an event.
enum Job {
    /// Write it and say when it is committed (or why it can't be).
    Wait(OwnedEvent, tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Write it when the database allows: kept (bounded) and retried while it doesn't.
    Keep(OwnedEvent),
}

/// Writes audit events in batches: every event waiting when a write starts goes into the same
/// statement (or transaction), so a flood of logins costs one commit per batch instead of one
/// per event.
///
/// [`AuditWriter::write`] returns once its event is committed, or with an error when it can't
/// be: the login pipeline answers nothing decided before it is audited (an answer whose record
/// can't be written becomes a `503`). [`AuditWriter::keep`] is for answers that decided
/// nothing (`503` because the database is away): those events are kept in memory, at most
/// [`BACKLOG`] of them, and written once the database is back.
#[derive(Clone)]
pub struct AuditWriter {
    queue: tokio::sync::mpsc::Sender<Job>,
}

/// Events in one transaction at most.
const BATCH: usize = 512;
/// Kept events at most; beyond this the oldest are dropped (and counted in the log).
pub const BACKLOG: usize = 10_000;
/// One write attempt may take this long at most (the pool's acquire timeout and SQLite's busy
/// timeout are shorter; this bounds a connection that hangs).
const ATTEMPT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether an error means the database is away (unreachable, shutting down, locked), rather
/// than that these events can't be written.
fn is_unavailable(e: &StoreError) -> bool {
    let StoreError::Db(e) = e else {
        return false;
    };
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.parse::<u32>() {
                // SQLite: BUSY and LOCKED, with their extended codes.
                Ok(n) => matches!(n & 0xff, 5 | 6),
                // PostgreSQL: connection exceptions, shutdown, insufficient resources.
                Err(_) => {
                    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
                }
            }
        }
        _ => false,
    }
}

/// The writer task's state.
struct Writer {
    store: Store,
    /// Kept events not yet written, oldest first.
    backlog: std::collections::VecDeque<OwnedEvent>,
    dropped: u64,
}

impl Writer {
    fn keep(&mut self, event: OwnedEvent) {
        if self.backlog.len() >= BACKLOG {
            self.backlog.pop_front();
            self.dropped += 1;
            if self.dropped == 1 || self.dropped.is_power_of_two() {
                tracing::error!(
                    "audit log: {} kept events of refused requests dropped (more than {BACKLOG} waiting for the database)",
                    self.dropped
                );
            }
        }
        self.backlog.push_back(event);
    }

    async fn attempt<'a>(
        &self,
        events: impl Iterator<Item = &'a OwnedEvent>,
    ) -> Result<(), (String, bool)> {
        match tokio::time::timeout(ATTEMPT, self.store.audit_batch(events)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((e.to_string(), is_unavailable(&e))),
            Err(_) => Err((
                format!("no answer from the database within {ATTEMPT:?}"),
                true,
            )),
        }
    }

    /// Writes the waiting events and as much of the backlog as fits in a batch. Returns whether
    /// the database answered (false: keep the backlog and retry later).
    async fn flush(
        &mut self,
        waiting: Vec<(OwnedEvent, tokio::sync::oneshot::Sender<Result<(), String>>)>,
    ) -> bool {
        let kept = self.backlog.len().min(BATCH.saturating_sub(waiting.len()));
        let result = self
            .attempt(
                waiting
                    .iter()
                    .map(|(e, _)| e)
                    .chain(self.backlog.iter().take(kept)),
            )
            .await;
        match result {
            Ok(()) => {
                self.backlog.drain(..kept);
                for (_, done) in waiting {
                    let _ = done.send(Ok(()));
                }
                true
            }
            Err((e, true)) => {
                tracing::error!("audit log write failed, the database is unavailable: {e}");
                for (_, done) in waiting {
                    let _ = done.send(Err(e.clone()));
                }
                false
            }
            Err((e, false)) => {
                // One bad event must not take the others with it: write them one by one.
                tracing::error!("audit log batch failed, writing its events one by one: {e}");
                let mut away: Option<String> = None;
                for (event, done) in waiting {
                    let one = match &away {
                        Some(e) => Err(e.clone()),
                        None => match self.attempt(std::iter::once(&event)).await {
                            Ok(()) => Ok(()),
                            Err((e, unavailable)) => {
                                tracing::error!("audit log write failed: {e}");
                                if unavailable {
                                    away = Some(e.clone());
                                }
                                Err(e)
                            }
                        },
                    };
                    let _ = done.send(one);
                }
                let mut left = std::collections::VecDeque::new();
                for event in self.backlog.drain(..kept).collect::<Vec<_>>() {
                    if away.is_some() {
                        left.push_back(event);
                        continue;
                    }
                    match self.attempt(std::iter::once(&event)).await {
                        Ok(()) => {}
                        Err((e, true)) => {
                            away = Some(e);
                            left.push_back(event);
                        }
                        // It can never be written: say so rather than retry it forever.
                        Err((e, false)) => tracing::error!(
                            "audit log: a kept event can't be written and is dropped: {e}"
                        ),
                    }
                }
                while let Some(e) = left.pop_back() {
                    self.backlog.push_front(e);
                }
                away.is_none()
            }
        }
    }
}

impl AuditWriter {
    /// Starts the writer task on the current runtime. It ends when every handle is dropped,
    /// after writing what is queued (and one last try for what is kept).
    pub fn start(store: Store) -> Self {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Job>(16 * BATCH);
        tokio::spawn(async move {
            let mut w = Writer {
                store,
                backlog: std::collections::VecDeque::new(),
                dropped: 0,
            };
            // While events are kept, retry after this (doubling up to 5 s while it fails).
            let mut retry = std::time::Duration::from_millis(250);
            loop {
                let first = if w.backlog.is_empty() {
                    match rx.recv().await {
                        Some(j) => Some(j),
                        None => break,
                    }
                } else {
                    match tokio::time::timeout(retry, rx.recv()).await {
                        Ok(Some(j)) => Some(j),
                        Ok(None) => {
                            w.flush(Vec::new()).await;
                            break;
                        }
                        Err(_) => None,
                    }
                };
                let mut waiting = Vec::new();
                let mut next = first;
                while let Some(job) = next {
                    match job {
                        Job::Wait(e, done) => waiting.push((e, done)),
                        Job::Keep(e) => w.keep(e),
                    }
                    next = if waiting.len() < BATCH {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                let had_backlog = !w.backlog.is_empty();
                if w.flush(waiting).await {
                    retry = std::time::Duration::from_millis(250);
                } else if had_backlog {
                    retry = (retry * 2).min(std::time::Duration::from_secs(5));
                }
            }
        });
        Self { queue }
    }

    /// Queues an event and waits until it is committed.
    pub async fn write(&self, event: &AuditEvent<'_>) -> Result<(), String> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.queue
            .send(Job::Wait(event.into(), done))
            .await
            .map_err(|_| "the audit writer has stopped".to_owned())?;
        wait.await
            .map_err(|_| "the audit writer has stopped".to_owned())?
    }

    /// Queues an event to be written when the database allows, without waiting for it: for
    /// requests answered `503` because the database is away.
    pub fn keep(&self, event: &AuditEvent<'_>) {
        if self.queue.try_send(Job::Keep(event.into())).is_err() {
            tracing::error!(
                "audit log: the writer's queue is full; an event of a refused request is dropped"
            );
        }
    }
}

/// Events per `INSERT` statement at most. Each size is its own prepared statement in every
/// connection's cache, so the sizes are few; a larger batch is a transaction of several.
const EVENTS_PER_STATEMENT: usize = 8;

impl Store {
    /// Writes a batch atomically: one multi-row `INSERT` (a statement is atomic by itself),
    /// or, for a batch larger than one statement takes, one transaction of several.
    async fn audit_batch<'a>(
        &self,
        events: impl Iterator<Item = &'a OwnedEvent>,
    ) -> Result<(), StoreError> {
        let events: Vec<&OwnedEvent> = events.collect();
        if events.len() <= EVENTS_PER_STATEMENT {
            return self.insert_audit(&events, self.db()).await;
        }
        let mut tx = self.pool().begin().await?;
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            self.insert_audit(chunk, &mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_audit<'e>(
        &self,
        events: &[&OwnedEvent],
        executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let sql = insert_audit_sql(1, 2, events.len());
        let mut query = sqlx::query(&sql).bind(self.now());
        for e in events {
            query = e.bind(query);
        }
        query.execute(executor).await?;
        Ok(())
    }
}

/// The `INSERT` of `n` audit events: the time is `$time`, event i's 8 fields are bound from
/// `$(first + 8i)` (see [`OwnedEvent::bind`]).
pub(super) fn insert_audit_sql(time: usize, first: usize, n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let from = first + 8 * i;
            let fields: Vec<String> = (from..from + 8).map(|n| format!("${n}")).collect();
            format!("(${time}, {})", fields.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO prp_audit (at, event, outcome, method, login_name, person_uid, reason, actor, remote_addr) VALUES {}",
        rows.join(", ")
    )
}

impl OwnedEvent {
    /// Binds the event's 8 fields, in the order [`insert_audit_sql`] places them.
    pub(super) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        query
            .bind(&self.event)
            .bind(&self.outcome)
            .bind(self.method.as_deref())
            .bind(self.login_name.as_deref())
            .bind(self.person_uid.as_deref())
            .bind(self.reason.as_deref())
            .bind(self.actor.as_deref())
            .bind(self.remote_addr.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    async fn store(url: &str) -> Store {
        let store = Store::connect(url, Arc::new(crate::clock::SystemClock))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    fn event<'a>(reason: &'a str, outcome: &'a str) -> AuditEvent<'a> {
        AuditEvent {
            event: "login",
            outcome,
            reason: Some(reason),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn a_database_away_is_told_from_an_event_it_refuses() {
        let db = |e| StoreError::Db(e);
        assert!(is_unavailable(&db(sqlx::Error::PoolTimedOut)));
        assert!(is_unavailable(&db(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )))));
        assert!(!is_unavailable(&db(sqlx::Error::RowNotFound)));
        assert!(!is_unavailable(&StoreError::Invalid("x".into())));
    }

    #[tokio::test]
    async fn the_backlog_is_bounded_and_drops_the_oldest() {
        let mut w = Writer {
            store: store("sqlite::memory:").await,
            backlog: std::collections::VecDeque::new(),
            dropped: 0,
        };
        for i in 0..=BACKLOG {
            w.keep(OwnedEvent {
                reason: Some(i.to_string()),
                ..OwnedEvent::default()
            });
        }
        assert_eq!(w.backlog.len(), BACKLOG);
        assert_eq!(w.dropped, 1);
        assert_eq!(w.backlog[0].reason.as_deref(), Some("1"));
    }

    /// A locked SQLite file: a write waited for fails within a bound (the caller answers 503
    /// and is not recorded as written), a kept event is written once the lock is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_events_are_written_when_the_database_is_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
        let store = store(&url).await;
        let writer = AuditWriter::start(store.clone());
        writer
            .write(&event("before", "success"))
            .await
            .expect("write before the lock");
        let mut lock = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("second connection");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut lock)
            .await
            .expect("lock");
        writer.keep(&event("kept", "unavailable"));
        let started = Instant::now();
        let refused = writer.write(&event("refused", "failure")).await;
        assert!(refused.is_err(), "a write under the lock succeeded");
        assert!(started.elapsed() < Duration::from_secs(2 * ATTEMPT.as_secs()));
        sqlx::query("ROLLBACK")
            .execute(&mut lock)
            .await
            .expect("unlock");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reasons: Vec<String> = store
                .audit_tail(10)
                .await
                .expect("tail")
                .into_iter()
                .filter_map(|r| r.reason)
                .collect();
            if reasons.contains(&"kept".to_owned()) {
                assert!(!reasons.contains(&"refused".to_owned()), "{reasons:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kept event not written: {reasons:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
