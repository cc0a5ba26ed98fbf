//! `prp-host`: the command line of the Password Reset Portal's API server. It parses the
//! arguments and hands each verb to its module in `cli/`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if !args.serves() {
        restore_sigpipe();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prp-host: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("prp-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A verb whose output goes into a pipe that closes early (`prp-host audit | head -1`) ends
/// quietly, as other command-line tools do, instead of panicking in `println!`: Rust ignores
/// SIGPIPE by default, which is right for `serve` only.
fn restore_sigpipe() {
    // SAFETY: called first in `main`, before any other thread exists, and SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
