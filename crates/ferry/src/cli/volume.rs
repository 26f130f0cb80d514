//! `ferry volume` (to be written).

/// Arguments of `ferry volume`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ferry volume`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ferry volume` is not built yet")
}
