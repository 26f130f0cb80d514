//! The `ferry` binary: a thin command-line shell over the library crates.
//!
//! Each subcommand lives in its own module under `cli/`; they parse
//! arguments, call into a library crate, and turn errors into one-line
//! messages. [`compose`] is the composition root of `ferry server` and
//! [`datadir`] its bootstrap. No domain logic lives here.

#![forbid(unsafe_code)]

mod cli;
mod compose;
mod datadir;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole cause chain: "ferry: <what>: <why>".
            eprintln!("ferry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
