//! The portal's database: its own tables (managed by migrations), and read-only access to the
//! operator's identity tables. One `AnyPool` serves SQLite and PostgreSQL; every query is
//! written once with `$n` placeholders, which both accept. What differs between the two lives in
//! [`Dialect`] alone: migrations and schema introspection.

mod audit;
mod identity;
mod import;
mod items;
mod lockout;
mod notify;
mod params;
mod secrets;
mod sessions;
pub mod warm;

pub use audit::{AuditEvent, AuditRecord, AuditWriter};
pub use identity::{
    is_identifier, AccountRow, AccountSearch, MissingIndex, Person, SchemaProblem,
    SearchTableConfig,
};
pub use import::{
    read_import_file, ImportError, ImportReport, ImportTarget, RowChange, RowProblem,
    MAX_IMPORT_BYTES,
};
pub use items::{
    AccountTable, ItemChange, PasswordChange, TableAccount, ACCOUNT_TABLES, DISPLAY_COLUMN,
};
pub use lockout::{any_over, Counter, LockScope, LockoutPolicy, Settlement};
pub use notify::{DeliveryState, OutboxEntry, OutboxMessage, OutboxState, Recipient};
pub use params::{ApiKeyScope, ApiKeyValue, Parameter, ParameterSnapshot, ParameterView};
pub use secrets::{AnswerOutcome, Consumption, PasscodeOutcome, QuestionRow, StoredPassword};
pub use sessions::{Afresh, NewSession, Session, SessionKind};
pub use warm::WarmConnections;

use crate::clock::Clock;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for a database connection before it is answered `503`. A pool
/// that can't connect (the server is down) keeps retrying for this long, so it is also how long
/// a request waits while the database is away. SQLite's busy timeout (5 s) bounds a write lock.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The pool's size, and how many of its connections are kept warm between statements
/// ([`WarmConnections`]); the others serve transactions and bursts.
const POOL_SIZE: u32 = 16;
const WARM_CONNECTIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported database URL; use sqlite://… or postgres://…")]
    Unsupported,
}

/// The SQL dialects the portal speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// The dialect's migrations, embedded at build time from `host/migrations/<dialect>/`.
    fn migrator(self) -> &'static Migrator {
        static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
        static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");
        match self {
            Self::Sqlite => &SQLITE,
            Self::Postgres => &POSTGRES,
        }
    }
}

/// The database and the clock the portal's rules run on.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where the statements run: connections kept warm between them, in front of `pool`.
    warm: WarmConnections,
    dialect: Dialect,
    clock: Arc<dyn Clock>,
    identity: Arc<identity::IdentitySchema>,
    /// Server keys never change once created: read each once.
    server_keys: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

impl Store {
    /// Connects to `url` (already resolved, see `db::database_url`).
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url).ok_or(StoreError::Unsupported)?;
        let mut options = AnyPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if dialect == Dialect::Sqlite {
            // A SQLite connection lives in this process: a ping before each statement (a round
            // trip to the connection's thread, doubling each statement's thread switches) can't
            // find anything a statement wouldn't. A PostgreSQL connection keeps its ping: it
            // finds connections a restarted server dropped before a request uses them.
            options = options.test_before_acquire(false);
            // With WAL, NORMAL syncs at checkpoints instead of every commit: a crash of the
            // process loses nothing; a power cut may lose the last commits.
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        if dialect == Dialect::Sqlite {
            // Readers don't block the writer; kept in the file, so set once is enough.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        Ok(Self::from_pool(pool, dialect, clock))
    }

    pub fn from_pool(pool: AnyPool, dialect: Dialect, clock: Arc<dyn Clock>) -> Self {
        Self {
            warm: WarmConnections::new(
                pool.clone(),
                WARM_CONNECTIONS,
                dialect == Dialect::Postgres,
            ),
            pool,
            dialect,
            clock,
            identity: Arc::default(),
            server_keys: Arc::default(),
        }
    }

    /// Applies the portal's pending migrations. Never touches operator tables.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.dialect.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Migrations the database hasn't had yet, by version and description.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let has_table: bool = match self.dialect {
            Dialect::Sqlite => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            ),
            Dialect::Postgres => sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
            ),
        }
        .fetch_one(self.db())
        .await?
            > 0;
        // No migrations table yet means nothing was applied.
        let applied: Vec<i64> = if has_table {
            sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success = $1")
                .bind(true)
                .fetch_all(self.db())
                .await?
        } else {
            Vec::new()
        };
        Ok(self
            .dialect
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{:04}_{}", m.version, m.description))
            .collect())
    }

    /// The pool itself: for transactions and operators' tools. Statements run on [`Self::db`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The executor of the portal's statements: a connection kept warm between statements.
    /// One statement at a time: a transaction goes through [`Self::pool`] (`begin()`), never
    /// as `BEGIN` text here (such a statement's connection isn't kept warm, but the statements
    /// after it would run elsewhere).
    pub fn db(&self) -> &WarmConnections {
        &self.warm
    }

    /// Closes the pool, with the warm connections given back, waiting for what is in use.
    pub async fn close(&self) {
        // Marked closed first (`Pool::close` does so before it is awaited), so that a
        // statement finishing meanwhile doesn't put its connection back into the warm set.
        let closing = self.pool.close();
        self.warm.release_all();
        closing.await;
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// 0/1 integers for flags, the same in both dialects.
pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}
