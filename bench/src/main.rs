//! `prp-bench`: the benchmarks of BENCHMARKS.md and a small HTTP load generator. Every figure
//! is a ratio of two things measured side by side in the same run.
//!
//! ```text
//! cargo run --release -p prp-bench -- abi            # plugin call overhead
//! cargo run --release -p prp-bench -- portal         # hashing limit, saturation, server CPU
//!                                                    # per login, overload, cold start,
//!                                                    # non-hashing endpoints
//! cargo run --release -p prp-bench -- pages          # the web portal's page weights and render times
//! cargo run --release -p prp-bench -- resolve        # 1M-account SearchTable lookups
//! cargo run --release -p prp-bench -- hops           # the price of a statement and a plugin hop
//! cargo run --release -p prp-bench -- load URL ...   # the load generator on its own
//! cargo run --release -p prp-bench -- enumeration    # failed logins: same time every reason
//! ```

mod abi;
mod enumeration;
mod hops;
mod load;
mod pages;
mod portal;
mod resolve;
mod scratch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "prp-bench",
    about = "Benchmarks of prp and a small HTTP load generator (see BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// One authenticator call made directly and through the ABI, interleaved.
    Abi(abi::Args),
    /// The release portal over HTTP: cold start, hashing limit, saturation and the server's CPU
    /// per login, overload, the endpoints that don't hash.
    Portal(portal::Args),
    /// The web portal's pages: weight (HTML + CSS + JS) and render time at load, next to
    /// `GET /api/password-items`.
    Pages(pages::Args),
    /// A one-million-account SearchTable searched by two columns, against the raw SQL.
    Resolve(resolve::Args),
    /// What one hand-off between threads (a SQL statement, a plugin call's hop) costs while
    /// the hash threads keep the cores busy, against one hash.
    Hops(hops::Args),
    /// The load generator on its own, against any running portal.
    Load(load::Args),
    /// Failed logins for every reason, interleaved: each median against the wrong-password
    /// one, on SQLite and PostgreSQL.
    Enumeration(enumeration::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().bench {
        Bench::Abi(a) => abi::run(&a),
        Bench::Portal(a) => portal::run(&a),
        Bench::Pages(a) => pages::run(&a),
        Bench::Resolve(a) => resolve::run(&a),
        Bench::Hops(a) => hops::run(&a),
        Bench::Load(a) => load::run_cli(&a),
        Bench::Enumeration(a) => enumeration::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prp-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
