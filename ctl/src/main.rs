//! `kvs`: the command-line tool for KVS. Thin on purpose: parse, dispatch, turn errors into
//! `error: ...` on stderr and exit code 1. The behaviour lives in [`commands`] and [`run`].
//!
//! ```text
//!   argv ─► cli::Cli (clap) ─► commands::dispatch ─► connect::Client ─► coordinator (gRPC, TLS)
//!                                     │
//!                                     └─► output (tables, key/value blocks, JSON) ─► stdout
//! ```

mod cli;
mod commands;
mod connect;
mod output;
mod profile;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = commands::Context {
        flags: cli.connect,
        json: cli.json,
    };
    match runtime.block_on(commands::dispatch(cli.command, &ctx)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
