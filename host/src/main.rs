//! `prp-host`: the command line of the Password Reset Portal's API server. It parses the
//! arguments and hands each verb to its module in `cli/`.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    quiet_on_closed_stdout();
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
/// quietly with 141, as a shell reports a tool ended by SIGPIPE, instead of a panic's
/// backtrace. SIGPIPE itself stays ignored (Rust's default): a verb that talks to a
/// directory over TLS must not be killed by a peer that closed its socket.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
