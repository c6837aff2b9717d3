//! `sim real SCENARIO [--runs N]`: the scenario on real broker processes, run after run, each
//! judged and reported as a simulated seed is (`cargo xtask sim real` builds the release
//! broker and passes it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::real::{run, Options, Twin};
use crate::report::Report;
use crate::scenario::Scenario;

#[derive(Parser)]
#[command(
    name = "sim real",
    about = "Run a scenario on real broker processes with real faults, judged by the simulator's checkers"
)]
struct Cli {
    /// The literal word `real`.
    #[arg(value_parser = ["real"])]
    command: String,
    scenario: PathBuf,
    /// How many runs, with the faults (and drawn settings) of seeds `--seed`, `--seed`+1, ….
    #[arg(long, default_value_t = 1)]
    runs: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The broker binary (a release build).
    #[arg(long, env = "STILLWATER_BROKER_BIN")]
    broker_bin: PathBuf,
    /// Where the runs' data directories and broker logs go.
    #[arg(long, default_value = "target/twin")]
    work_dir: PathBuf,
    /// Write each run's report (JSON, Markdown page, SVG timeline) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Exit 0 when every run's verdict is the one the scenario expects, 1 when one is not, 2 on bad
/// input, 3 when this world cannot run the scenario (the reason is printed).
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let scenario = match Scenario::load(&cli.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim: {e:#}");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        broker_bin: cli.broker_bin.clone(),
        work_dir: cli.work_dir.clone(),
    };
    let mut all_as_expected = true;
    for seed in cli.seed..cli.seed + cli.runs {
        let r = match run(&scenario, seed, &opts) {
            Ok(Twin::Ran(r)) => r,
            Ok(Twin::Skipped(why)) => {
                println!("{}: not run on real processes: {why}", scenario.name);
                return ExitCode::from(3);
            }
            Err(e) => {
                eprintln!(
                    "sim: {} seed {seed} on real processes: {e:#}",
                    scenario.name
                );
                return ExitCode::FAILURE;
            }
        };
        crate::report::text::print(&cli.scenario, &r);
        if let Some(dir) = &cli.report {
            match Report::new(&cli.scenario, &scenario, &r).write(dir) {
                Ok(json) => println!("  report: {}", json.display()),
                Err(e) => eprintln!("sim: cannot write the report into {}: {e}", dir.display()),
            }
        }
        all_as_expected &= r.as_expected();
    }
    if all_as_expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
