//! The `sim` binary: run, sweep and replay scenarios. Use it through `cargo xtask sim …`, which
//! builds it with `--cfg madsim`.

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!("sim: this binary must be built with --cfg madsim; use `cargo xtask sim ...`");
    std::process::ExitCode::from(2)
}

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(madsim)]
mod cli {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use clap::{Parser, Subcommand};
    use sim::run::{run, RunReport};
    use sim::scenario::Scenario;

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
        },
        /// Run many seeds of a scenario (or of every scenario in a directory with `all`).
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
        },
    }

    pub fn main() -> ExitCode {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                // The broker's own error lines (a failed directory) are expected in faulty runs;
                // the report says what matters. STILLWATER_LOG=info shows them.
                std::env::var("STILLWATER_LOG").unwrap_or_else(|_| "off".into()),
            ))
            .with_writer(std::io::stderr)
            .try_init();
        match Cli::parse().command {
            Command::Run { scenario, seed } => run_one(&scenario, seed),
            Command::Sweep {
                scenario,
                seeds,
                jobs,
                shard,
            } => sweep(&scenario, &seeds, jobs, shard.as_deref()),
        }
    }

    fn replay(path: &Path, seed: u64) -> String {
        format!("cargo xtask sim run {} --seed {seed}", path.display())
    }

    fn print_report(path: &Path, r: &RunReport) {
        let verdict = if r.as_expected() {
            "as expected"
        } else {
            "UNEXPECTED"
        };
        let outcome = if r.findings.is_empty() {
            "pass"
        } else {
            "failure"
        };
        println!(
            "{} seed {}: {outcome} ({verdict}, expected {:?}) — {} acknowledged, {} refused, {} unknown; \
             {:.0} s simulated in {:.2} s ({:.0}× real time)",
            r.scenario,
            r.seed,
            r.expected,
            r.acked,
            r.failed,
            r.unknown,
            r.simulated_s,
            r.wall_s,
            r.simulated_s / r.wall_s.max(1e-9)
        );
        for f in &r.findings {
            println!("  {f}");
        }
        if !r.as_expected() {
            println!("  replay: {}", replay(path, r.seed));
        }
    }

    fn run_one(path: &Path, seed: u64) -> ExitCode {
        let scenario = match Scenario::load(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sim: {e:#}");
                return ExitCode::from(2);
            }
        };
        match run(&scenario, seed) {
            Ok(r) => {
                print_report(path, &r);
                if r.as_expected() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("sim: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    fn parse_range(text: &str) -> Option<(u64, u64)> {
        let (a, b) = text.split_once("..")?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }

    fn sweep(which: &str, seeds: &str, jobs: usize, shard: Option<&str>) -> ExitCode {
        let Some((first, end)) = parse_range(seeds) else {
            eprintln!("sim: --seeds {seeds:?}: expected A..B");
            return ExitCode::from(2);
        };
        let (index, count) = match shard.map(|s| s.split_once('/')) {
            None => (1, 1),
            Some(Some((i, n))) => match (i.parse::<u64>(), n.parse::<u64>()) {
                (Ok(i), Ok(n)) if i >= 1 && i <= n => (i, n),
                _ => {
                    eprintln!("sim: --shard {shard:?}: expected i/n with 1 <= i <= n");
                    return ExitCode::from(2);
                }
            },
            Some(None) => {
                eprintln!("sim: --shard {shard:?}: expected i/n");
                return ExitCode::from(2);
            }
        };
        let paths: Vec<PathBuf> = if which == "all" {
            let mut v: Vec<PathBuf> = std::fs::read_dir("scenarios")
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            v.retain(|p| p.extension().is_some_and(|e| e == "toml"));
            v.sort();
            v
        } else {
            vec![PathBuf::from(which)]
        };
        let mut all_ok = true;
        println!(
            "{:<24} {:>6} {:>6} {:>6} {:>12} {:>9} {:>10}",
            "scenario", "seeds", "ok", "bad", "simulated s", "wall s", "speed-up"
        );
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for path in &paths {
            let scenario = match Scenario::load(path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("sim: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let my_seeds: Vec<u64> = (first..end)
                .filter(|s| (s - first) % count == index - 1)
                .collect();
            let next = Arc::new(AtomicU64::new(0));
            let results: Arc<Mutex<Vec<RunReport>>> = Arc::default();
            let started = std::time::Instant::now();
            let total = my_seeds.len();
            let my_seeds = Arc::new(my_seeds);
            let workers: Vec<_> = (0..jobs.max(1))
                .map(|_| {
                    let (next, results, my_seeds, scenario) = (
                        next.clone(),
                        results.clone(),
                        my_seeds.clone(),
                        scenario.clone(),
                    );
                    std::thread::spawn(move || loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(&seed) = my_seeds.get(i) else { return };
                        match run(&scenario, seed) {
                            Ok(r) => {
                                let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
                                all.push(r);
                                eprint!(
                                    "\r{:<24} {}/{} seeds",
                                    scenario.name,
                                    all.len(),
                                    my_seeds.len()
                                );
                            }
                            Err(e) => eprintln!("\nsim: {} seed {seed}: {e:#}", scenario.name),
                        }
                    })
                })
                .collect();
            for w in workers {
                let _ = w.join();
            }
            eprintln!();
            let wall = started.elapsed().as_secs_f64();
            let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
            let ok = results.iter().filter(|r| r.as_expected()).count();
            let simulated: f64 = results.iter().map(|r| r.simulated_s).sum();
            all_ok &= ok == total;
            rows.push(format!(
                "{:<24} {:>6} {:>6} {:>6} {:>12.0} {:>9.1} {:>9.0}×",
                scenario.name,
                total,
                ok,
                total - ok,
                simulated,
                wall,
                simulated / wall.max(1e-9)
            ));
            for r in results.iter().filter(|r| !r.as_expected()) {
                failures.push((
                    path.clone(),
                    r.seed,
                    r.findings
                        .first()
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "no finding where one was expected".into()),
                ));
            }
        }
        for row in rows {
            println!("{row}");
        }
        for (path, seed, why) in &failures {
            println!(
                "UNEXPECTED {} seed {seed}: {why}\n  replay: {}",
                path.display(),
                replay(path, *seed)
            );
        }
        if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
