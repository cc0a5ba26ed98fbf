//! `prp-bench`: the benchmarks of BENCHMARKS.md and a small HTTP load generator. Every figure
//! is a ratio of two things measured side by side in the same run.
//!
//! ```text
//! cargo run --release -p prp-bench -- abi            # plugin call overhead
//! cargo run --release -p prp-bench -- portal         # hashing limit, saturation, overload,
//!                                                    # cold start, non-hashing endpoints
//! cargo run --release -p prp-bench -- resolve        # 1M-account SearchTable lookups
//! cargo run --release -p prp-bench -- load URL ...   # the load generator on its own
//! ```

mod abi;
mod load;
mod portal;
mod resolve;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("abi") => abi::run(&args[1..]),
        Some("portal") => portal::run(&args[1..]),
        Some("resolve") => resolve::run(&args[1..]),
        Some("load") => load::run_cli(&args[1..]),
        _ => {
            eprintln!("usage: prp-bench abi | portal | resolve [--rows N] | load URL PATH BODY --clients N --seconds S");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prp-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` from the arguments, parsed, or `default`.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
