//! The connections the portal's statements run on: a few kept warm between statements, in
//! front of sqlx's pool.
//!
//! sqlx's pool pings every connection it is given back (`return_to_pool`, unconditionally) and
//! spawns a task to do so: on SQLite a round trip to the connection's thread, on PostgreSQL one
//! to the server, after every statement a `&Pool` runs, and PostgreSQL's pool pings again
//! before handing a connection out. `prp-bench hops` measured a statement through the pool at
//! three to six times the CPU of the same statement on a connection kept between statements.
//! [`WarmConnections`] is an [`Executor`] that runs each statement on a connection it keeps
//! checked out of the pool, and keeps it for the next statement when the statement finished.
//!
//! What the pool's ping was for stays covered:
//! - A statement that didn't finish (its future dropped mid-way, e.g. the client went away)
//!   gives its connection back to the pool, which tests it, and not to the warm set.
//! - A statement that failed for want of its connection (I/O, protocol, TLS, a crashed SQLite
//!   worker, a PostgreSQL FATAL) gives it, and every warm connection, back to the pool: a
//!   server that dropped one dropped them all.
//! - A PostgreSQL connection that has sat unused longer than [`ALIVE_BYPASS`] is pinged (within
//!   the pool's acquire timeout) before it runs a statement (HikariCP's `aliveBypassWindow`),
//!   so one a restarted server dropped is found before a request uses it. A busy one isn't.
//! - A connection checked out longer than [`MAX_AGE`] goes back to the pool, which closes it
//!   past its own `max_lifetime`; one unused for [`IDLE_LIMIT`] goes back too
//!   ([`WarmConnections::prune_idle`], every minute), so quiet hours hold no warm backends.
//! - A statement that changes the session (`BEGIN`, `SET`, `PRAGMA`, a `TEMP` table, …) isn't
//!   kept warm: the next statement must not inherit it. Transactions go through the pool.
//!
//! At most `capacity` connections (and never more than half the pool) are kept warm, and none
//! while the pool has no connection left to give: one finished then goes back to the pool, to
//! whoever waits there (a transaction, the readiness check).

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection, Describe, Either, Execute, Executor};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a PostgreSQL connection may sit unused and still run a statement without a ping.
pub const ALIVE_BYPASS: Duration = Duration::from_millis(500);
/// How long a connection is kept warm after it was checked out of the pool (the pool's own
/// `max_lifetime`; the connection may be older).
pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);
/// A warm connection unused for this long goes back to the pool (whose `idle_timeout` then
/// closes it).
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// A connection out of the pool, with when it was checked out and last used.
struct Warm {
    conn: PoolConnection<Any>,
    checked_out: Instant,
    used: Instant,
}

/// Connections kept warm between statements; an [`Executor`] by reference. Cheap to clone.
#[derive(Clone)]
pub struct WarmConnections {
    pool: AnyPool,
    idle: Arc<Mutex<IdleSet>>,
    capacity: usize,
    /// The pool's `max_connections`.
    pool_size: u32,
    /// Ping a connection that sat unused longer than [`ALIVE_BYPASS`] (PostgreSQL; a SQLite
    /// connection lives in the process and can't be dropped by a server).
    ping_idle: bool,
}

impl std::fmt::Debug for WarmConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmConnections")
            .field("idle", &self.idle_count())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The warm connections not in use, the most recently used last.
#[derive(Default)]
struct IdleSet(Vec<Warm>);

impl Drop for IdleSet {
    fn drop(&mut self) {
        let_go(self.0.drain(..));
    }
}

/// Gives connections back to the pool, which tests them (a task it spawns). Outside a tokio
/// runtime (the last `Store` dropped after its runtime, or by a synchronous caller) nothing
/// can be spawned: they are closed instead, without panicking.
fn let_go(warm: impl Iterator<Item = Warm>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        warm.for_each(drop);
    } else {
        warm.for_each(|w| drop(w.conn.detach()));
    }
}

/// A connection taken for one statement. Kept warm by [`Taken::settle`] when the statement
/// finished; dropped otherwise, which returns it to the pool (and the pool's test).
struct Taken {
    warm: Option<Warm>,
    from: WarmConnections,
}

impl Taken {
    fn conn(&mut self) -> Result<&mut PoolConnection<Any>, sqlx::Error> {
        self.warm
            .as_mut()
            .map(|w| &mut w.conn)
            .ok_or(sqlx::Error::PoolClosed)
    }

    /// Keeps the connection warm unless the statement changed the session or failed in a way
    /// that breaks the connection.
    fn settle(mut self, error: Option<&sqlx::Error>, changed_session: bool) {
        if changed_session {
            return;
        }
        if error.is_some_and(breaks_connection) {
            // One connection lost is most likely all of them (the server restarted): the
            // pool tests the others before they serve again.
            self.from.release_all();
            return;
        }
        if let Some(mut warm) = self.warm.take() {
            warm.used = Instant::now();
            self.from.put_back(warm);
        }
    }
}

/// Whether an error means the connection itself can't be trusted any more (as opposed to the
/// statement being refused: a constraint, a type, no row).
fn breaks_connection(e: &sqlx::Error) -> bool {
    if let sqlx::Error::Database(db) = e {
        // PostgreSQL ends the session after a FATAL or PANIC error (e.g. 57P01, terminated
        // by an administrator or a shutdown). 25006 (a write in a read-only transaction) means
        // the connection reached a standby, e.g. a demoted primary after a failover. Any other
        // error leaves the session usable.
        return db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| {
                matches!(
                    pg.severity(),
                    sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                ) || pg.code() == "25006"
            });
    }
    !matches!(
        e,
        sqlx::Error::RowNotFound
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Encode(_)
            | sqlx::Error::Decode(_)
    )
}

/// Whether `sql` (one statement or several) changes its session for the statements after it:
/// a transaction begun by hand, a setting, a TEMP object, an attached database.
fn changes_session(sql: &str) -> bool {
    // Runs before every statement: compares words in place, allocating nothing.
    const SESSION_VERBS: [&str; 13] = [
        "BEGIN",
        "START",
        "SAVEPOINT",
        "SET",
        "RESET",
        "PRAGMA",
        "ATTACH",
        "DETACH",
        "LISTEN",
        "DISCARD",
        "DECLARE",
        "PREPARE",
        "LOCK",
    ];
    sql.split(';').any(|statement| {
        let mut words = statement.split_whitespace();
        let Some(first) = words.next() else {
            return false;
        };
        SESSION_VERBS.iter().any(|v| first.eq_ignore_ascii_case(v))
            || (first.eq_ignore_ascii_case("CREATE")
                && words
                    .take(2)
                    .any(|w| w.eq_ignore_ascii_case("TEMP") || w.eq_ignore_ascii_case("TEMPORARY")))
    })
}

impl WarmConnections {
    /// Keeps up to `capacity` of `pool`'s connections warm (never more than half of them).
    pub fn new(pool: AnyPool, capacity: usize, ping_idle: bool) -> Self {
        let pool_size = pool.options().get_max_connections();
        Self {
            capacity: capacity.min(pool_size as usize / 2),
            pool_size,
            pool,
            idle: Arc::default(),
            ping_idle,
        }
    }

    /// Connections kept warm now, unused.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.0.len())
    }

    /// Gives every warm connection back to the pool (before the pool closes).
    pub fn release_all(&self) {
        let drained: Vec<Warm> = match self.idle.lock() {
            Ok(mut idle) => idle.0.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let_go(drained.into_iter());
    }

    /// Gives back to the pool the warm connections unused for [`IDLE_LIMIT`].
    pub fn prune_idle(&self) {
        let stale: Vec<Warm> = match self.idle.lock() {
            Ok(mut idle) => {
                let (stale, fresh) = idle
                    .0
                    .drain(..)
                    .partition(|w| w.used.elapsed() > IDLE_LIMIT);
                idle.0 = fresh;
                stale
            }
            Err(_) => Vec::new(),
        };
        let_go(stale.into_iter());
    }

    /// The most recently used warm connection that is still sound, or a new one from the pool.
    async fn take(&self) -> Result<Taken, sqlx::Error> {
        loop {
            let candidate = self.idle.lock().ok().and_then(|mut idle| idle.0.pop());
            let Some(mut warm) = candidate else {
                let conn = self.pool.acquire().await?;
                let now = Instant::now();
                return Ok(self.taken(Warm {
                    conn,
                    checked_out: now,
                    used: now,
                }));
            };
            if warm.checked_out.elapsed() > MAX_AGE || warm.used.elapsed() > IDLE_LIMIT {
                // Back to the pool, which closes it if past its lifetime.
                continue;
            }
            if self.ping_idle && warm.used.elapsed() > ALIVE_BYPASS {
                let answered = tokio::time::timeout(super::ACQUIRE_TIMEOUT, warm.conn.ping()).await;
                if !matches!(answered, Ok(Ok(()))) {
                    tracing::debug!("a warm database connection failed its ping: {answered:?}");
                    // Broken, and so most likely are the others: this one is closed without
                    // ceremony, the others go back to the pool to be tested.
                    drop(warm.conn.detach());
                    self.release_all();
                    continue;
                }
            }
            return Ok(self.taken(warm));
        }
    }

    fn taken(&self, warm: Warm) -> Taken {
        Taken {
            warm: Some(warm),
            from: self.clone(),
        }
    }

    /// Whether the pool could serve someone waiting without this connection.
    fn pool_has_slack(&self) -> bool {
        self.pool.num_idle() > 0 || self.pool.size() < self.pool_size
    }

    fn put_back(&self, warm: Warm) {
        let mut refused = Some(warm);
        if self.pool_has_slack() {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.0.len() < self.capacity && !self.pool.is_closed() {
                    if let Some(w) = refused.take() {
                        idle.0.push(w);
                    }
                }
            }
        }
        // Outside the lock: back to the pool.
        if let Some(w) = refused {
            let_go(std::iter::once(w));
        }
    }
}

impl<'c> Executor<'c> for &'c WarmConnections {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        use futures_util::StreamExt;
        // The rows are gathered before they are handed on, so that the connection goes back
        // as soon as the statement is done; the portal's statements return a few rows each.
        let changed_session = changes_session(query.sql());
        let results = async move {
            let mut taken = match self.take().await {
                Ok(t) => t,
                Err(e) => return vec![Err(e)],
            };
            let results: Vec<_> = match taken.conn() {
                Ok(conn) => conn.fetch_many(query).collect().await,
                Err(e) => vec![Err(e)],
            };
            taken.settle(
                results.iter().find_map(|r| r.as_ref().err()),
                changed_session,
            );
            results
        };
        Box::pin(futures_util::stream::once(results).flat_map(futures_util::stream::iter))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let changed_session = changes_session(query.sql());
        Box::pin(async move {
            let mut taken = self.take().await?;
            let outcome = taken.conn()?.fetch_optional(query).await;
            taken.settle(outcome.as_ref().err(), changed_session);
            outcome
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut taken = self.take().await?;
            let outcome = taken.conn()?.prepare_with(sql, parameters).await;
            taken.settle(outcome.as_ref().err(), false);
            outcome
        })
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        Box::pin(async move {
            let mut taken = self.take().await?;
            let outcome = taken.conn()?.describe(sql).await;
            taken.settle(outcome.as_ref().err(), false);
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::Store;

    async fn sqlite() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url, Arc::new(SystemClock)).await.unwrap();
        (dir, store)
    }

    /// `last_insert_rowid()` belongs to a connection: the rowid of the last insert made on it,
    /// 0 on a connection that never inserted.
    async fn last_insert(db: &WarmConnections) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT last_insert_rowid()")
            .fetch_one(db)
            .await
            .unwrap()
    }

    async fn table_with_one_row(db: &WarmConnections) {
        sqlx::query("CREATE TABLE mine (x INTEGER PRIMARY KEY)")
            .execute(db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO mine (x) VALUES (7)")
            .execute(db)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn statements_that_finish_run_on_one_warm_connection() {
        let (_dir, store) = sqlite().await;
        let db = store.db();
        table_with_one_row(db).await;
        for _ in 0..5 {
            assert_eq!(last_insert(db).await, 7, "another connection ran");
        }
        assert_eq!(db.idle_count(), 1);
        // Refused by the database (a duplicate key): the connection is sound and stays.
        let refused = sqlx::query("INSERT INTO mine (x) VALUES (7)")
            .execute(db)
            .await;
        assert!(
            matches!(refused, Err(sqlx::Error::Database(_))),
            "{refused:?}"
        );
        assert_eq!(last_insert(db).await, 7);
        let rows = sqlx::query("SELECT x FROM mine")
            .fetch_all(db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(db.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_statement_that_did_not_finish_gives_its_connection_to_the_pool() {
        let (_dir, store) = sqlite().await;
        let db = store.db();
        table_with_one_row(db).await;
        assert_eq!(db.idle_count(), 1);
        // A statement that runs for seconds, abandoned after a moment (as when a client goes
        // away): its connection may be mid-way and must not be used for the next statement.
        let slow = sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000)
             SELECT COUNT(*) FROM n",
        )
        .fetch_one(db);
        let abandoned = tokio::time::timeout(Duration::from_millis(20), slow).await;
        assert!(abandoned.is_err(), "the slow statement finished too soon");
        assert_eq!(db.idle_count(), 0);
        // The next statement runs on another connection, and works.
        assert_eq!(
            last_insert(db).await,
            0,
            "the abandoned connection ran again"
        );
        assert_eq!(db.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_statement_that_changes_the_session_is_not_kept() {
        let (_dir, store) = sqlite().await;
        let db = store.db();
        table_with_one_row(db).await;
        assert_eq!(db.idle_count(), 1);
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(db)
            .await
            .unwrap();
        assert_eq!(db.idle_count(), 0);
        assert_eq!(last_insert(db).await, 0);
        for sql in [
            "begin",
            "  BEGIN IMMEDIATE",
            "SELECT 1; COMMIT; BEGIN",
            "SET search_path TO x",
            "CREATE TEMP TABLE t (x)",
            "create temporary view v as select 1",
            "SAVEPOINT a",
            "ATTACH DATABASE 'x' AS y",
        ] {
            assert!(changes_session(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "UPDATE prp_session SET last_seen_at = $1",
            "CREATE TABLE t (x)",
            "INSERT INTO t (x) VALUES ('BEGIN')",
        ] {
            assert!(!changes_session(sql), "{sql}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn no_more_than_its_capacity_stays_warm() {
        let (_dir, store) = sqlite().await;
        let db = store.db().clone();
        let many: Vec<_> = (0..40)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { sqlx::query("SELECT 1").execute(&db).await.map(drop) })
            })
            .collect();
        for task in many {
            task.await.unwrap().unwrap();
        }
        assert!(db.idle_count() >= 1);
        assert!(db.idle_count() <= super::super::WARM_CONNECTIONS);
        // What isn't warm went back to the pool; closing waits for nothing that is checked out.
        tokio::time::timeout(Duration::from_secs(5), store.close())
            .await
            .expect("the pool closed");
        assert_eq!(db.idle_count(), 0);
    }

    #[test]
    fn a_store_dropped_outside_its_runtime_lets_its_connections_go_quietly() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (dir, store) = rt.block_on(sqlite());
        rt.block_on(async {
            let three = || sqlx::query("SELECT 1").execute(store.db());
            let (a, b, c) = tokio::join!(three(), three(), three());
            a.and(b).and(c).unwrap();
        });
        assert!(store.db().idle_count() >= 1);
        // No runtime here: giving a connection back to the pool would spawn a task (a panic).
        drop(store);
        drop(rt);
        drop(dir);
    }

    /// A connection that finishes while the pool has none left goes to whoever waits there
    /// (a transaction, the readiness check), not to the warm set.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_pool_gets_the_connection_back() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(1))
            .test_before_acquire(false)
            .connect(&url)
            .await
            .unwrap();
        let db = WarmConnections::new(pool.clone(), 8, false);
        sqlx::query("SELECT 1").execute(&db).await.unwrap();
        assert_eq!(db.idle_count(), 1, "half of a pool of two");
        let held = pool.acquire().await.unwrap();
        // The pool is spent: one connection warm, one held. Someone waits for the pool.
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        sqlx::query("SELECT 1").execute(&db).await.unwrap();
        waiter
            .await
            .unwrap()
            .expect("the waiter got the connection the statement finished with");
        assert_eq!(db.idle_count(), 0);
        drop(held);
    }
}
