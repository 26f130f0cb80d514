//! `ferry image` (to be written).

/// Arguments of `ferry image`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `ferry image`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`ferry image` is not built yet")
}
