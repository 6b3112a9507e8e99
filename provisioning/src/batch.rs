//! `vouch-provision batch`: provisions N SIMULATED terminals. The simulator (vouch-sim) must
//! never be linked into a production binary (tests/lean_binaries.rs checks this one too), so
//! the work is done by `vouch-provision-sim` (crate `demo`, `demo/src/provision_batch.rs`),
//! which this command runs from the directory of its own executable, passing every argument
//! through. A factory install without it says so instead of minting simulated terminals.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The executable that provisions simulated terminals.
const SIM_TOOL: &str = "vouch-provision-sim";

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct BatchArgs {
    /// Arguments for the batch: `--count N --model M --vendor DIR --out DIR [--firmware-version
    /// V] [--prefix sim] [--inventory FILE]` (`vouch-provision batch --help` lists them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
}

/// Where `vouch-provision-sim` is: beside this executable.
fn sim_tool() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = exe
        .parent()
        .context("this executable's path has no directory")?;
    Ok(dir.join(SIM_TOOL))
}

/// Replaces this process with `vouch-provision-sim ARGS`.
pub fn run(args: &BatchArgs) -> Result<()> {
    let tool = sim_tool()?;
    if !tool.is_file() {
        bail!(
            "batch provisions SIMULATED terminals, and this installation has no {SIM_TOOL} beside \
             {} (it is built with the demo crate: cargo build -p vouch-demo); production \
             installs leave the simulator out on purpose",
            tool.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let err = std::process::Command::new(&tool).args(&args.args).exec();
    Err(anyhow::Error::new(err).context(format!("cannot run {}", tool.display())))
}
