//! `cargo xtask sim …`: build the simulator with `--cfg madsim` in its own target directory and
//! run it. People never type RUSTFLAGS.
//!
//! - `cargo xtask sim run <scenario.toml> --seed N`
//! - `cargo xtask sim sweep <scenario.toml|all> --seeds A..B [--jobs J] [--shard i/n]`
//! - `cargo xtask sim check <scenario.toml> --seed N` (the same seed twice: same trace?)
//! - `cargo xtask sim real <scenario.toml> [--runs N] [--seed S]`: the scenario on real release
//!   broker processes with real faults (the `sim` binary built normally, the twin runner).

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

/// Build the twin runner (`sim` without `--cfg madsim`) and the broker, in `profile`
/// (`release` or `dev`); their paths.
pub fn build_real(profile: &str) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let status = cargo()
        .args(["build", "--quiet", "--profile", profile])
        .args([
            "-p", "sim", "--bin", "sim", "-p", "broker", "--bin", "broker",
        ])
        .current_dir(repo_root())
        .status()
        .context("running cargo build for the twin runner")?;
    if !status.success() {
        bail!("building the twin runner and the broker failed ({status})");
    }
    let dir = crate::target_dir().join(if profile == "dev" { "debug" } else { profile });
    Ok((dir.join("sim"), dir.join("broker")))
}

pub fn run(args: &SimArgs) -> Result<()> {
    let mut command = if args.args.first().map(String::as_str) == Some("real") {
        let (sim, broker) = build_real("release")?;
        let mut c = Command::new(sim);
        c.env("STILLWATER_BROKER_BIN", broker);
        c
    } else {
        Command::new(build()?)
    };
    let bin = std::path::PathBuf::from(command.get_program());
    let status = command
        .args(&args.args)
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("the simulation did not end as expected ({status})");
    }
    Ok(())
}
