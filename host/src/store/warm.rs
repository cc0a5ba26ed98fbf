//! The connections the portal's statements run on: a few kept warm between statements, in
//! front of sqlx's pool.
//!
//! sqlx's pool pings every connection it is given back (`return_to_pool`, unconditionally) and
//! spawns a task to do so: on SQLite a round trip to the connection's thread, on PostgreSQL one
//! to the server, after every statement a `&Pool` runs, and PostgreSQL's pool pings again
//! before handing a connection out. `prp-bench hops` measured a statement through the pool at
//! about four times the CPU of the same statement on a connection held across statements.
//! [`WarmConnections`] is an [`Executor`] that runs each statement on a connection it keeps
//! checked out of the pool, and keeps it for the next statement when the statement finished.
//!
//! What the pool's ping was for stays covered:
//! - A statement that didn't finish (its future dropped mid-way, e.g. the client went away)
//!   or failed for want of the connection (I/O, protocol, TLS, a crashed SQLite worker) gives
//!   its connection back to the pool, which tests it, and not to the warm set. A failed
//!   connection sends every warm one back too: a server that dropped one dropped them all.
//! - A PostgreSQL connection that has sat unused longer than [`ALIVE_BYPASS`] is pinged before
//!   it runs a statement (HikariCP's `aliveBypassWindow`), so one a restarted server dropped is
//!   found before a request uses it. A busy connection isn't.
//! - A connection older than [`MAX_AGE`] goes back to the pool, which closes it (the pool's
//!   own `max_lifetime`), instead of being kept warm.
//!
//! At most `capacity` connections are kept warm; the rest of the pool serves transactions,
//! migrations and whatever runs when every warm connection is busy.

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection, Describe, Either, Execute, Executor};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a PostgreSQL connection may sit unused and still run a statement without a ping.
pub const ALIVE_BYPASS: Duration = Duration::from_millis(500);
/// How long a connection is kept warm after it was opened (the pool's own `max_lifetime`).
pub const MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// A connection out of the pool, with when it was opened and last used.
struct Warm {
    conn: PoolConnection<Any>,
    opened: Instant,
    used: Instant,
}

/// Connections kept warm between statements; an [`Executor`] by reference. Cheap to clone.
#[derive(Clone)]
pub struct WarmConnections {
    pool: AnyPool,
    idle: Arc<Mutex<Vec<Warm>>>,
    capacity: usize,
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

/// A connection taken for one statement. Given back with [`Taken::keep`] when the statement
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

    /// Keeps the connection warm unless the statement failed in a way that breaks it.
    fn settle(mut self, error: Option<&sqlx::Error>) {
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
        // by an administrator or a shutdown); any other error leaves the session usable.
        return db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| {
                matches!(
                    pg.severity(),
                    sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                )
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

impl WarmConnections {
    pub fn new(pool: AnyPool, capacity: usize, ping_idle: bool) -> Self {
        Self {
            pool,
            idle: Arc::default(),
            capacity,
            ping_idle,
        }
    }

    /// Connections kept warm now, unused.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// Gives every warm connection back to the pool (before the pool closes).
    pub fn release_all(&self) {
        let drained: Vec<Warm> = match self.idle.lock() {
            Ok(mut idle) => idle.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        drop(drained);
    }

    /// The most recently used warm connection that is still sound, or a new one from the pool.
    async fn take(&self) -> Result<Taken, sqlx::Error> {
        loop {
            let candidate = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some(mut warm) = candidate else {
                let conn = self.pool.acquire().await?;
                let now = Instant::now();
                return Ok(self.taken(Warm {
                    conn,
                    opened: now,
                    used: now,
                }));
            };
            if warm.opened.elapsed() > MAX_AGE {
                // Back to the pool, which closes it as past its lifetime.
                continue;
            }
            if self.ping_idle && warm.used.elapsed() > ALIVE_BYPASS {
                if let Err(e) = warm.conn.ping().await {
                    tracing::debug!("a warm database connection failed its ping: {e}");
                    // Broken: closed without ceremony; try the next one.
                    drop(warm.conn.detach());
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

    fn put_back(&self, warm: Warm) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.capacity && !self.pool.is_closed() {
                idle.push(warm);
            }
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
        let results = async move {
            let mut taken = match self.take().await {
                Ok(t) => t,
                Err(e) => return vec![Err(e)],
            };
            let results: Vec<_> = match taken.conn() {
                Ok(conn) => conn.fetch_many(query).collect().await,
                Err(e) => vec![Err(e)],
            };
            taken.settle(results.iter().find_map(|r| r.as_ref().err()));
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
        Box::pin(async move {
            let mut taken = self.take().await?;
            let outcome = taken.conn()?.fetch_optional(query).await;
            taken.settle(outcome.as_ref().err());
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
            taken.settle(outcome.as_ref().err());
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
            taken.settle(outcome.as_ref().err());
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

    /// A TEMP table lives in one connection: seeing it again means the same connection ran.
    async fn same_connection(db: &WarmConnections) -> bool {
        sqlx::query("SELECT COUNT(*) FROM temp.mine")
            .fetch_one(db)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn statements_that_finish_run_on_one_warm_connection() {
        let (_dir, store) = sqlite().await;
        let db = store.db();
        sqlx::query("CREATE TEMP TABLE mine (x INTEGER PRIMARY KEY)")
            .execute(db)
            .await
            .unwrap();
        for _ in 0..5 {
            assert!(same_connection(db).await);
        }
        assert_eq!(db.idle_count(), 1);
        // Refused by the database (a duplicate key): the connection is sound and stays.
        sqlx::query("INSERT INTO temp.mine (x) VALUES (1)")
            .execute(db)
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO temp.mine (x) VALUES (1)")
            .execute(db)
            .await;
        assert!(
            matches!(refused, Err(sqlx::Error::Database(_))),
            "{refused:?}"
        );
        assert!(same_connection(db).await);
        let rows = sqlx::query("SELECT x FROM temp.mine")
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
        sqlx::query("CREATE TEMP TABLE mine (x INTEGER)")
            .execute(db)
            .await
            .unwrap();
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
        // The next statement runs on another connection (no TEMP table there), and works.
        assert!(!same_connection(db).await);
        assert_eq!(db.idle_count(), 1);
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
}
