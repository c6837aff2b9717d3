//! What the `sim` binary does: `run`, `replay`, `explain`, `check`, `sweep`, `shrink`, `merge`
//! and `regress`. Use it
//! through `cargo xtask sim …`, which builds it with `--cfg madsim`.
//!
//! Every seed of `check` and `sweep` runs in a process of its own, exactly as `run` replays it:
//! state that outlives a run inside one process (madsim numbers tasks process-wide) can change
//! the interleaving, so in-process repetition would not be a faithful replay.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use clap::{Parser, Subcommand};

use crate::run::run;
use crate::scenario::Scenario;

mod regress;
pub mod shrink;
mod single;
mod sweep;

use single::{check, replay_report, run_one, Outputs};
use sweep::{child, merge, sweep, Junit};

#[derive(Parser)]
#[command(name = "sim", about = "Stillwater's deterministic simulation testbed")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed of a scenario and print what the checkers found.
    Run {
        scenario: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one machine-readable line (for `check` and `sweep`).
        #[arg(long, hide = true)]
        summary: bool,
        /// Write the trace, one event a line, to this file.
        #[arg(long)]
        trace_out: Option<PathBuf>,
        /// Write a report (JSON, Markdown page, SVG timeline) into this directory.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the run's explorable page (one self-contained HTML file): its nodes, faults,
        /// leaders, client operations and the brokers' log lines on a time axis.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Run the scenario and seed a JSON report names, again.
    Replay { report: PathBuf },
    /// Run one seed and print, for its first finding, the chain that led to it: the
    /// operations it concerns, the leaders meanwhile, the faults that touched them.
    Explain {
        scenario: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run one seed twice (in two processes) and compare the traces.
    Check {
        scenario: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run many seeds of a scenario (or of every scenario in `scenarios/` with `all`).
    Sweep {
        scenario: String,
        /// Seeds as A..B (B excluded).
        #[arg(long, default_value = "1..101")]
        seeds: String,
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Run only the seeds of shard i of n (i/n, 1-based), for CI matrices.
        #[arg(long)]
        shard: Option<String>,
        /// Write the sweep's summary (outcomes, failing seeds, coverage, figures) as JSON.
        #[arg(long)]
        summary_out: Option<PathBuf>,
        /// Fail when some coverage event was reached by no seed.
        #[arg(long)]
        require_coverage: bool,
        /// Run at most a scenario's `quick_sweep_seeds` of the seeds (the first ones), for
        /// the scenarios that set it: a sweep bounded in time, as CI's.
        #[arg(long)]
        quick: bool,
        /// Run each scenario's first seed a second time, in a process of its own, and fail
        /// when the two traces differ (`check` then shows where).
        #[arg(long)]
        check_determinism: bool,
        /// Write a JUnit XML report (for CI): a test case per scenario's seed range, a failed
        /// one per unexpected seed with its finding and replay command.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// With --junit: shrink each scenario's first three failing seeds (into `shrunk/`
        /// beside the report) and put the faults that still fail in the report.
        #[arg(long, requires = "junit")]
        shrink_failures: bool,
    },
    /// Shrink a failing seed: write the smallest scenario found (fewer and shorter faults,
    /// fewer clients, a shorter run) that still fails the same way with the same seed.
    Shrink {
        scenario: PathBuf,
        #[arg(long)]
        seed: u64,
        /// Where to write the shrunk scenario [default: shrunk/<name>-seed<N>.toml].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Candidate runs allowed at most.
        #[arg(long, default_value_t = 200)]
        max_runs: usize,
    },
    /// Combine the `--summary-out` files of a sweep's shards into one table.
    Merge {
        files: Vec<PathBuf>,
        /// Write the combined summary as JSON.
        #[arg(long)]
        summary_out: Option<PathBuf>,
        #[arg(long)]
        require_coverage: bool,
        /// Write the combined JUnit XML report.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Run the regression corpus: seeds that once failed (`sim/regressions.toml`), each whole
    /// under a wall-clock bound.
    Regress {
        #[arg(default_value = "sim/regressions.toml")]
        corpus: PathBuf,
        /// Wall-clock seconds a seed may run.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
        /// Write a JUnit XML report (for CI).
        #[arg(long)]
        junit: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let capture = matches!(&cli.command, Command::Run { html: Some(_), .. });
    logging(capture);
    match cli.command {
        Command::Run {
            scenario,
            seed,
            summary,
            trace_out,
            report,
            html,
        } => run_one(
            &scenario,
            seed,
            summary,
            Outputs {
                trace: trace_out.as_deref(),
                report: report.as_deref(),
                html: html.as_deref(),
            },
        ),
        Command::Replay { report } => replay_report(&report),
        Command::Explain { scenario, seed } => explain(&scenario, seed),
        Command::Check { scenario, seed } => check(&scenario, seed),
        Command::Sweep {
            scenario,
            seeds,
            jobs,
            shard,
            summary_out,
            require_coverage,
            quick,
            check_determinism,
            junit,
            shrink_failures,
        } => sweep(
            &scenario,
            &seeds,
            jobs,
            shard.as_deref(),
            summary_out.as_deref(),
            require_coverage,
            quick,
            check_determinism,
            Junit {
                out: junit.as_deref(),
                shrink: shrink_failures,
            },
        ),
        Command::Shrink {
            scenario,
            seed,
            out,
            max_runs,
        } => shrink::command(&scenario, seed, out.as_deref(), max_runs),
        Command::Merge {
            files,
            summary_out,
            require_coverage,
            junit,
        } => merge(
            &files,
            summary_out.as_deref(),
            require_coverage,
            Junit {
                out: junit.as_deref(),
                shrink: false,
            },
        ),
        Command::Regress {
            corpus,
            timeout_s,
            junit,
        } => regress::regress(&corpus, timeout_s, junit.as_deref()),
    }
}

/// The brokers' log lines go to stderr as STILLWATER_LOG says (off by default: the broker's
/// own error lines, a failed directory, are expected in faulty runs and the report says what
/// matters); with `capture`, their debug lines and above are also kept for the run's page.
fn logging(capture: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("STILLWATER_LOG").unwrap_or_else(|_| "off".into()),
        ));
    let kept = capture.then(|| {
        crate::world::logs::Capture.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            if m.is_span() {
                // madsim's node and task spans: they say which node an event ran on.
                return m.target().starts_with("madsim");
            }
            let broker = m.target().starts_with("broker") || m.target().starts_with("io_backend");
            // raft-rs's elections, votes and term changes, as a real broker logs them.
            let raft = m.target().starts_with("raft");
            // Each frame of Raft messages a broker sends another (drawn on the page).
            let frames = m.target() == crate::history::FRAMES_TARGET;
            (broker && *m.level() <= tracing::Level::DEBUG)
                || (raft && *m.level() <= tracing::Level::INFO)
                || frames
        }))
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(kept)
        .try_init();
}

pub(crate) use crate::report::text::replay;

/// `explain`: run the seed, then print its first finding's chain.
fn explain(path: &Path, seed: u64) -> ExitCode {
    let scenario = match load(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match run(&scenario, seed) {
        Ok(r) => {
            for line in crate::report::explain::explain(&r) {
                println!("{line}");
            }
            if !r.findings.is_empty() && scenario.fault_points.is_some() {
                // They strike no window the chain could show.
                println!(
                    "  also: the scenario delays tasks at fault points inside the brokers \
                     ([fault_points]), a cause no fault window shows"
                );
            }
            println!("  replay: {}", replay(path, seed));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn load(path: &Path) -> Result<Scenario, ExitCode> {
    Scenario::load(path).map_err(|e| {
        eprintln!("sim: {e:#}");
        ExitCode::from(2)
    })
}

fn parse_range(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once("..")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn parse_shard(shard: Option<&str>) -> Option<(u64, u64)> {
    let Some(text) = shard else {
        return Some((1, 1));
    };
    let (i, n) = text.split_once('/')?;
    let (i, n) = (i.parse::<u64>().ok()?, n.parse::<u64>().ok()?);
    (i >= 1 && i <= n).then_some((i, n))
}
