//! `ferry server` (to be written).

/// Arguments of `ferry server`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ferry server`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ferry server` is not built yet")
}
