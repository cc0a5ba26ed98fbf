//! `prp-bench hops`: what one hand-off between threads costs while the hash threads keep both
//! cores busy, as they do in a saturation run. A login's CPU beyond its hash is mostly such
//! hand-offs (a SQL statement is a round trip to the SQLite connection's thread, a plugin call
//! one to a blocking thread); this prices each kind against one hash, measured side by side in
//! the same run, so that a login's floor can be read off its counts of each. On SQLite it also
//! prices the same statements run on the calling thread (rusqlite on the same file), which is
//! what a driver without sqlx's thread per connection would cost.

use crate::portal::{live_threads_cpu, threads_cpu};
use crate::scratch::ScratchDatabase;
use prp_host::clock::SystemClock;
use prp_host::security::Hasher;
use prp_host::store::Store;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Length of each case, in seconds
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Also price the statements on a fresh PostgreSQL database created through this admin URL
    /// (e.g. postgres://postgres@127.0.0.1:5432/postgres); PostgreSQL's own processes are not
    /// counted
    #[arg(long)]
    postgres: Option<String>,
    /// Tasks running the operation at once (4 is the saturation run's clients)
    #[arg(long, default_value_t = 1)]
    tasks: usize,
    /// Each task sleeps this long between operations (0: back to back). About one hash's time
    /// prices an operation as a login meets it: its threads asleep, the caches the hashes'
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
}

/// How each case runs.
#[derive(Clone, Copy)]
struct Run {
    seconds: Duration,
    tasks: usize,
    pause: Duration,
}

/// Names of the threads that make the load; their CPU is the hashes', not the cases'.
const LOAD_THREAD: &str = "hops-load";
const HASH_THREAD: &str = "prp-hash-";

pub fn run(args: &Args) -> anyhow::Result<()> {
    // The server's runtime: one worker per core, blocking threads on demand.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}/hops.db?mode=rwc", dir.path().display());
    let scratch = match &args.postgres {
        Some(admin) => Some(ScratchDatabase::create(&rt, admin, "hops")?),
        None => None,
    };
    let mut databases = vec![("SQLite", sqlite)];
    if let Some(db) = &scratch {
        databases.push(("PostgreSQL", db.url().to_owned()));
    }
    let load = HashLoad::start(2)?;
    let run = Run {
        seconds: Duration::from_secs(args.seconds),
        tasks: args.tasks.max(1),
        pause: Duration::from_millis(args.pause_ms),
    };
    let pacing = if run.pause.is_zero() {
        "back to back".to_owned()
    } else {
        format!("{} ms apart", args.pause_ms)
    };
    println!(
        "hops: each case runs {} s from {} task(s), operations {pacing}, on the server's runtime while two hash threads verify back to back; \
         CPU per operation is that of every thread but the hashes' and their drivers'",
        args.seconds,
        run.tasks
    );
    let mut priced = Vec::new();
    let nothing = measure(
        &rt,
        &load,
        if run.pause.is_zero() {
            "an await that is ready (the loop itself)"
        } else {
            "an await that is ready (the loop itself, and its pause)"
        },
        run,
        || async { true },
    )?;
    priced.push(nothing);
    priced.push(measure(
        &rt,
        &load,
        "a hop to a blocking thread and back (a plugin call's)",
        run,
        || async { tokio::task::spawn_blocking(|| ()).await.is_ok() },
    )?);
    for (name, url) in &databases {
        let store = rt.block_on(Store::connect(url, Arc::new(SystemClock)))?;
        rt.block_on(store.migrate())?;
        let pool = store.pool().clone();
        priced.push(measure(
            &rt,
            &load,
            &format!("{name}: SELECT 1 through sqlx's pool (a ping after each)"),
            run,
            move || {
                let pool = pool.clone();
                async move { sqlx::query("SELECT 1").execute(&pool).await.is_ok() }
            },
        )?);
        rt.block_on(async {
            sqlx::query("CREATE TABLE IF NOT EXISTS prp_bench_hops (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
                .execute(store.pool())
                .await?;
            sqlx::query("INSERT INTO prp_bench_hops (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
                .execute(store.pool())
                .await
        })?;
        let pool = store.pool().clone();
        priced.push(measure(
            &rt,
            &load,
            &format!("{name}: UPDATE of one row through sqlx's pool"),
            run,
            move || {
                let pool = pool.clone();
                async move {
                    sqlx::query("UPDATE prp_bench_hops SET n = n + 1 WHERE id = 1")
                        .execute(&pool)
                        .await
                        .is_ok()
                }
            },
        )?);
        let warm = store.clone();
        priced.push(measure(
            &rt,
            &load,
            &format!("{name}: SELECT 1 on the store's warm connections (the server's statements)"),
            run,
            move || {
                let warm = warm.clone();
                async move { sqlx::query("SELECT 1").execute(warm.db()).await.is_ok() }
            },
        )?);
        let warm = store.clone();
        priced.push(measure(
            &rt,
            &load,
            &format!("{name}: UPDATE of one row on the store's warm connections"),
            run,
            move || {
                let warm = warm.clone();
                async move {
                    sqlx::query("UPDATE prp_bench_hops SET n = n + 1 WHERE id = 1")
                        .execute(warm.db())
                        .await
                        .is_ok()
                }
            },
        )?);
        if *name == "SQLite" {
            // The same file through a driver that runs each statement on the calling thread
            // (rusqlite, the same libsqlite3 as sqlx's): what a statement would cost without
            // sqlx's thread per connection, with the store's own settings.
            let inline = rusqlite::Connection::open(dir.path().join("hops.db"))?;
            inline.busy_timeout(Duration::from_secs(5))?;
            inline.pragma_update(None, "synchronous", "NORMAL")?;
            let inline = Arc::new(std::sync::Mutex::new(inline));
            // The same statements as the warm cases above, so the two read side by side.
            let cases = [
                ("SELECT 1", "SELECT 1"),
                (
                    "UPDATE of one row",
                    "UPDATE prp_bench_hops SET n = n + 1 WHERE id = 1",
                ),
            ];
            for (what, sql) in cases {
                let inline = Arc::clone(&inline);
                priced.push(measure(
                    &rt,
                    &load,
                    &format!("{name}: {what} on the calling thread (rusqlite, no driver thread)"),
                    run,
                    move || {
                        // A read steps to its row; a write, which returns none, to its end.
                        let ok = inline.lock().is_ok_and(|conn| {
                            conn.prepare_cached(sql)
                                .and_then(|mut st| st.raw_query().next().map(|_| ()))
                                .is_ok()
                        });
                        async move { ok }
                    },
                )?);
            }
        }
        let real = store.clone();
        priced.push(measure(
            &rt,
            &load,
            &format!("{name}: a login's parameter read (Store::parameters, one statement)"),
            run,
            move || {
                let real = real.clone();
                async move { real.parameters().await.is_ok() }
            },
        )?);
        let held = Arc::new(tokio::sync::Mutex::new(
            rt.block_on(store.pool().acquire())?,
        ));
        priced.push(measure(
            &rt,
            &load,
            &format!("{name}: SELECT 1 on a connection held across statements"),
            run,
            move || {
                let held = Arc::clone(&held);
                async move {
                    let mut conn = held.lock().await;
                    sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok()
                }
            },
        )?);
        rt.block_on(store.close());
    }
    load.stop();
    let hash = priced.iter().map(|p| p.hash_cpu).sum::<f64>() / priced.len() as f64;
    println!("  one hash: {:.2} ms CPU (mean over the cases)", 1e3 * hash);
    // The loop's own cost (its pause's timer wake, when paced) is in every case.
    let own = priced.first().map_or(0.0, |p| p.cpu);
    for (i, p) in priced.iter().enumerate() {
        let beyond = if i == 0 {
            String::new()
        } else {
            format!(
                "; beyond the loop's {:>6.1} µs = {:>5.2} %",
                1e6 * (p.cpu - own),
                100.0 * (p.cpu - own) / hash
            )
        };
        println!(
            "  {:<72} {:>9.0}/s  {:>7.1} µs CPU = {:>5.2} % of one hash{beyond}",
            p.name,
            p.per_second,
            1e6 * p.cpu,
            100.0 * p.cpu / hash
        );
    }
    drop(rt);
    if let Some(db) = scratch {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        db.remove(&rt)?;
    }
    Ok(())
}

/// Two threads verifying back to back through the portal's [`Hasher`], as the saturated
/// server's hash threads do, until stopped.
struct HashLoad {
    stop: Arc<AtomicBool>,
    verifies: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl HashLoad {
    fn start(workers: usize) -> anyhow::Result<Self> {
        let hasher = Arc::new(Hasher::new(workers, Hasher::MIN_MEMORY_KIB, 2)?);
        let phc = hasher.hash("some password")?;
        let stop = Arc::new(AtomicBool::new(false));
        let verifies = Arc::new(AtomicU64::new(0));
        let threads = (0..workers)
            .map(|i| {
                let (h, phc) = (Arc::clone(&hasher), phc.clone());
                let (stop, verifies) = (Arc::clone(&stop), Arc::clone(&verifies));
                std::thread::Builder::new()
                    .name(format!("{LOAD_THREAD}{i}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            std::hint::black_box(h.verify(&phc, "another password"));
                            verifies.fetch_add(1, Ordering::Relaxed);
                        }
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            stop,
            verifies,
            threads,
        })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One case's price.
struct Priced {
    name: String,
    per_second: f64,
    /// CPU per operation beyond the hashes, seconds.
    cpu: f64,
    /// One hash's CPU on the hash threads during the case, seconds.
    hash_cpu: f64,
}

/// Runs `op` back to back from `run.tasks` tasks on the runtime for `run.seconds`.
fn measure<F, Fut>(
    rt: &tokio::runtime::Runtime,
    load: &HashLoad,
    name: &str,
    run: Run,
    op: F,
) -> anyhow::Result<Priced>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    // What the operation holds (a connection) is dropped inside the runtime, on every path:
    // a pooled connection dropped outside it would panic.
    let op = Arc::new(op);
    let result = measure_op(rt, load, name, run, Arc::clone(&op));
    rt.block_on(async move { drop(op) });
    result
}

fn measure_op<F, Fut>(
    rt: &tokio::runtime::Runtime,
    load: &HashLoad,
    name: &str,
    run: Run,
    op: Arc<F>,
) -> anyhow::Result<Priced>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let pid = std::process::id();
    // Warm up: connections made, statements prepared, blocking threads spawned.
    let warm = Arc::clone(&op);
    rt.block_on(rt.spawn(async move {
        for _ in 0..100 {
            warm().await;
        }
    }))?;
    let cpu_of = || -> anyhow::Result<(f64, f64)> {
        let all = live_threads_cpu()?;
        let hashes = threads_cpu(pid, HASH_THREAD)?.0;
        let drivers = threads_cpu(pid, LOAD_THREAD)?.0;
        Ok((all - hashes - drivers, hashes))
    };
    let (cpu_before, hash_before) = cpu_of()?;
    let verifies_before = load.verifies.load(Ordering::Relaxed);
    let start = Instant::now();
    let tasks: Vec<_> = (0..run.tasks)
        .map(|_| {
            let op = Arc::clone(&op);
            rt.spawn(async move {
                let (mut n, mut failed) = (0u64, 0u64);
                while start.elapsed() < run.seconds {
                    if !run.pause.is_zero() {
                        tokio::time::sleep(run.pause).await;
                    }
                    if !op().await {
                        failed += 1;
                    }
                    n += 1;
                }
                (n, failed)
            })
        })
        .collect();
    let (ops, failed) = rt.block_on(async {
        let (mut total, mut failed) = (0, 0);
        for t in tasks {
            let (n, f) = t.await?;
            total += n;
            failed += f;
        }
        anyhow::Ok((total, failed))
    })?;
    // A failed statement is cheap and would pass for a fast one.
    anyhow::ensure!(failed == 0, "{name}: {failed} of {ops} operations failed");
    let wall = start.elapsed().as_secs_f64();
    let (cpu_after, hash_after) = cpu_of()?;
    let verifies = load.verifies.load(Ordering::Relaxed) - verifies_before;
    anyhow::ensure!(ops > 0 && verifies > 0, "{name}: nothing was measured");
    Ok(Priced {
        name: name.to_owned(),
        per_second: ops as f64 / wall,
        cpu: (cpu_after - cpu_before) / ops as f64,
        hash_cpu: (hash_after - hash_before) / verifies as f64,
    })
}
