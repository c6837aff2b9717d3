//! `cargo xtask sim …`: build the simulator with `--cfg madsim` in its own target directory and
//! run it. People never type RUSTFLAGS.
//!
//! - `cargo xtask sim run <scenario.toml> --seed N`
//! - `cargo xtask sim sweep <scenario.toml|all> --seeds A..B [--jobs J] [--shard i/n]`
//! - `cargo xtask sim check <scenario.toml> --seed N` (the same seed twice: same trace?)
//! - `cargo xtask sim real <scenario.toml> [--runs N] [--seed S]`: the scenario on real release
//!   broker processes with real faults (the `sim` binary built normally, the twin runner).
//! - `cargo xtask sim fidelity [--seeds S] [--runs R] [--out FILE] [scenario.toml …]`: each
//!   twin-capable scenario's seeds 1..=S in simulation and R real runs, and the table of both.
//! - `cargo xtask sim bisect <scenario.toml> --seed N --good REV --bad REV`: the first commit
//!   at which the seed fails ([`crate::bisect`]).

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
    build_at(&repo_root(), &crate::test::sim_target_dir())
}

/// Build the `sim` binary of the source tree `tree` into the target directory `target`
/// (with `--cfg madsim`); its path.
pub fn build_at(tree: &std::path::Path, target: &std::path::Path) -> Result<std::path::PathBuf> {
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
        .env("CARGO_TARGET_DIR", target)
        .current_dir(tree)
        .status()
        .context("running cargo build for the simulator")?;
    if !status.success() {
        bail!("building the simulator failed ({status})");
    }
    Ok(target.join("sim").join("sim"))
}

/// Build the twin runner (`sim` without `--cfg madsim`) and the broker, in `profile`
/// (`release` or `dev`); their paths.
pub fn build_real(profile: &str) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    // The broker alone first, as `cargo build -p broker` builds it: built together with the
    // simulator, its dependencies' features would be unified with the simulator's and make
    // another broker than the one every other command runs.
    for package in [
        ["-p", "broker", "--bin", "broker"],
        ["-p", "sim", "--bin", "sim"],
    ] {
        let status = cargo()
            .args(["build", "--quiet", "--profile", profile])
            .args(package)
            .current_dir(repo_root())
            .status()
            .context("running cargo build for the twin runner")?;
        if !status.success() {
            bail!("building {} failed ({status})", package[1]);
        }
    }
    let dir = crate::target_dir().join(if profile == "dev" { "debug" } else { profile });
    Ok((dir.join("sim"), dir.join("broker")))
}

/// The scenarios of the fidelity table when none is named: the ones that must run in both
/// worlds with the same verdicts (`docs/fidelity.md`).
pub const TWIN_SCENARIOS: &[&str] = &[
    "scenarios/twin-smoke.toml",
    "scenarios/node1-freeze-twin.toml",
    "scenarios/node1-freeze-legacy-twin.toml",
    "scenarios/kill-leader.toml",
    "scenarios/leader-partition.toml",
    "scenarios/pause.toml",
    "scenarios/crash-restart.toml",
    "scenarios/fsync-eio.toml",
    "scenarios/rolling-restart.toml",
    "scenarios/pause-mid-write.toml",
    "scenarios/config-churn.toml",
    "scenarios/acks0-leader-moves.toml",
    "scenarios/flaky-network.toml",
    "scenarios/clock-skew.toml",
];

#[derive(clap::Parser, Debug)]
struct FidelityArgs {
    /// The literal word `fidelity`.
    #[arg(value_parser = ["fidelity"])]
    command: String,
    /// Simulated seeds 1..=S of each scenario.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Real runs of each scenario (with the faults of seeds 1..=R).
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Write the table into this file too (between its `<!-- fidelity -->` markers).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    scenarios: Vec<String>,
}

/// Every scenario's seeds in simulation and its runs on real processes, then the table.
fn fidelity(args: &[String]) -> Result<()> {
    use clap::Parser;
    let f =
        FidelityArgs::try_parse_from(std::iter::once("sim").chain(args.iter().map(String::as_str)))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let scenarios: Vec<String> = if f.scenarios.is_empty() {
        TWIN_SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        f.scenarios.clone()
    };
    let simulator = build()?;
    let (twin, broker) = build_real("release")?;
    let dir = crate::target_dir().join("fidelity");
    for path in &scenarios {
        let name = std::path::Path::new(path)
            .file_stem()
            .and_then(|s| s.to_str())
            .context("a scenario file's name")?
            .to_string();
        let out = dir.join(&name);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        for seed in 1..=f.seeds {
            println!("xtask: {name}: simulated seed {seed}");
            Command::new(&simulator)
                .args(["run", path, "--seed", &seed.to_string(), "--report"])
                .arg(out.join("sim"))
                .current_dir(repo_root())
                .stdout(std::process::Stdio::null())
                .status()
                .context("running the simulator")?;
        }
        let check = Command::new(&twin)
            .args(["real", path, "--check", "--broker-bin"])
            .arg(&broker)
            .current_dir(repo_root())
            .output()
            .context("asking the twin runner")?;
        if check.status.code() == Some(3) {
            std::fs::write(out.join("skipped.txt"), &check.stdout)?;
            continue;
        }
        for seed in 1..=f.runs {
            println!("xtask: {name}: real run with seed {seed}'s faults");
            Command::new(&twin)
                .args(["real", path, "--seed", &seed.to_string(), "--report"])
                .arg(out.join("real"))
                .arg("--broker-bin")
                .arg(&broker)
                .arg("--work-dir")
                .arg(dir.join("work"))
                .current_dir(repo_root())
                .status()
                .context("running the twin runner")?;
        }
        // A run that died before writing its report would only thin the table: say so.
        for (world, wanted) in [("sim", f.seeds), ("real", f.runs)] {
            let written = std::fs::read_dir(out.join(world))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                        .count() as u64
                })
                .unwrap_or(0);
            if written != wanted {
                bail!("{name}: {written} of {wanted} {world} runs wrote a report (see above)");
            }
        }
    }
    let mut table = Command::new(&twin);
    table.args(["fidelity", "--dir"]).arg(&dir);
    if let Some(out) = &f.out {
        table.arg("--out").arg(out);
    }
    let status = table
        .args(&scenarios)
        .current_dir(repo_root())
        .status()
        .context("printing the fidelity table")?;
    if !status.success() {
        bail!("the worlds diverge (the table lists where)");
    }
    Ok(())
}

pub fn run(args: &SimArgs) -> Result<()> {
    if args.args.first().map(String::as_str) == Some("fidelity") {
        return fidelity(&args.args);
    }
    if args.args.first().map(String::as_str) == Some("bisect") {
        return crate::bisect::run(&args.args);
    }
    let mut command = if args.args.first().map(String::as_str) == Some("real") {
        let (sim, broker) = build_real("release")?;
        let mut c = Command::new(sim);
        c.env("STILLWATER_BROKER_BIN", broker);
        // librdkafka producers (`--librdkafka-producers`) run with the test clients' Python.
        let python = crate::target_dir().join("pyenv").join("bin").join("python");
        if python.is_file() && std::env::var_os("STILLWATER_PYTHON").is_none() {
            c.env("STILLWATER_PYTHON", python);
        }
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
