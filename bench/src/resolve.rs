//! Login-name resolution at scale: a SearchTable of a million accounts searched by two
//! columns, the portal's lookup (`Store::search_accounts`, with its schema validation cache)
//! against the raw indexed SQL query, measured side by side, on SQLite and on PostgreSQL when
//! `PRP_TEST_POSTGRES_URL` is set.

use prp_host::clock::SystemClock;
use prp_host::store::{AccountSearch, Dialect, SearchTableConfig, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn fill(store: &Store, rows: i64) -> anyhow::Result<()> {
    prp_host::demo::create_identity_schema(store).await?;
    let gen = match store.dialect() {
        Dialect::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) "
        }
        Dialect::Postgres => "WITH n(i) AS (SELECT generate_series(0, $1 - 1)) ",
    };
    let persons = (rows / 4).max(1);
    sqlx::query(&format!(
        "INSERT INTO \"Person\" (\"UID_Person\", \"CentralAccount\", \"FirstName\", \"LastName\", \"IsInActive\")
         {gen} SELECT 'P-' || i, 'person' || i, 'First', 'Last' || i, FALSE FROM n"
    ))
    .bind(persons)
    .execute(store.pool())
    .await?;
    sqlx::query(&format!(
        "INSERT INTO \"ADSAccount\" (\"UID_ADSAccount\", \"UID_Person\", \"CN\", \"SamAccountName\")
         {gen} SELECT 'A-' || i, 'P-' || (i % {persons}), 'Account Holder ' || i, 'acct' || i FROM n"
    ))
    .bind(rows)
    .execute(store.pool())
    .await?;
    if store.dialect() == Dialect::Postgres {
        sqlx::query("ANALYZE").execute(store.pool()).await?;
    }
    Ok(())
}

async fn measure(store: &Store, rows: i64, lookups: usize) -> anyhow::Result<()> {
    let config = SearchTableConfig {
        table: "ADSAccount".into(),
        columns: vec!["CN".into(), "SamAccountName".into()],
        disabled_by: vec!["Locked".into(), "Disabled".into()],
        enabled_by: vec!["Enabled".into()],
    };
    let d = store.dialect();
    // The same answer written by hand: keys, person and the flags, through both indexes.
    let flags = "CAST(CASE WHEN \"Locked\" THEN 1 ELSE 0 END AS BIGINT), CAST(CASE WHEN \"Disabled\" THEN 1 ELSE 0 END AS BIGINT), CAST(CASE WHEN \"Enabled\" THEN 1 ELSE 0 END AS BIGINT)";
    let raw = format!(
        "SELECT \"UID_ADSAccount\", \"UID_Person\", {flags} FROM \"ADSAccount\" WHERE {} = $1
         UNION ALL
         SELECT \"UID_ADSAccount\", \"UID_Person\", {flags} FROM \"ADSAccount\" WHERE {} = $1",
        d.ascii_lower("\"CN\""),
        d.ascii_lower("\"SamAccountName\"")
    );
    // Warm both paths (and the validation cache).
    let first = store
        .search_accounts(&AccountSearch {
            config: config.clone(),
            login_name: "acct7".into(),
        })
        .await?;
    anyhow::ensure!(
        first.len() == 1,
        "expected one account, got {}",
        first.len()
    );
    let (mut portal, mut sql) = (Duration::ZERO, Duration::ZERO);
    for i in 0..lookups {
        let name = if i % 2 == 0 {
            format!("ACCT{}", (i * 7919) % rows as usize)
        } else {
            format!("account holder {}", (i * 104_729) % rows as usize)
        };
        let t = Instant::now();
        let found = store
            .search_accounts(&AccountSearch {
                config: config.clone(),
                login_name: name.clone(),
            })
            .await?;
        portal += t.elapsed();
        let t = Instant::now();
        let rows_raw = sqlx::query(&raw)
            .bind(name.to_ascii_lowercase())
            .fetch_all(store.pool())
            .await?;
        sql += t.elapsed();
        anyhow::ensure!(
            found.len() == rows_raw.len(),
            "the two paths disagree for {name}"
        );
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / lookups as f64;
    println!(
        "  {:<10} {rows} accounts: portal lookup {:.1} µs, raw indexed SQL {:.1} µs, ratio {:.2} (goal ≤ 1.5)",
        format!("{d:?}"),
        per(portal),
        per(sql),
        per(portal) / per(sql)
    );
    Ok(())
}

/// Options of `prp-bench resolve`.
#[derive(clap::Args)]
pub struct Args {
    /// Accounts in the SearchTable.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Lookups each way.
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (rows, lookups) = (args.rows, args.lookups);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("SearchTable lookups by two columns ({lookups} lookups, interleaved):");
    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("resolve.db").display()
    );
    rt.block_on(one_backend(&sqlite, rows, lookups))?;
    match std::env::var("PRP_TEST_POSTGRES_URL") {
        Ok(admin) if !admin.is_empty() => {
            let db = crate::scratch::ScratchDatabase::create(&rt, &admin, "resolve")?;
            let result = rt.block_on(one_backend(db.url(), rows, lookups));
            db.remove(&rt)?;
            result
        }
        _ => {
            println!("  PostgreSQL: skipped (PRP_TEST_POSTGRES_URL is not set)");
            Ok(())
        }
    }
}

/// Fills a fresh database at `url` and measures the lookups on it.
async fn one_backend(url: &str, rows: i64, lookups: usize) -> anyhow::Result<()> {
    let store = Store::connect(url, Arc::new(SystemClock)).await?;
    store.migrate().await?;
    let result = async {
        fill(&store, rows).await?;
        measure(&store, rows, lookups).await
    }
    .await;
    store.close().await;
    result
}
