//! `cargo xtask sim …`: build the simulator with `--cfg madsim` in its own target directory and
//! run it. People never type RUSTFLAGS.
//!
//! - `cargo xtask sim run <scenario.toml> --seed N`
//! - `cargo xtask sim sweep <scenario.toml|all> --seeds A..B [--jobs J] [--shard i/n]`
//! - `cargo xtask sim check <scenario.toml> --seed N` (the same seed twice: same trace?)

use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{cargo, repo_root};

#[derive(Args, Clone, Debug)]
#[command(trailing_var_arg = true)]
pub struct SimArgs {
    /// Arguments for the simulator: `run <scenario> --seed N` or `sweep <scenario|all> --seeds A..B`.
    #[arg(allow_hyphen_values = true, required = true)]
    args: Vec<String>,
}

/// Build the `sim` binary (profile `sim`, shared with `cargo xtask test`'s simulation tests).
pub fn build() -> Result<std::path::PathBuf> {
    let status = cargo()
        .args([
            "build",
            "--quiet",
            "--profile",
            "sim",
            "-p",
            "sim",
            "--bin",
            "sim",
        ])
        .env("RUSTFLAGS", "--cfg madsim")
        .env("CARGO_TARGET_DIR", crate::test::sim_target_dir())
        .current_dir(repo_root())
        .status()
        .context("running cargo build for the simulator")?;
    if !status.success() {
        bail!("building the simulator failed ({status})");
    }
    Ok(crate::test::sim_target_dir().join("sim").join("sim"))
}

pub fn run(args: &SimArgs) -> Result<()> {
    let bin = build()?;
    let status = Command::new(&bin)
        .args(&args.args)
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("the simulation did not end as expected ({status})");
    }
    Ok(())
}
