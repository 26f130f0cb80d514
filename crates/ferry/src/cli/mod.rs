//! Command-line interface: one module per subcommand.

mod agent;
mod agent_credentials;
mod csi;
mod image;
mod server;
mod shim;
mod spot;
mod volume;

use clap::{Parser, Subcommand};

/// ferry: self-hosted container tasks with encrypted ephemeral storage.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Encrypted volumes, standalone (format, mount, unmount, shred).
    Volume(volume::Args),
    /// Run the API server, control plane, KMS and agent.
    // Boxed: the server's flags dwarf every other command's.
    Server(Box<server::Args>),
    /// Manage local container images.
    Image(image::Args),
    /// Operator actions on FARGATE_SPOT tasks (interrupt).
    Spot(spot::Args),
    /// Join a control plane as a host over its API (a fleet's agent).
    Agent(Box<agent::Args>),
    /// Issue (or revoke) a remote agent host's service credentials.
    AgentCredentials(agent_credentials::Args),
    /// Kubernetes CSI node plugin: encrypted ephemeral inline volumes keyed by a ferry KMS.
    Csi(csi::Args),
    /// A task's supervisor process (started by the server).
    #[command(hide = true)]
    Shim(shim::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Volume(a) => volume::run(a),
        Command::Server(a) => server::run(*a),
        Command::Image(a) => image::run(a),
        Command::Shim(a) => shim::run(a),
        Command::Spot(a) => spot::run(a),
        Command::AgentCredentials(a) => agent_credentials::run(a),
        Command::Csi(a) => csi::run(a),
        Command::Agent(a) => agent::run(*a),
    }
}
