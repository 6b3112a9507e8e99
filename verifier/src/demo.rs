//! `vouch-verifier demo` (placeholder until the demo fleet lands).

use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs) -> Result<()> {
    anyhow::bail!("demo not implemented yet")
}
