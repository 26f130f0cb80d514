//! `ferry shim` (hidden): a task's supervisor process that outlives the
//! server (see `ferry_agent::shim` and docs/runtime.md, "Shims"). Started
//! by the server's agent, never by hand.

use std::path::PathBuf;

use anyhow::Context;
use ferry_agent::runc::Runc;
use ferry_agent::shim::{self, ShimArgs};

/// Arguments of `ferry shim` (ids and paths only: nothing secret).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The task it supervises.
    #[arg(long)]
    task_id: String,
    /// The unix socket to serve (created with mode 0600).
    #[arg(long)]
    socket: PathBuf,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime: PathBuf,
    /// The runtime's state directory (`--root`).
    #[arg(long)]
    runtime_root: PathBuf,
}

/// Runs the shim until the server asks it to exit.
pub fn run(args: Args) -> anyhow::Result<()> {
    shim::run(ShimArgs {
        task_id: args.task_id,
        socket: args.socket,
        runc: Runc {
            bin: args.runtime,
            root: args.runtime_root,
        },
    })
    .context("shim")
}
