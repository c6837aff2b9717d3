//! `cargo xtask test`: the project's one test command.
//!
//! Steps, in order, stopping at the first failure:
//! 1. unit, property and simulation-in-process tests: `cargo nextest run --workspace`
//!    (or `cargo test --workspace` when cargo-nextest is not installed);
//! 2. the simulation tests: `cargo test -p sim` built with `--cfg madsim`, in their own target
//!    directory (`<target>/madsim`) so the two builds never invalidate each other, then a
//!    determinism check of one seed per scenario and a bounded sweep of every scenario;
//! 3. the broker binary: `cargo build -p broker --bin broker`;
//! 4. the integration tests: `python3 -m pytest tests/integration -q`, with
//!    `STILLWATER_BROKER_BIN` pointing at the binary from step 3.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{cargo, repo_root, target_dir};

#[derive(Args, Clone, Debug)]
pub struct TestArgs {
    /// Skip the unit tests (nextest / cargo test).
    #[arg(long)]
    skip_unit: bool,
    /// Skip the simulation tests (the `sim` crate under `--cfg madsim`).
    #[arg(long)]
    skip_sim: bool,
    /// Skip building the broker and running the pytest integration tests.
    #[arg(long)]
    skip_integration: bool,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let started = Instant::now();
    if args.skip_unit {
        println!("xtask: skipping unit tests (--skip-unit)");
    } else {
        unit_tests()?;
    }
    if args.skip_sim {
        println!("xtask: skipping simulation tests (--skip-sim)");
    } else {
        sim_tests()?;
    }
    if args.skip_integration {
        println!("xtask: skipping integration tests (--skip-integration)");
    } else {
        let broker_bin = build_broker()?;
        integration_tests(&broker_bin)?;
    }
    println!(
        "xtask: all test steps passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn unit_tests() -> Result<()> {
    if nextest_available() {
        let mut command = cargo();
        command.args(["nextest", "run", "--workspace"]);
        step("unit tests (cargo nextest run --workspace)", command)
    } else {
        println!("xtask: cargo-nextest not found (cargo install cargo-nextest); using cargo test");
        let mut command = cargo();
        command.args(["test", "--workspace"]);
        step("unit tests (cargo test --workspace)", command)
    }
}

/// The `sim` crate's tests, compiled with `--cfg madsim`. Nobody types RUSTFLAGS.
fn sim_tests() -> Result<()> {
    let mut command = cargo();
    command
        .args(["test", "--profile", "sim", "-p", "sim"])
        .env("RUSTFLAGS", "--cfg madsim")
        .env("CARGO_TARGET_DIR", sim_target_dir());
    step(
        "simulation tests (cargo test --profile sim -p sim, --cfg madsim)",
        command,
    )?;
    // A bounded sweep of every scenario: each seed must end as its scenario expects.
    let bin = crate::sim::build()?;
    // One seed of each scenario twice: the same seed must give the same trace.
    let mut scenarios: Vec<_> = std::fs::read_dir(repo_root().join("scenarios"))
        .context("listing scenarios/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    scenarios.sort();
    for scenario in &scenarios {
        let mut check = Command::new(&bin);
        check
            .arg("check")
            .arg(scenario)
            .args(["--seed", "1"])
            .current_dir(repo_root());
        step(
            &format!("determinism check ({})", scenario.display()),
            check,
        )?;
    }
    let mut sweep = Command::new(bin);
    sweep
        .args(["sweep", "all", "--seeds", "1..41", "--jobs", "2"])
        .current_dir(repo_root());
    step("scenario sweep (sim sweep all --seeds 1..41)", sweep)
}

/// Where `--cfg madsim` builds go: beside the normal ones, never mixed with them.
pub fn sim_target_dir() -> std::path::PathBuf {
    target_dir().join("madsim")
}

fn nextest_available() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Builds the debug broker binary and returns its path.
fn build_broker() -> Result<std::path::PathBuf> {
    let mut command = cargo();
    command.args(["build", "-p", "broker", "--bin", "broker"]);
    step(
        "broker binary (cargo build -p broker --bin broker)",
        command,
    )?;
    let binary = target_dir().join("debug").join("broker");
    if !binary.is_file() {
        bail!(
            "cargo built the broker but {} does not exist; is the target directory \
             configured somewhere other than CARGO_TARGET_DIR?",
            binary.display()
        );
    }
    Ok(binary)
}

fn integration_tests(broker_bin: &Path) -> Result<()> {
    let root = repo_root();
    let suite = root.join("tests").join("integration");
    if !suite.is_dir() {
        bail!("integration test suite {} not found", suite.display());
    }
    let pytest_available = Command::new("python3")
        .args(["-m", "pytest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if !pytest_available {
        bail!(
            "python3 -m pytest is not available; install it (e.g. `pip install pytest` or \
             `apt-get install python3-pytest`) or pass --skip-integration"
        );
    }
    let mut command = Command::new("python3");
    command
        .args(["-m", "pytest", "tests/integration", "-q"])
        .current_dir(&root)
        .env("STILLWATER_BROKER_BIN", broker_bin);
    step(
        &format!(
            "integration tests (STILLWATER_BROKER_BIN={} python3 -m pytest tests/integration -q)",
            broker_bin.display()
        ),
        command,
    )
}

/// Runs one step with its output streaming through, and fails with the step's name.
fn step(name: &str, mut command: Command) -> Result<()> {
    println!("xtask: ==> {name}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("could not start {:?}", command.get_program()))?;
    let elapsed_s = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("step failed after {elapsed_s:.1} s ({status}): {name}");
    }
    println!("xtask: <== {name}: ok in {elapsed_s:.1} s");
    Ok(())
}
