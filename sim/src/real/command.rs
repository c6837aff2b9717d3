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
    /// Write each run's explorable page (one self-contained HTML file; with several runs,
    /// `-seedN` is added to its name), as `sim run --html` does for a simulated run.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Only say whether this world can run the scenario (exit 0) or not (exit 3, the reason).
    #[arg(long)]
    check: bool,
    /// Real librdkafka producers (confluent-kafka) joining the workload's, judged alike.
    #[arg(long, default_value_t = 0)]
    librdkafka_producers: usize,
    /// The Python that has confluent-kafka, for `--librdkafka-producers`.
    #[arg(long, env = "STILLWATER_PYTHON", default_value = "python3")]
    python: PathBuf,
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Exit 0 when every run's verdict is the one the scenario expects, 1 when one is not, 2 on bad
/// input, 3 when this world cannot run the scenario (the reason is printed).
pub fn main() -> ExitCode {
    init_logs();
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
        librdkafka: (cli.librdkafka_producers > 0).then(|| crate::real::rdkafka::Librdkafka {
            producers: cli.librdkafka_producers,
            python: cli.python.clone(),
        }),
    };
    if cli.check {
        let faults = scenario.faults_for(cli.seed);
        return match crate::real::faults::unsupported(&scenario, &faults) {
            Some(why) => {
                println!("{why}");
                ExitCode::from(3)
            }
            None => ExitCode::SUCCESS,
        };
    }
    let mut all_as_expected = true;
    for seed in cli.seed..cli.seed + cli.runs {
        let (r, logged) = match run(&scenario, seed, &opts) {
            Ok(Twin::Ran(r, logged)) => (r, logged),
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
        if let Some(file) = &cli.html {
            let file = if cli.runs > 1 {
                let stem = file.file_stem().unwrap_or_default().to_string_lossy();
                file.with_file_name(format!("{stem}-seed{seed}.html"))
            } else {
                file.clone()
            };
            let page =
                crate::report::html::page(&Report::new(&cli.scenario, &scenario, &r), &r, &logged);
            match std::fs::write(&file, page) {
                Ok(()) => println!("  page: {}", file.display()),
                Err(e) => eprintln!("sim: cannot write the page {}: {e}", file.display()),
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

#[derive(Parser)]
#[command(
    name = "sim fidelity",
    about = "The fidelity table: each scenario's simulated seeds against its twin runs"
)]
struct FidelityCli {
    /// The literal word `fidelity`.
    #[arg(value_parser = ["fidelity"])]
    command: String,
    /// Where the runs are: `<dir>/<scenario>/sim/*.json`, `<dir>/<scenario>/real/*.json` and,
    /// for a scenario this world cannot run, `<dir>/<scenario>/skipped.txt`.
    #[arg(long)]
    dir: PathBuf,
    /// The scenario files, in the table's order.
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Also write the table into this file, between its `<!-- fidelity -->` and
    /// `<!-- /fidelity -->` lines (the whole file if it has none).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `sim fidelity`: print the table; exit 0 without divergences, 1 with some, 2 on bad input.
pub fn fidelity_main() -> ExitCode {
    init_logs();
    let cli = FidelityCli::parse();
    let mut all = Vec::new();
    for path in &cli.scenarios {
        let scenario = match Scenario::load(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sim: {e:#}");
                return ExitCode::from(2);
            }
        };
        let dir = cli.dir.join(&scenario.name);
        let load = |world: &str| crate::report::fidelity::load_reports(&dir.join(world));
        let (sim, real) = match (load("sim"), load("real")) {
            (Ok(s), Ok(r)) => (s, r),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("sim: {e}");
                return ExitCode::from(2);
            }
        };
        all.push(crate::report::fidelity::Twins {
            scenario: scenario.name.clone(),
            tolerance: scenario.twin.tolerance,
            sim,
            real,
            skipped: std::fs::read_to_string(dir.join("skipped.txt"))
                .ok()
                .map(|s| s.trim().to_string()),
        });
    }
    let table = crate::report::fidelity::table(&all);
    print!("{table}");
    if let Some(out) = &cli.out {
        let old = std::fs::read_to_string(out).unwrap_or_default();
        let text = match (
            old.find("<!-- fidelity -->"),
            old.find("<!-- /fidelity -->"),
        ) {
            (Some(a), Some(b)) if a < b => {
                format!("{}<!-- fidelity -->\n{table}{}", &old[..a], &old[b..])
            }
            _ => table.clone(),
        };
        if let Err(e) = std::fs::write(out, text) {
            eprintln!("sim: cannot write {}: {e}", out.display());
            return ExitCode::from(2);
        }
    }
    let diverged = all
        .iter()
        .any(|t| !crate::report::fidelity::divergences(t).is_empty());
    if diverged {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
