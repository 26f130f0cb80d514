//! Command-line interface: one module per subcommand.

use clap::{Parser, Subcommand};

/// ferry: self-hosted container tasks with encrypted ephemeral storage.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {}
}
